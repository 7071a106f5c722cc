// The chunker never splits a record: for any bytes, any delimiter (single, multi-byte, self-
// overlapping), any way the stream is split into pushes and any chunk sizes, chunks concatenate back
// to the input, every chunk but the last ends with the delimiter, and the cuts are the reference's.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Chunker, delimiterOverlapsItself, type Cut } from "../core/chunker";

/** The rule on the whole input at once: records while the chunk stays within its size. */
function reference(input: Buffer, delim: Buffer, size: (i: number) => number): [number, number][] {
  const records: [number, number][] = [];
  let from = 0;
  for (let i = input.indexOf(delim, from); i >= 0; i = input.indexOf(delim, from)) {
    records.push([from, i + delim.length]);
    from = i + delim.length;
  }
  if (from < input.length) records.push([from, input.length]);
  const cuts: [number, number][] = [];
  let start = 0;
  let end = 0;
  let index = 0;
  let s = size(0);
  const cut = (at: number) => {
    cuts.push([start, at - start]);
    start = at;
    end = at;
    s = size(++index);
  };
  for (const [, b] of records) {
    if (b - start > s && end > start) cut(end);
    if (b - start >= s) cut(b);
    else end = b;
  }
  if (input.length > start) cuts.push([start, input.length - start]);
  return cuts;
}

function run(input: Buffer, delim: Buffer, size: (i: number) => number, splits: number[]): Cut[] {
  const chunker = new Chunker(delim, size);
  const cuts: Cut[] = [];
  let at = 0;
  for (const n of splits) {
    if (at >= input.length) break;
    cuts.push(...chunker.push(input.subarray(at, at + n)));
    at += n;
  }
  if (at < input.length) cuts.push(...chunker.push(input.subarray(at)));
  cuts.push(...chunker.end());
  return cuts;
}

const delimiters = ["\n", "\r\n", "\n\n", "||", "aba", "¶\n"].map((d) => Buffer.from(d));
const delimiter = fc.oneof(fc.constantFrom(...delimiters), fc.uint8Array({ minLength: 1, maxLength: 3 }).map((a) => Buffer.from(a)));
/** Inputs rich in delimiter bytes, so records of every length occur. */
const inputFor = (d: Buffer) =>
  fc.array(fc.oneof(fc.constant(d), fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)), fc.constantFrom(...[...d].map((b) => Buffer.from([b])))), { maxLength: 60 }).map((parts) => Buffer.concat(parts));

test("chunks concatenate back to the input, end with the delimiter, and match the reference", () => {
  fc.assert(
    fc.property(
      delimiter.chain((d) => fc.tuple(fc.constant(d), inputFor(d), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 100 }))),
      ([d, input, sizes, splits]) => {
        const size = (i: number) => sizes[i % sizes.length];
        const cuts = run(input, d, size, splits);
        assert.deepEqual(Buffer.concat(cuts.map((c) => input.subarray(c.offset, c.offset + c.length))), input);
        cuts.forEach((c, i) => {
          assert.equal(c.index, i);
          assert.ok(c.length > 0);
          if (i < cuts.length - 1) assert.ok(input.subarray(c.offset, c.offset + c.length).subarray(-d.length).equals(d), `chunk ${i} ends with the delimiter`);
        });
        assert.deepEqual(cuts.map((c) => [c.offset, c.length]), reference(input, d, size));
      },
    ),
    { numRuns: 1000 },
  );
});

test("empty input gives no chunks; no trailing delimiter is still the last chunk", () => {
  assert.deepEqual(run(Buffer.alloc(0), Buffer.from("\n"), () => 4, [1]), []);
  assert.deepEqual(run(Buffer.from("ab\ncd"), Buffer.from("\n"), () => 100, [2]), [{ index: 0, offset: 0, length: 5 }]);
});

test("a record longer than the chunk size is a chunk of its own", () => {
  const cuts = run(Buffer.from("a\nbbbbbbbbbb\nc\n"), Buffer.from("\n"), () => 4, [3, 3, 3, 3, 3]);
  assert.deepEqual(cuts.map((c) => c.length), [2, 11, 2]);
});

test("a delimiter split across two pushes, and self-overlapping delimiters", () => {
  assert.deepEqual(run(Buffer.from("ab\r\ncd\r\n"), Buffer.from("\r\n"), () => 1, [3, 5]).map((c) => c.length), [4, 4]);
  // "\n\n" on "a\n\n\nb": the match is at index 1; the next record is "\nb".
  assert.deepEqual(run(Buffer.from("a\n\n\nb"), Buffer.from("\n\n"), () => 1, [1, 1, 1, 1, 1]).map((c) => c.length), [3, 2]);
  assert.ok(delimiterOverlapsItself(Buffer.from("\n\n")));
  assert.ok(!delimiterOverlapsItself(Buffer.from("\r\n")));
});

test("planCuts, reading windows of a file, cuts exactly where the streaming chunker does", async () => {
  const { planCuts } = await import("../core/chunker");
  const plain = delimiter.filter((d) => !delimiterOverlapsItself(d));
  await fc.assert(
    fc.asyncProperty(
      plain.chain((d) => fc.tuple(fc.constant(d), inputFor(d), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 12 }))),
      async ([d, input, sizes, window]) => {
        const size = (i: number) => sizes[i % sizes.length];
        const read = async (offset: number, length: number) => input.subarray(offset, offset + length);
        const planned: Cut[] = [];
        for await (const c of planCuts(read, input.length, d, size, undefined, window)) planned.push(c);
        assert.deepEqual(planned, run(input, d, size, [input.length || 1]));
      },
    ),
    { numRuns: 1000 },
  );
});

test("a chunker resumed at the end of any chunk (a restarted coordinator) cuts the rest as before", () => {
  fc.assert(
    fc.property(
      delimiter.chain((d) => fc.tuple(fc.constant(d), inputFor(d), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), fc.nat())),
      ([d, input, sizes, pick]) => {
        const size = (i: number) => sizes[i % sizes.length];
        const whole = run(input, d, size, [input.length || 1]);
        if (whole.length < 2) return;
        const resumeAt = whole[pick % (whole.length - 1)];
        const from = { index: resumeAt.index + 1, offset: resumeAt.offset + resumeAt.length };
        const chunker = new Chunker(d, size, from);
        const rest = [...chunker.push(input.subarray(from.offset)), ...chunker.end()];
        assert.deepEqual(rest, whole.slice(from.index));
      },
    ),
    { numRuns: 1000 },
  );
});
