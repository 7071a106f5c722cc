// Ranged reads never lose or double a record: for any bytes, any border-free delimiter and any cuts of
// the object into ranges, each range read with readAligned (from a source that splits its bytes
// anyhow and breaks off now and then) yields exactly the reference's [start(s), start(e)), so the
// ranges concatenate back to the object. A record longer than a range goes whole to the range holding
// its first byte, and streams through in bounded memory.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import v8 from "node:v8";
import vm from "node:vm";
import fc from "fast-check";
import { delimiterHasBorder, readAligned, recordStart, RetryableReadError, type RangeOpener } from "../core/ranged-read";

/** Deterministic randomness from a fast-check seed, so a failing case replays. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * An object in memory served as a remote one would be: in pieces of random sizes (up to 9 bytes, or
 * up to 257), and, at most `maxCuts` times over all its opens, ending early or failing (sometimes
 * before its first byte).
 */
function memorySource(data: Buffer, seed: number, maxCuts: number, pieceSize?: number) {
  const rand = random(seed);
  const maxPiece = pieceSize ?? (rand() < 0.5 ? 9 : 257);
  const piece = () => pieceSize ?? 1 + Math.floor(rand() * maxPiece);
  const streams: Readable[] = [];
  const source = { opens: [] as number[], furthest: 0, cuts: 0, maxPiece, streams, open: null as unknown as RangeOpener };
  source.open = (from: number) => {
    source.opens.push(from);
    let at = from;
    const stream = new Readable({
      highWaterMark: 1,
      read() {
        if (source.cuts < maxCuts && rand() < 0.08) {
          source.cuts++;
          if (rand() < 0.5) this.push(null);
          else this.destroy(new Error("connection reset by peer"));
          return;
        }
        const n = piece();
        this.push(data.subarray(at, at + n));
        at = Math.min(data.length, at + n);
        source.furthest = Math.max(source.furthest, at);
        if (at >= data.length) this.push(null);
      },
    });
    streams.push(stream);
    return Promise.resolve(stream);
  };
  return source;
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** An independent model of the greedy cut: compare D byte by byte at each position, from byte 0. */
function modelStarts(data: Buffer, d: Buffer): number[] {
  const starts = [0];
  for (let i = 0; i + d.length <= data.length; ) {
    let match = true;
    for (let k = 0; k < d.length && match; k++) match = data[i + k] === d[k];
    if (match) {
      starts.push(i + d.length);
      i += d.length;
    } else i++;
  }
  return starts;
}

// Not "|~|": its "|" is a border ("a|~|~|b" is cut after the first "|~|", a search from byte 3 finds another).
const borderFree = ["\n", "\r\n", "<|>", "~|", "\u00e9", "\u00ff\u00fe"].map((d) => Buffer.from(d));
const delimiterArb = fc.oneof(
  fc.constantFrom(...borderFree),
  fc
    .uint8Array({ minLength: 1, maxLength: 4 })
    .map((a) => Buffer.from(a))
    .filter((d) => !delimiterHasBorder(d)),
);

/** Records rich in near-delimiters: empty ones, bytes above 0x7f, and prefixes, suffixes and bytes of D. */
function recordArb(d: Buffer) {
  const nearD: Buffer[] = [];
  for (let k = 1; k < d.length; k++) nearD.push(d.subarray(0, k), d.subarray(k));
  for (const b of d) nearD.push(Buffer.from([b]));
  const bits = nearD.length > 0 ? fc.oneof(fc.constantFrom(...nearD), fc.uint8Array({ maxLength: 3 }).map((a) => Buffer.from(a))) : fc.uint8Array({ maxLength: 3 }).map((a) => Buffer.from(a));
  return fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc.uint8Array({ minLength: 1, maxLength: 40, size: "max" }).map((a) => Buffer.from(a)),
    fc.array(bits, { maxLength: 8, size: "max" }).map((parts) => Buffer.concat(parts)),
    // Now and then a record longer than many ranges.
    { arbitrary: fc.uint8Array({ minLength: 100, maxLength: 2000, size: "max" }).map((a) => Buffer.from(a)), weight: 1 },
  );
}

