// planObjectCuts and piecesOf, the pure planning of input made of objects: the chunks cover the line
// of objects end to end, each byte once; an object read whole (compressed, or under "input": "objects")
// is a chunk of its own and nothing else; empty objects get none; a restart from any recorded chunk
// plans the same chunks after it; and a chunk's pieces are exactly its ranges of the objects. Read by
// piecesBytes from real files, the chunks give the objects' records, the delimiter added between two
// objects where the first lacks it, wherever the chunk edges fall.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { chunkPieces, fileVersion, piecesBytes, piecesOf, planObjectCuts, readWhole, type InputObject } from "../core/input-objects";

const objectsArb = fc
  .array(fc.record({ size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })), whole: fc.boolean() }), { minLength: 1, maxLength: 30 })
  .map((specs) => {
    let base = 0;
    return specs.map((s, i) => {
      const o: InputObject = { name: `${s.whole ? "w" : "s"}${i}`, url: `http://h/${i}`, size: s.size, etag: "", base };
      base += s.size;
      return o;
    });
  });
const whole = (o: InputObject) => o.name.startsWith("w");

test("chunks cover every byte once, whole objects alone, and a restart plans the same", () => {
  fc.assert(
    fc.property(objectsArb, fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 5 }), fc.nat(), (objects, sizes, restartAt) => {
      const sizeOf = (i: number) => sizes[i % sizes.length];
      const cuts = [...planObjectCuts(objects, whole, sizeOf, { index: 0, offset: 0 })];
      const total = objects.reduce((n, o) => n + o.size, 0);
      let at = 0;
      cuts.forEach((c, i) => {
        assert.equal(c.index, i);
        assert.equal(c.offset, at, "contiguous");
        assert.ok(c.length > 0);
        at += c.length;
        const pieces = piecesOf(objects, c.offset, c.length);
        assert.equal(pieces.reduce((n, p) => n + p.end - p.start, 0), c.length, "the pieces are the chunk");
        const w = pieces.filter((p) => whole(objects[p.object]));
        if (w.length > 0) {
          assert.equal(pieces.length, 1, "a whole object is alone in its chunk");
          assert.deepEqual([w[0].start, w[0].end], [0, objects[w[0].object].size], "and whole");
        }
        for (const p of pieces) assert.ok(objects[p.object].size > 0);
      });
      assert.equal(at, total, "to the end");
      if (cuts.length > 0) {
        const k = restartAt % cuts.length;
        const again = [...planObjectCuts(objects, whole, sizeOf, { index: cuts[k].index, offset: cuts[k].offset })];
        assert.deepEqual(again, cuts.slice(k), "a restart from a recorded chunk plans the rest the same");
      }
    }),
    { numRuns: 500 },
  );
});

/** Objects as files of records, some empty, some without a last delimiter. */
const filesArb = fc.array(
  fc.record({ records: fc.array(fc.stringMatching(/^[a-z]{0,30}$/), { maxLength: 40 }), ended: fc.boolean(), whole: fc.boolean() }),
  { minLength: 1, maxLength: 8 },
);

test("a chunk's bytes, chunk after chunk, are the objects' records with the delimiter added between objects, however the chunks fall", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bach-pieces-"));
  try {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(filesArb, fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 4 }), async (specs, sizes) => {
        run++;
        let base = 0;
        const texts = specs.map((spec) => spec.records.join("\n") + (spec.ended && spec.records.length > 0 ? "\n" : ""));
        const objects: InputObject[] = specs.map((spec, i) => {
          const text = texts[i];
          const file = path.join(dir, `${run}-${i}${spec.whole ? ".gz" : ".tsv"}`);
          fs.writeFileSync(file, spec.whole ? gzipSync(text) : text);
          const stat = fs.statSync(file);
          const o: InputObject = { name: file, url: pathToFileURL(file).href, size: stat.size, etag: fileVersion(stat), base };
          base += stat.size;
          return o;
        });
        // One input: the objects' texts, each but the last with a newline added when it has bytes and lacks one.
        const one = texts.map((text, i) => text + (text !== "" && !text.endsWith("\n") && i < texts.length - 1 ? "\n" : "")).join("");
        const chunks: Buffer[] = [];
        for (const cut of planObjectCuts(objects, readWhole, (i) => sizes[i % sizes.length], { index: 0, offset: 0 })) {
          chunks.push(await collect(piecesBytes(chunkPieces(objects, cut.offset, cut.length, { records: true }), "\n", false)));
        }
        assert.equal(Buffer.concat(chunks).toString(), one);
      }),
      { numRuns: 150 },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of source) parts.push(b);
  return Buffer.concat(parts);
}
