// The shuffle's order is `LC_ALL=C sort -s -t SEP -k1,N`'s: for any records (edge bytes, prefix keys,
// empty keys, missing fields, a missing final delimiter, multi-byte delimiters, one heavy key), any
// spill size and fan-in (many spills, extra merge passes), runs read back in frames of any size,
// sortToRun + mergeRuns and sortToPlain give the model's records, and no temp file is left.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { FNV_OFFSET_BASIS, mergeRuns, mergeToRun, partitionOf, sortToPlain, sortToRun, type RunInfo } from "../core/shuffle";
import { assertHolds, cases, collect, decodeRun, fanIn, frameSizes, framed, keyOf, modelSort, plain, spillBytes, splitRecords, tempDir, type Case } from "./shuffle-model";

/** The run holds the model's records, each carrying its key where the format says it must, and info tells the truth. */
function checkRun(run: Buffer, info: RunInfo, c: Case, expected: Buffer[], markEvery: number): void {
  const decoded = decodeRun(run);
  assert.deepEqual(
    decoded.map((r) => r.bytes),
    expected,
  );
  assert.equal(info.bytes, run.length);
  assert.equal(info.records, expected.length);
  assert.deepEqual(info.partitionEnds, []);
  assert.deepEqual(info.marks, firstAtEachMultiple(decoded.map((r) => r.offset), markEvery));
  decoded.forEach((r, i) => {
    const key = keyOf(r.bytes, c.key);
    const keyChanged = i === 0 || !keyOf(decoded[i - 1].bytes, c.key).equals(key);
    // A record carries its key exactly when it must: first, at a key change, at a mark (flags spare the merge compares).
    const mustCarry = keyChanged || info.marks.includes(r.offset);
    if (mustCarry) assert.equal(r.keyLength, key.length, `record ${i} carries its key`);
    else assert.equal(r.keyLength, null, `record ${i} says "same key"`);
  });
}

/** Offset 0, then the first record starting at or after each multiple of `every`. */
function firstAtEachMultiple(offsets: number[], every: number): number[] {
  const marks: number[] = [];
  let next = 0;
  for (const o of offsets) {
    if (o >= next) {
      marks.push(o);
      next = (Math.floor(o / every) + 1) * every;
    }
  }
  return marks;
}

