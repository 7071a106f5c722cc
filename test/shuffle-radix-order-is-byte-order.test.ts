// The radix sort that orders a spill of many distinct keys is Buffer.compare's order, stable: for keys
// sharing long prefixes (several rounds of 5-byte digits), keys ending where others go on with zero
// bytes, empty keys, and groups both small (insertion sort) and large (another round).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { RadixScratch, radixOrder } from "../core/shuffle-order";

test("radixOrder sorts record numbers by key bytes, stably", () => {
  const key = fc.array(fc.constantFrom(0x00, 0x01, 0x61, 0x62, 0xff), { maxLength: 14 }).map((b) => Buffer.from(b));
  const prefix = fc.constantFrom("", "abcdefgh", "abcdefghijklm").map((p) => Buffer.from(p));
  fc.assert(
    fc.property(fc.array(fc.tuple(prefix, key, fc.nat({ max: 3 })), { maxLength: 300, size: "max" }), (made) => {
      // Each record: its key, then a tail of one to four bytes (the record is more than its key).
      const records = made.map(([p, k, t]) => ({ key: Buffer.concat([p, k]), tail: Buffer.alloc(t + 1, 0x7c) }));
      const data = Buffer.concat(records.flatMap((r) => [r.key, r.tail]));
      const index = new Uint32Array(2 * records.length);
      let at = 0;
      records.forEach((r, i) => {
        index[2 * i] = at;
        index[2 * i + 1] = at + r.key.length;
        at += r.key.length + r.tail.length;
      });
      const order = Uint32Array.from(records.keys());
      radixOrder(data, index, order, 0, records.length, new RadixScratch(records.length));
      const expected = [...records.keys()].sort((a, b) => records[a].key.compare(records[b].key) || a - b);
      assert.deepEqual([...order], expected);
    }),
    { numRuns: 1000 },
  );
});
