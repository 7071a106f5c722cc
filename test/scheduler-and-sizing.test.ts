// The pure decisions: which chunk goes to which slot, and how big auto chunks are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NO_NEEDS, neverFits, placeBackups, placeChunks, type Resources, type RunningAttemptView, type WorkerView } from "../coordinator/scheduler";
import { ChunkSizer, MAX_CHUNK, MAX_STREAM_CHUNK, MIN_CHUNK, fitCost } from "../core/chunk-size";

const roomy: Resources = { cpu: 2, memoryMb: 4096, diskMb: 10_000, gpus: 0 };
/** A worker with `slots` free and nothing running. */
function idle(id: string, slots: number, capacity: Resources = roomy, docker = false, interruptible = false): WorkerView {
  return { id, freeSlots: slots, capacity, free: capacity, docker, interruptible };
}

test("fills free slots in input order, spreading across workers, within the task's room", () => {
  const p = placeChunks(
    [idle("a", 2), idle("b", 2)],
    [{ id: "t", room: 3, pending: [0, 1, 2, 3].map((seq) => ({ seq, avoid: [] })), needs: NO_NEEDS }],
  );
  assert.deepEqual(p.map((x) => x.seq), [0, 1, 2]);
  assert.deepEqual(new Set(p.map((x) => x.worker)), new Set(["a", "b"]));
});

test("a retry prefers a worker it has not failed on", () => {
  const p = placeChunks([idle("a", 1), idle("b", 1)], [{ id: "t", room: 1, pending: [{ seq: 5, avoid: ["a"] }], needs: NO_NEEDS }]);
  assert.deepEqual(p, [{ worker: "b", task: "t", seq: 5 }]);
  const busy = placeChunks(
    [idle("a", 1), idle("b", 0)],
    [{ id: "t", room: 2, pending: [{ seq: 5, avoid: ["a"] }, { seq: 6, avoid: [] }], needs: NO_NEEDS }],
  );
  assert.deepEqual(busy, [{ worker: "a", task: "t", seq: 6 }], "the retry waits for b; a takes other work");
  const only = placeChunks([idle("a", 1)], [{ id: "t", room: 1, pending: [{ seq: 5, avoid: ["a"] }], needs: NO_NEEDS }]);
  assert.deepEqual(only, [{ worker: "a", task: "t", seq: 5 }], "with no other worker connected it runs where it failed");
});

test("no free slot, no placement", () => {
  assert.deepEqual(placeChunks([idle("a", 0)], [{ id: "t", room: 4, pending: [{ seq: 0, avoid: [] }], needs: NO_NEEDS }]), []);
});

test("an attempt goes only where the task's minimums fit in what the worker has left", () => {
  const needs = { ...NO_NEEDS, cpu: 0.5, memoryMb: 1500 };
  const pending = [0, 1, 2, 3].map((seq) => ({ seq, avoid: [] }));
  const p = placeChunks([idle("a", 8)], [{ id: "t", room: 8, pending, needs }]);
  assert.equal(p.length, 2, "4096 MiB holds two attempts of 1500 MiB, whatever the slots");
  const busy: WorkerView = { ...idle("a", 8), free: { ...roomy, memoryMb: 1000 } };
  assert.deepEqual(placeChunks([busy], [{ id: "t", room: 8, pending, needs }]), [], "what runs already counts");
  const image = placeChunks([idle("p", 2), idle("d", 2, roomy, true)], [{ id: "t", room: 4, pending, needs: { ...needs, memoryMb: 0, docker: true } }]);
  assert.deepEqual(new Set(image.map((x) => x.worker)), new Set(["d"]), "a task with an image runs only where an engine answers");
});

test("a task no worker could ever fit is named with the requirement and the largest worker", () => {
  const workers = [
    { name: "small", docker: false, interruptible: true, capacity: { ...roomy, memoryMb: 1024 } },
    { name: "big", docker: false, interruptible: true, capacity: { ...roomy, memoryMb: 2048 } },
  ];
  assert.equal(neverFits(workers, { ...NO_NEEDS, memoryMb: 2048 }), null);
  assert.match(neverFits(workers, { ...NO_NEEDS, memoryMb: 4096 }) ?? "", /hardware\.memory\.min asks for 4096 MiB, and the largest worker \(big\) has 2048 MiB/);
  assert.match(neverFits(workers, { ...NO_NEEDS, gpus: 1 }) ?? "", /hardware\.graphics asks for 1 GPU.*has 0 GPUs/);
  assert.match(neverFits(workers, { ...NO_NEEDS, docker: true }) ?? "", /no connected worker can run containers/);
  assert.equal(neverFits([], { ...NO_NEEDS, memoryMb: 1 << 20 }), null, "with nobody connected, wait for a worker that fits");
  assert.match(neverFits(workers, { ...NO_NEEDS, steady: true }) ?? "", /"interruptible": false, and every connected worker is interruptible/);
});

