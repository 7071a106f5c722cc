// planObjectCuts and piecesOf, the pure planning of input made of objects: the chunks cover the line
// of objects end to end, each byte once; an object read whole (compressed, or under "input": "objects")
// is a chunk of its own and nothing else; empty objects get none; a restart from any recorded chunk
// plans the same chunks after it; and a chunk's pieces are exactly its ranges of the objects.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { piecesOf, planObjectCuts, type InputObject } from "../core/input-objects";

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
