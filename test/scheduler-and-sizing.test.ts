// The pure decisions: which chunk goes to which slot, and how big auto chunks are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { placeChunks } from "../coordinator/scheduler";
import { ChunkSizer, MAX_CHUNK, MIN_CHUNK, fitCost } from "../core/chunk-size";

test("fills free slots in input order, spreading across workers, within the task's room", () => {
  const p = placeChunks(
    [{ id: "a", freeSlots: 2 }, { id: "b", freeSlots: 2 }],
    [{ id: "t", room: 3, pending: [0, 1, 2, 3].map((seq) => ({ seq, avoid: [] })) }],
  );
  assert.deepEqual(p.map((x) => x.seq), [0, 1, 2]);
  assert.deepEqual(new Set(p.map((x) => x.worker)), new Set(["a", "b"]));
});

test("a retry prefers a worker it has not failed on", () => {
  const p = placeChunks([{ id: "a", freeSlots: 1 }, { id: "b", freeSlots: 1 }], [{ id: "t", room: 1, pending: [{ seq: 5, avoid: ["a"] }] }]);
  assert.deepEqual(p, [{ worker: "b", task: "t", seq: 5 }]);
  const busy = placeChunks(
    [{ id: "a", freeSlots: 1 }, { id: "b", freeSlots: 0 }],
    [{ id: "t", room: 2, pending: [{ seq: 5, avoid: ["a"] }, { seq: 6, avoid: [] }] }],
  );
  assert.deepEqual(busy, [{ worker: "a", task: "t", seq: 6 }], "the retry waits for b; a takes other work");
  const only = placeChunks([{ id: "a", freeSlots: 1 }], [{ id: "t", room: 1, pending: [{ seq: 5, avoid: ["a"] }] }]);
  assert.deepEqual(only, [{ worker: "a", task: "t", seq: 5 }], "with no other worker connected it runs where it failed");
});

test("no free slot, no placement", () => {
  assert.deepEqual(placeChunks([{ id: "a", freeSlots: 0 }], [{ id: "t", room: 4, pending: [{ seq: 0, avoid: [] }] }]), []);
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

test("auto sizes: explicit wins; a stream ramps up; a file gets chunks for every slot", () => {
  assert.equal(new ChunkSizer({ explicit: 12345, totalBytes: null, slots: 2 }).next(7), 12345);
  const stream = new ChunkSizer({ explicit: null, totalBytes: null, slots: 2 });
  assert.ok(stream.next(0) < stream.next(1) && stream.next(1) < stream.next(2));
  assert.ok(stream.next(30) <= MAX_CHUNK);
  const file = new ChunkSizer({ explicit: null, totalBytes: (1 << 30) + 32768, slots: 2 });
  assert.equal(Math.ceil(((1 << 30) + 32768) / file.next(0)), 4, "a light mapper over 1 GiB and a bit: 4 even chunks, no sliver");
  assert.ok(file.next(0) <= MAX_CHUNK * 1.02);
  const small = new ChunkSizer({ explicit: null, totalBytes: 10 << 20, slots: 2 });
  assert.equal(Math.ceil((10 << 20) / small.next(0)), 2, "every slot gets a chunk");
  const heavy = new ChunkSizer({ explicit: null, totalBytes: 1 << 30, slots: 2 });
  for (const mb of [16, 32, 64]) heavy.observe({ bytes: mb << 20, seconds: 0.05 + (mb << 20) / 5e6 });
  assert.ok(heavy.next(3) < 100 << 20 && heavy.next(3) >= MIN_CHUNK, "a slow program gets smaller chunks, several per slot");
});