test("a task that must not be interrupted goes only to workers that stay", () => {
  const pending = [0, 1, 2, 3].map((seq) => ({ seq, avoid: [] }));
  const p = placeChunks([idle("spare", 2, roomy, false, true), idle("server", 2)], [{ id: "t", room: 4, pending, needs: { ...NO_NEEDS, steady: true } }]);
  assert.deepEqual(new Set(p.map((x) => x.worker)), new Set(["server"]));
  assert.equal(p.length, 2);
});

test("idle slots back up the stragglers, slowest first, never on the straggler's own worker", () => {
  const running = (seq: number, worker: string, elapsedMs: number, more: Partial<RunningAttemptView> = {}): RunningAttemptView => ({
    task: "t", seq, worker, elapsedMs, expectedMs: 1000, hasBackup: false, taskHasRoom: true, needs: NO_NEEDS, ...more,
  });
  const views = [
    running(1, "slow", 10_000),
    running(2, "slow", 30_000),
    running(3, "a", 1_500), // within twice its expected time: fine
    running(4, "a", 50_000, { hasBackup: true }),
    running(5, "a", 50_000, { expectedMs: null }), // nothing committed yet: no measure
    running(6, "a", 2_500, { expectedMs: 100 }), // slow by ratio, but under the 3 s floor
  ];
  const p = placeBackups([idle("slow", 1), idle("b", 1)], views);
  assert.deepEqual(p, [{ worker: "b", task: "t", seq: 2 }], "one idle slot elsewhere: the slowest straggler gets it");
  assert.deepEqual(placeBackups([idle("slow", 2)], views), [], "never on the straggler's own worker");
});

test("fitCost recovers fixed cost and rate", () => {
  const fit = fitCost([
    { bytes: 16e6, seconds: 0.1 + 16e6 / 400e6 },
    { bytes: 64e6, seconds: 0.1 + 64e6 / 400e6 },
    { bytes: 128e6, seconds: 0.1 + 128e6 / 400e6 },
  ]);
  assert.ok(Math.abs(fit.fixedSeconds - 0.1) < 1e-6);
  assert.ok(Math.abs(fit.bytesPerSecond - 400e6) < 1);
});

test("a fit that finds no fixed cost (noisy timings) does not shrink chunks to the minimum", () => {
  // The first two chunks of a stream, timed while the slots were busy: the line through them meets
  // zero bytes at -0.01 s.
  const sizer = new ChunkSizer({ explicit: null, totalBytes: null, slots: 2 });
  for (const [mib, seconds] of [[16, 0.29], [32, 0.59]]) sizer.observe({ bytes: mib * 2 ** 20, seconds });
  assert.ok(sizer.efficientSize() >= 32 * 2 ** 20, `efficient size ${sizer.efficientSize()}`);
});

test("auto sizes: explicit wins; a stream ramps up; a file gets chunks for every slot", () => {
  assert.equal(new ChunkSizer({ explicit: 12345, totalBytes: null, slots: 2 }).next(7), 12345);
  const stream = new ChunkSizer({ explicit: null, totalBytes: null, slots: 2 });
  assert.equal(stream.next(0), stream.next(1), "both slots get a first chunk of the same small size");
  assert.ok(stream.next(1) < stream.next(2) && stream.next(2) === stream.next(3), "sizes grow once per round of slots");
  assert.equal(stream.next(30), MAX_STREAM_CHUNK);
  const wide = new ChunkSizer({ explicit: null, totalBytes: null, slots: 8 });
  const firstRound = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => wide.next(i));
  assert.ok(firstRound.every((size) => size === firstRound[0]) && firstRound[0] < stream.next(0), "more slots: smaller first chunks, so each starts early");
  const file = new ChunkSizer({ explicit: null, totalBytes: (1 << 30) + 32768, slots: 2 });
  assert.equal(Math.ceil(((1 << 30) + 32768) / file.next(0)), 2, "a light mapper over 1 GiB and a bit: one even chunk per slot, no sliver");
  const big = new ChunkSizer({ explicit: null, totalBytes: 100 * 2 ** 30, slots: 16 });
  assert.ok(big.next(0) <= MAX_CHUNK * 1.02 && 100 * 2 ** 30 / big.next(0) >= 4 * 16, "a big file: chunks within the bound, several per slot");
  const small = new ChunkSizer({ explicit: null, totalBytes: 10 << 20, slots: 2 });
  assert.equal(Math.ceil((10 << 20) / small.next(0)), 2, "every slot gets a chunk");
  const heavy = new ChunkSizer({ explicit: null, totalBytes: 1 << 30, slots: 2 });
  for (const mb of [16, 32, 64]) heavy.observe({ bytes: mb << 20, seconds: 0.05 + (mb << 20) / 5e6 });
  assert.ok(heavy.next(3) < 100 << 20 && heavy.next(3) >= MIN_CHUNK, "a slow program gets smaller chunks, several per slot");
});