test("sortToRun, mergeRuns and sortToPlain give the model's order, leaving no temp file", async () => {
  await fc.assert(
    fc.asyncProperty(cases, spillBytes, fanIn, fc.integer({ min: 1, max: 60 }), frameSizes, fc.integer({ min: 1, max: 40 }), async (c, spill, fan, markEvery, sizes, frameBytes) => {
      const dir = tempDir();
      try {
        const input = path.join(dir, "map-output");
        fs.writeFileSync(input, c.input);
        const expected = modelSort(splitRecords(c.input, c.delimiter), c.key);
        const o = { delimiter: c.delimiter, key: c.key, tmpDir: dir, spillBytes: spill, fanIn: fan };
        const info = await sortToRun(input, path.join(dir, "run"), { ...o, partitions: null, markEvery });
        const run = fs.readFileSync(path.join(dir, "run"));
        checkRun(run, info, c, expected, markEvery);
        const merged = await collect(mergeRuns([framed(run, sizes)], { delimiter: c.delimiter, tmpDir: dir, frameBytes }), frameBytes);
        assert.deepEqual(merged, plain(expected, c.delimiter));
        const counts = await sortToPlain(input, path.join(dir, "plain"), o);
        assert.deepEqual(fs.readFileSync(path.join(dir, "plain")), plain(expected, c.delimiter));
        assert.deepEqual(counts, { bytes: merged.length, records: expected.length });
        assertHolds(dir, ["map-output", "run", "plain"]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 150 },
  );
});

test("merging the runs of several map outputs keeps equal keys in source order, through extra merge passes", async () => {
  await fc.assert(
    fc.asyncProperty(
      cases,
      fc.array(fc.nat(), { maxLength: 8 }),
      spillBytes,
      fanIn,
      fc.array(frameSizes, { minLength: 1, maxLength: 9 }),
      fc.integer({ min: 1, max: 100 }),
      async (c, cutsAt, spill, fan, sizes, frameBytes) => {
        const dir = tempDir();
        try {
          // Each map output is a stretch of the case's bytes, split into records on its own.
          const cuts = [0, ...cutsAt.map((n) => n % (c.input.length + 1)).sort((a, b) => a - b), c.input.length];
          const outputs = cuts.slice(1).map((end, i) => c.input.subarray(cuts[i], end));
          const runs: Buffer[] = [];
          for (const [i, output] of outputs.entries()) {
            fs.writeFileSync(path.join(dir, `map-${i}`), output);
            await sortToRun(path.join(dir, `map-${i}`), path.join(dir, `run-${i}`), { delimiter: c.delimiter, key: c.key, partitions: null, tmpDir: dir, spillBytes: spill, fanIn: fan });
            runs.push(fs.readFileSync(path.join(dir, `run-${i}`)));
          }
          const expected = modelSort(outputs.flatMap((o) => splitRecords(o, c.delimiter)), c.key);
          const sources = runs.map((r, i) => framed(r, sizes[i % sizes.length]));
          const merged = await collect(mergeRuns(sources, { delimiter: c.delimiter, tmpDir: dir, fanIn: fan, frameBytes }), frameBytes);
          assert.deepEqual(merged, plain(expected, c.delimiter));
          assertHolds(dir, outputs.flatMap((_, i) => [`map-${i}`, `run-${i}`]));
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      },
    ),
    { numRuns: 100 },
  );
});

test("mergeToRun merges runs into one run: key order with marks, or hash segments, ties in source order", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(cases, { minLength: 1, maxLength: 5 }), fc.option(fc.integer({ min: 1, max: 4 })), fanIn, fc.integer({ min: 1, max: 60 }), frameSizes, async (maps, partitions, fan, markEvery, sizes) => {
      const dir = tempDir();
      try {
        const { delimiter, key } = maps[0];
        const sources = [];
        for (const [i, m] of maps.entries()) {
          fs.writeFileSync(path.join(dir, `map-${i}`), m.input);
          await sortToRun(path.join(dir, `map-${i}`), path.join(dir, `run-${i}`), { delimiter, key, partitions, tmpDir: dir, spillBytes: 64 });
          sources.push(framed(fs.readFileSync(path.join(dir, `run-${i}`)), sizes));
        }
        const info = await mergeToRun(sources, path.join(dir, "merged"), { tmpDir: dir, fanIn: fan, partitions, markEvery });
        const records = maps.flatMap((m) => splitRecords(m.input, delimiter));
        const merged = fs.readFileSync(path.join(dir, "merged"));
        if (partitions === null) checkRun(merged, info, { delimiter, key, input: Buffer.alloc(0) }, modelSort(records, key), markEvery);
        else {
          assert.deepEqual(
            decodeRun(merged).map((r) => r.bytes),
            modelSort(records, key, partitions),
          );
          assert.deepEqual(info.partitionEnds, [...Array(partitions).keys()].map((p) => decodeRun(merged).filter((r) => partitionOf(keyOf(r.bytes, key), partitions) <= p).reduce((end, r) => end + 8 + r.bytes.length, 0)));
        }
        assertHolds(dir, [...maps.flatMap((_, i) => [`map-${i}`, `run-${i}`]), "merged"]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 60 },
  );
});

const hasSort = spawnSync("sort", ["--version"]).status === 0;

test("sortToPlain's output is LC_ALL=C sort -s -t SEP -k1,N's, byte for byte", { skip: hasSort ? false : "no sort(1) here" }, async () => {
  const lines = fc.constantFrom("\n", "\0").chain((d) =>
    fc.tuple(
      fc.constant(d),
      fc.constantFrom("\t", ",", "b"),
      fc.integer({ min: 1, max: 3 }),
      fc.array(fc.constantFrom("a", "b", "c", ",", "\t", "\n", "\0", "\x7f", "\x80", "\xff"), { maxLength: 300, size: "max" }).map((t) => Buffer.from(t.join(""), "latin1")),
    ),
  );
  await fc.assert(
    fc.asyncProperty(lines, spillBytes, async ([d, sep, fields, input], spill) => {
      const dir = tempDir();
      try {
        fs.writeFileSync(path.join(dir, "in"), input);
        await sortToPlain(path.join(dir, "in"), path.join(dir, "out"), { delimiter: Buffer.from(d), key: { separator: Buffer.from(sep), fields }, tmpDir: dir, spillBytes: spill, fanIn: 2 });
        const args = ["-s", "-t", sep, `-k1,${fields}`, ...(d === "\0" ? ["-z"] : [])];
        const sorted = spawnSync("sort", args, { input, env: { LC_ALL: "C" } });
        assert.equal(sorted.status, 0, sorted.stderr.toString());
        assert.deepEqual(fs.readFileSync(path.join(dir, "out")), sorted.stdout);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 150 },
  );
});

test("empty input is an empty run; a final record without a delimiter gets one in plain output", async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, "empty"), "");
    const o = { delimiter: Buffer.from("\r\n"), key: { separator: Buffer.from("\t"), fields: 1 }, tmpDir: dir };
    assert.deepEqual(await sortToRun(path.join(dir, "empty"), path.join(dir, "run"), { ...o, partitions: null }), { bytes: 0, records: 0, partitionEnds: [], marks: [] });
    assert.deepEqual(await sortToRun(path.join(dir, "empty"), path.join(dir, "run"), { ...o, partitions: 3 }), { bytes: 0, records: 0, partitionEnds: [0, 0, 0], marks: [] });
    assert.equal(fs.statSync(path.join(dir, "run")).size, 0);
    assert.deepEqual(await collect(mergeRuns([], { delimiter: o.delimiter, tmpDir: dir })), Buffer.alloc(0));
    fs.writeFileSync(path.join(dir, "in"), "b\t2\r\n\r\na\t1");
    await sortToPlain(path.join(dir, "in"), path.join(dir, "out"), o);
    assert.equal(fs.readFileSync(path.join(dir, "out"), "latin1"), "\r\na\t1\r\nb\t2\r\n");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a record longer than every buffer (spill, write frame, read frame) passes whole", async () => {
  const dir = tempDir();
  try {
    const long = Buffer.alloc(300_000, "x");
    const input = Buffer.concat([Buffer.from("m\tshort\n"), Buffer.from("b\t"), long, Buffer.from("\na\tshort")]);
    fs.writeFileSync(path.join(dir, "in"), input);
    const o = { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields: 1 }, tmpDir: dir, spillBytes: 64, fanIn: 2 };
    const expected = plain(modelSort(splitRecords(input, o.delimiter), o.key), o.delimiter);
    const info = await sortToRun(path.join(dir, "in"), path.join(dir, "run"), { ...o, partitions: null, markEvery: 1000 });
    assert.deepEqual(info.marks, [0, 300_025]); // "a" at 0, the long "b" at 15, "m" at 15 + 8 + 300002
    const run = fs.readFileSync(path.join(dir, "run"));
    assert.ok((await collect(mergeRuns([framed(run, [4096])], { delimiter: o.delimiter, tmpDir: dir, frameBytes: 1000 }), 1000)).equals(expected));
    await sortToPlain(path.join(dir, "in"), path.join(dir, "plain"), o);
    assert.ok(fs.readFileSync(path.join(dir, "plain")).equals(expected));
    assertHolds(dir, ["in", "run", "plain"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("partitionOf is FNV-1a 32 over the key's bytes, modulo P (known values: never change)", () => {
  assert.equal(FNV_OFFSET_BASIS, 0x811c9dc5);
  assert.equal(partitionOf(Buffer.alloc(0), 2 ** 32 - 1), 0x811c9dc5);
  assert.equal(partitionOf(Buffer.from("a"), 2 ** 32 - 1), 0xe40c292c);
  assert.equal(partitionOf(Buffer.from("foobar"), 2 ** 32 - 1), 0xbf9cf968);
  assert.equal(partitionOf(Buffer.from("foobar"), 7), 0xbf9cf968 % 7);
});
