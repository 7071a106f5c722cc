// Total order: split keys from weighted samples, each map's run cut at them with firstAtOrAbove
// (marks, then a scan), give each partition exactly the model's records with keys in its range, every
// cut lands on a record that carries its key, and equal unit weights make equal partitions.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { chooseSplits, firstAtOrAbove, keyAt, mergeRuns, sortToRun } from "../core/shuffle";
import { cases, collect, decodeRun, frameSizes, framed, keyOf, modelSort, plain, spillBytes, splitRecords, tempDir } from "./shuffle-model";

test("cutting each run at the splits gives each partition exactly the model's records in its key range", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(cases, { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 50 }),
      spillBytes,
      fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 20 }),
      frameSizes,
      async (maps, partitions, markEvery, spill, weights, sizes) => {
        const dir = tempDir();
        try {
          const { delimiter, key } = maps[0];
          const runs = [];
          for (const [i, m] of maps.entries()) {
            const file = path.join(dir, `run-${i}`);
            fs.writeFileSync(path.join(dir, `map-${i}`), m.input);
            const info = await sortToRun(path.join(dir, `map-${i}`), file, { delimiter, key, partitions: null, tmpDir: dir, spillBytes: spill, fanIn: 2, markEvery });
            runs.push({ file, info, decoded: decodeRun(fs.readFileSync(file)) });
          }
          const all = maps.flatMap((m) => splitRecords(m.input, delimiter));
          // Samples: some records' keys, with weights drawn for them (0 included).
          const samples = all.filter((_, i) => i % 3 !== 1).map((r, i) => ({ key: keyOf(r, key), weight: weights[i % weights.length] }));
          const splits = chooseSplits(samples, partitions);
          assert.ok(splits.length <= partitions - 1);
          splits.forEach((s, i) => assert.ok(i === 0 || splits[i - 1].compare(s) < 0, "splits strictly increase"));
          const ranges = [];
          for (const { file, info, decoded } of runs) {
            const cuts = [0];
            for (const split of splits) {
              const at = await firstAtOrAbove(file, cuts[cuts.length - 1], info.bytes, info.marks, split);
              const first = decoded.find((r) => r.offset >= cuts[cuts.length - 1] && keyOf(r.bytes, key).compare(split) >= 0);
              assert.equal(at, first?.offset ?? info.bytes);
              if (at < info.bytes) assert.deepEqual(await keyAt(file, at), keyOf(decoded.find((r) => r.offset === at)?.bytes ?? Buffer.alloc(0), key), "a cut carries its key");
              cuts.push(at);
            }
            cuts.push(info.bytes);
            ranges.push({ bytes: fs.readFileSync(file), cuts });
          }
          for (let p = 0; p <= splits.length; p++) {
            const sources = ranges.map(({ bytes, cuts }) => framed(bytes.subarray(cuts[p], cuts[p + 1]), sizes));
            const merged = await collect(mergeRuns(sources, { delimiter, tmpDir: dir, fanIn: 3 }));
            const inRange = all.filter((r) => {
              const k = keyOf(r, key);
              return (p === 0 || k.compare(splits[p - 1]) >= 0) && (p === splits.length || k.compare(splits[p]) < 0);
            });
            assert.deepEqual(merged, plain(modelSort(inRange, key), delimiter));
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      },
    ),
    { numRuns: 100 },
  );
});

test("distinct keys of equal weight make partitions within one key of equal", () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a).toString("latin1")), { maxLength: 200, size: "max" }), fc.integer({ min: 1, max: 20 }), (keys, partitions) => {
      fc.pre(keys.length >= partitions);
      const samples = keys.map((k) => ({ key: Buffer.from(k, "latin1"), weight: 1 }));
      const splits = chooseSplits(samples, partitions);
      assert.equal(splits.length, partitions - 1);
      const counts = new Array<number>(partitions).fill(0);
      for (const s of samples) counts[splits.filter((x) => s.key.compare(x) >= 0).length]++;
      for (const c of counts) assert.ok(Math.abs(c - keys.length / partitions) <= 1, `${counts}`);
    }),
    { numRuns: 500 },
  );
});

test("one key heavier than the rest makes fewer partitions, never an empty split", () => {
  const samples = [
    { key: Buffer.from("a"), weight: 100 },
    { key: Buffer.from("b"), weight: 1 },
    { key: Buffer.from("c"), weight: 1 },
  ];
  assert.deepEqual(chooseSplits(samples, 3), [Buffer.from("b")]);
  assert.deepEqual(chooseSplits(samples, 1), []);
  // Half the weight falls between c (2 before it) and d (12 before it): the nearer, c, splits.
  const skewed = [1, 1, 10, 1].map((weight, i) => ({ key: Buffer.from("abcd"[i]), weight }));
  assert.deepEqual(chooseSplits(skewed, 2), [Buffer.from("c")]);
  assert.deepEqual(chooseSplits([], 4), []);
  assert.deepEqual(chooseSplits([{ key: Buffer.from("x"), weight: 5 }], 4), []);
});

test("firstAtOrAbove: below every key is the start, above every key is the end", async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, "in"), "m\nb\nx\nb\n");
    const info = await sortToRun(path.join(dir, "in"), path.join(dir, "run"), { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields: 1 }, partitions: null, tmpDir: dir, markEvery: 1 });
    const run = path.join(dir, "run");
    assert.equal(await firstAtOrAbove(run, 0, info.bytes, info.marks, Buffer.from("")), 0);
    assert.equal(await firstAtOrAbove(run, 0, info.bytes, info.marks, Buffer.from("a")), 0);
    assert.equal(await firstAtOrAbove(run, 0, info.bytes, info.marks, Buffer.from("z")), info.bytes);
    assert.equal(await firstAtOrAbove(run, 0, info.bytes, [], Buffer.from("c")), 18);
    assert.equal(await firstAtOrAbove(run, 9, 9, info.marks, Buffer.from("c")), 9);
    assert.deepEqual(await keyAt(run, 18), Buffer.from("m"));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
