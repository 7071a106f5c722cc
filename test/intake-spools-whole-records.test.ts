// Intake: streamed input lands in one spool file per chunk, each of whole records, together exactly
// the input, however the stream is cut into frames (frames ending exactly at a chunk's size included:
// the cut then falls behind what was written and the partial record moves to the next file).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { Ledger } from "../coordinator/ledger";
import { Intake } from "../coordinator/intake";
import { ChunkSizer } from "../core/chunk-size";
import { tempDir } from "./harness";

async function spool(input: Buffer, frames: number[], size: number): Promise<Buffer[]> {
  const dir = tempDir();
  const ledger = new Ledger(path.join(dir, "ledger.sqlite"));
  ledger.createTask({ id: "t", name: "t", bachfile: "{}", bundleHash: "h", imageId: "", parallelism: 0, chunkSize: size, inputKind: "stream", inputPath: "", dataStreams: 0 });
  const intake = new Intake("t", "\n", new ChunkSizer({ explicit: size, totalBytes: null, slots: 1 }), ledger, { room: async () => undefined, recorded: () => undefined, failed: (err: Error) => { throw err; } });
  const file = (seq: number) => path.join(dir, "input", String(seq));
  let at = 0;
  for (let i = 0; at < input.length; i++) {
    const n = frames[i % frames.length];
    await intake.append(file, at, input.subarray(at, at + n));
    at += n;
  }
  await intake.endStream(file);
  const chunks = ledger.chunks("t");
  ledger.close();
  return chunks.map((c) => {
    const bytes = fs.readFileSync(file(c.seq));
    assert.equal(bytes.length, c.length, `chunk ${c.seq} file holds its length`);
    return bytes;
  });
}

test("frames that end exactly at the chunk size", async () => {
  const input = Buffer.from(Array.from({ length: 300 }, (_, i) => `record ${i} ${"x".repeat(i % 13)}\n`).join(""));
  const chunks = await spool(input, [1000], 1000);
  assert.ok(chunks.length > 3);
  assert.ok(Buffer.concat(chunks).equals(input));
  for (const c of chunks.slice(0, -1)) assert.equal(c[c.length - 1], 10);
});

test("any frames, any records", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.string({ maxLength: 40 }), { maxLength: 80 }),
      fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 1, maxLength: 10 }),
      fc.integer({ min: 1, max: 200 }),
      async (records, frames, size) => {
        const input = Buffer.from(records.map((r) => `${r.replace(/\n/g, "")}\n`).join(""));
        const chunks = await spool(input, frames, size);
        assert.ok(Buffer.concat(chunks).equals(input));
        for (const c of chunks.slice(0, -1)) assert.equal(c[c.length - 1], 10);
      },
    ),
    { numRuns: 150 },
  );
});

test("after a restart, spooled bytes that end exactly at the open chunk's size: the next bytes start a new file", async () => {
  const dir = tempDir();
  const file = (seq: number) => path.join(dir, "input", String(seq));
  const record = (i: number) => `rec ${String(i).padStart(5, "0")}\n`; // 10 bytes
  const input = Buffer.from(Array.from({ length: 25 }, (_, i) => record(i)).join(""));
  const sizer = () => new ChunkSizer({ explicit: 100, totalBytes: null, slots: 1 });
  const hooks = { room: async () => undefined, recorded: () => undefined, failed: (err: Error) => { throw err; } };
  const before = new Ledger(path.join(dir, "ledger.sqlite"));
  before.createTask({ id: "t", name: "t", bachfile: "{}", bundleHash: "h", imageId: "", parallelism: 0, chunkSize: 100, inputKind: "stream", inputPath: "", dataStreams: 0 });
  const first = new Intake("t", "\n", sizer(), before, hooks);
  await first.append(file, 0, input.subarray(0, 150)); // chunk 0 recorded; chunk 1 open with 50 bytes
  await first.append(file, 150, input.subarray(150, 200)); // chunk 1 full to its last byte, not yet cut
  before.setSpooled("t", 200);
  before.close();

  const after = new Ledger(path.join(dir, "ledger.sqlite"));
  const row = after.task("t");
  const resumed = new Intake("t", "\n", sizer(), after, hooks, { index: row.chunks_planned, offset: after.plannedEnd("t"), openChunkSize: row.open_chunk_size, spooled: row.spooled });
  assert.equal(await resumed.resumeStream(file), 100);
  await resumed.append(file, 200, input.subarray(200));
  await resumed.endStream(file);
  const chunks = after.chunks("t");
  after.close();
  assert.deepEqual(chunks.map((c) => [c.offset, c.length]), [[0, 100], [100, 100], [200, 50]]);
  for (const c of chunks) assert.ok(fs.readFileSync(file(c.seq)).equals(input.subarray(c.offset, c.offset + c.length)), `chunk ${c.seq}`);
});