/** Cut points anywhere, and right at, just before and just after each occurrence of D. */
function cutsArb(data: Buffer, d: Buffer) {
  const near: number[] = [];
  for (let i = data.indexOf(d); i >= 0; i = data.indexOf(d, i + 1)) {
    for (const p of [i - 1, i, i + 1, i + d.length - 1, i + d.length, i + d.length + 1]) if (p >= 0 && p <= data.length) near.push(p);
  }
  const point = near.length > 0 ? fc.oneof(fc.nat({ max: data.length }), fc.constantFrom(...near)) : fc.nat({ max: data.length });
  return fc.array(point, { maxLength: 16, size: "max" }).map((cuts) => [0, ...cuts.sort((a, b) => a - b), data.length]);
}

const objectArb = delimiterArb.chain((d) =>
  fc.record({ d: fc.constant(d), records: fc.array(recordArb(d), { maxLength: 60, size: "max" }), trailing: fc.boolean() }).map(({ records, trailing }) => {
    const data = Buffer.concat(records.flatMap((r, i) => (i < records.length - 1 || trailing ? [r, d] : [r])));
    return { d, data };
  }),
);

test("recordStart is the greedy cut's next record start, for every delimiter (with a border too)", () => {
  const anyDelimiter = fc.oneof(fc.constantFrom(...["\n\n", "aa", "abab", "aba"].map((d) => Buffer.from(d))), delimiterArb);
  fc.assert(
    fc.property(
      anyDelimiter.chain((d) => fc.tuple(fc.constant(d), fc.array(fc.oneof(fc.constant(d), recordArb(d)), { maxLength: 40, size: "max" }).map((p) => Buffer.concat(p)))),
      ([d, data]) => {
        const starts = modelStarts(data, d);
        for (let x = 0; x <= data.length; x++) {
          const expected = x === 0 ? 0 : (starts.find((p) => p >= x) ?? data.length);
          assert.equal(recordStart(data, x, d), expected, `x=${x}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test("each range yields [start(s), start(e)), the ranges concatenate to the object, and reading stops where it should", async (t) => {
  let runs = 0;
  let ranges = 0;
  let reopens = 0;
  let biggest = 0;
  await fc.assert(
    fc.asyncProperty(
      objectArb.chain(({ d, data }) => fc.record({ d: fc.constant(d), data: fc.constant(data), bounds: cutsArb(data, d), seed: fc.integer() })),
      async ({ d, data, bounds, seed }) => {
        runs++;
        biggest = Math.max(biggest, data.length);
        const whole: Buffer[] = [];
        for (let i = 0; i + 1 < bounds.length; i++) {
          const [s, e] = [bounds[i], bounds[i + 1]];
          const source = memorySource(data, seed + i, 3);
          const retried: number[] = [];
          const got = await collect(
            readAligned({ open: source.open, start: s, end: e, size: data.length, delimiter: d, backoffMs: () => 0, onRetry: (_why, at) => retried.push(at) }),
          );
          const [a, b] = [recordStart(data, s, d), recordStart(data, e, d)];
          assert.deepEqual(got, data.subarray(a, Math.max(a, b)), `range [${s}, ${e}) of ${data.length}`);
          whole.push(got);
          ranges++;
          reopens += retried.length;
          assert.equal(source.opens.length, retried.length + (s === e ? 0 : 1), "one open, plus one per retry");
          assert.deepEqual(source.opens.slice(1), retried, "each reopen at the byte it said");
          if (s === e) continue;
          assert.equal(source.opens[0], Math.max(0, s - d.length), "the first open is D.length before the range");
          assert.ok(source.streams.every((st) => st.destroyed), "every source stream is closed");
          const needed = a >= e ? e : b;
          assert.ok(source.furthest <= needed + 2 * source.maxPiece, `read to ${source.furthest}, needed ${needed}`);
        }
        assert.deepEqual(Buffer.concat(whole), data);
      },
    ),
    { numRuns: 400 },
  );
  t.diagnostic(`${runs} objects (largest ${biggest} bytes), ${ranges} ranges, ${reopens} reopens after a cut`);
  assert.ok(reopens > 0 && biggest > 2000, "the inputs exercised reopening and were not tiny");
});

test("a record longer than a range goes whole to the range holding its first byte", async () => {
  const MiB = 1024 * 1024;
  const d = Buffer.from("\r\n");
  const data = Buffer.concat([Buffer.from("a\r\n"), Buffer.alloc(5 * MiB, "x"), d, Buffer.from("b\r\n")]);
  const bounds = [0, MiB, 2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB, data.length];
  const got: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const source = memorySource(data, i, 0, 64 * 1024);
    got.push(await collect(readAligned({ open: source.open, start: bounds[i], end: bounds[i + 1], size: data.length, delimiter: d })));
    if (i > 0 && i < 5) assert.ok(source.furthest <= bounds[i + 1] + 2 * 64 * 1024, "an empty range reads no further than its end");
  }
  const big = 3 + 5 * MiB + 2;
  assert.deepEqual(
    got.map((g) => g.length),
    [big, 0, 0, 0, 0, 3],
  );
  assert.deepEqual(Buffer.concat(got), data);
});

/** An object `head`, `length` bytes of "x", "\n", `tail`, made up piece by piece: it is never in memory whole. */
function syntheticObject(head: string, length: number, tail: string) {
  const size = head.length + length + 1 + tail.length;
  const byteAt = (p: number) => (p < head.length ? head.charCodeAt(p) : p < head.length + length ? 0x78 : p === head.length + length ? 0x0a : tail.charCodeAt(p - head.length - length - 1));
  const source = { furthest: 0, streams: [] as Readable[], size, open: null as unknown as RangeOpener };
  source.open = (from: number) => {
    let at = from;
    const stream = new Readable({
      read() {
        const n = Math.min(64 * 1024, size - at);
        const piece = Buffer.alloc(n, 0x78);
        for (let i = 0; i < n; i++) if (at + i < head.length || at + i >= head.length + length) piece[i] = byteAt(at + i);
        at += n;
        source.furthest = at;
        this.push(piece);
        if (at >= size) this.push(null);
      },
    });
    source.streams.push(stream);
    return Promise.resolve(stream);
  };
  return source;
}

test("a 50 MiB record streams through without being held", async (t) => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const MiB = 1024 * 1024;
  const source = syntheticObject("head\n", 50 * MiB, "tail\n");
  // Dead buffers' memory is freed by a sweeper after the collection: a second one, a turn later, waits it out.
  const live = async () => {
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const before = await live();
  const rssBefore = process.memoryUsage().rss;
  let peak = -Infinity;
  let bytes = 0;
  let last = 0;
  let next = 0;
  for await (const part of readAligned({ open: source.open, start: 0, end: MiB, size: source.size, delimiter: Buffer.from("\n") })) {
    bytes += (part as Buffer).length;
    last = (part as Buffer)[(part as Buffer).length - 1];
    if (bytes >= next) {
      peak = Math.max(peak, (await live()) - before);
      next += 4 * MiB;
    }
  }
  assert.equal(bytes, 5 + 50 * MiB + 1, "the range holds the head record and the long one, not the tail");
  assert.equal(last, 0x0a);
  assert.ok(source.furthest <= source.size, "read no further than the object");
  t.diagnostic(`live memory (heap + buffers, after gc) grew at most ${(peak / MiB).toFixed(1)} MiB; RSS ${((process.memoryUsage().rss - rssBefore) / MiB).toFixed(1)} MiB`);
  assert.ok(peak < 20 * MiB, `live memory grew ${(peak / MiB).toFixed(1)} MiB while streaming a 50 MiB record`);
});

test("an unread stream stops pulling its source (backpressure), and destroying it closes the source", async () => {
  const source = syntheticObject("", 8 * 1024 * 1024, "");
  const out = readAligned({ open: source.open, start: 0, end: 1, size: source.size, delimiter: Buffer.from("\n") });
  out.on("readable", () => undefined); // paused mode: fills its buffer, nobody reads
  for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
  assert.ok(source.furthest > 0 && source.furthest <= 256 * 1024, `pulled ${source.furthest} bytes that nobody read`);
  out.destroy();
  await new Promise((r) => out.once("close", r));
  assert.ok(source.streams.every((s) => s.destroyed));
});

test("destroying a read whose source has stalled closes the source at once", async () => {
  const stalled: Readable[] = [];
  const open: RangeOpener = () => {
    const s = new Readable({ read() {} }); // connected, and never a byte
    stalled.push(s);
    return Promise.resolve(s);
  };
  const out = readAligned({ open, start: 3, end: 9, size: 100, delimiter: Buffer.from("\n") });
  out.resume();
  for (let i = 0; i < 5 && stalled.length === 0; i++) await new Promise((r) => setImmediate(r));
  let closed = false;
  out.once("close", () => (closed = true));
  out.destroy();
  for (let i = 0; i < 20 && !closed; i++) await new Promise((r) => setImmediate(r));
  assert.ok(closed, "the read closed");
  assert.equal(stalled.length, 1);
  assert.ok(stalled[0].destroyed, "and closed its source");
});

test("a source that keeps failing fails the read with the byte offset, after `retries` reopens", async () => {
  const data = Buffer.from("one\ntwo\nthree\n");
  const whys: string[] = [];
  let opens = 0;
  const open: RangeOpener = (from) => {
    opens++;
    // Gives the first 2 bytes once, then breaks off before any byte, every time.
    const piece = opens === 1 ? data.subarray(from, from + 2) : Buffer.alloc(0);
    return Promise.resolve(Readable.from(piece.length ? [piece] : []));
  };
  await assert.rejects(
    collect(readAligned({ open, start: 5, end: 10, size: data.length, delimiter: Buffer.from("\n"), retries: 3, backoffMs: () => 1, onRetry: (why) => whys.push(why) })),
    /could not read byte 6 of 14 \(4 tries in a row\): the stream ended at byte 6/,
  );
  assert.equal(whys.length, 3);
  assert.equal(opens, 4, "the first open made progress and counts as the first failure in a row");
});

test("an open that throws a plain Error fails at once; a RetryableReadError is retried", async () => {
  const data = Buffer.from("one\ntwo\n");
  let opens = 0;
  const refused: RangeOpener = () => {
    opens++;
    return Promise.reject(new Error("access denied"));
  };
  await assert.rejects(collect(readAligned({ open: refused, start: 0, end: 8, size: 8, delimiter: Buffer.from("\n") })), /^Error: access denied$/);
  assert.equal(opens, 1);
  let tries = 0;
  const flaky: RangeOpener = (from) => (++tries < 3 ? Promise.reject(new RetryableReadError("HTTP 503")) : Promise.resolve(Readable.from([data.subarray(from)])));
  const whys: string[] = [];
  // The default backoff (100 ms, then 200 ms): the one place a test waits for it.
  assert.equal((await collect(readAligned({ open: flaky, start: 1, end: 8, size: 8, delimiter: Buffer.from("\n"), onRetry: (why) => whys.push(why) }))).toString(), "two\n");
  assert.deepEqual(whys, ["HTTP 503", "HTTP 503"]);
});

test("a delimiter with a border, or a range outside the object, is refused", () => {
  const open: RangeOpener = () => Promise.resolve(Readable.from([]));
  assert.throws(() => readAligned({ open, start: 0, end: 1, size: 4, delimiter: Buffer.from("\n\n") }), /overlaps itself/);
  assert.throws(() => readAligned({ open, start: 3, end: 2, size: 4, delimiter: Buffer.from("\n") }), /bad range/);
  assert.throws(() => readAligned({ open, start: 0, end: 5, size: 4, delimiter: Buffer.from("\n") }), /bad range/);
});

test("delimiterHasBorder on examples", () => {
  for (const d of ["\n", "\r\n", "<|>", "ab", "abc", "\u00e9"]) assert.equal(delimiterHasBorder(Buffer.from(d)), false, JSON.stringify(d));
  for (const d of ["|~|", "\n\n", "aa", "abab", "aba", "abcab", "\r\n\r"]) assert.equal(delimiterHasBorder(Buffer.from(d)), true, JSON.stringify(d));
});
