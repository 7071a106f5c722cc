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
  const intake = new Intake("t", "\n", new ChunkSizer({ explicit: size, totalBytes: null, slots: 1 }), ledger, { room: async () => undefined, recorded: () => undefined });
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
