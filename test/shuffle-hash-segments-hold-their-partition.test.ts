// Hash partitioning: segment p of a run holds exactly the records whose key hashes to p, in key order,
// partitionEnds say where each segment ends, and a reducer merging segment p of every map's run gets
// the model's records of partition p in order, ties in map order.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { mergeRuns, partitionOf, sortToRun } from "../core/shuffle";
import { assertHolds, cases, collect, decodeRun, fanIn, frameSizes, framed, keyOf, modelSort, plain, spillBytes, splitRecords, tempDir } from "./shuffle-model";

test("segment p holds the records of partition p in key order, and partitionEnds are right", async () => {
  await fc.assert(
    fc.asyncProperty(cases, fc.integer({ min: 1, max: 7 }), spillBytes, fanIn, async (c, partitions, spill, fan) => {
      const dir = tempDir();
      try {
        fs.writeFileSync(path.join(dir, "map-output"), c.input);
        const info = await sortToRun(path.join(dir, "map-output"), path.join(dir, "run"), { delimiter: c.delimiter, key: c.key, partitions, tmpDir: dir, spillBytes: spill, fanIn: fan });
        const run = fs.readFileSync(path.join(dir, "run"));
        const decoded = decodeRun(run);
        const records = splitRecords(c.input, c.delimiter);
        assert.equal(info.partitionEnds.length, partitions);
        assert.equal(info.partitionEnds[partitions - 1], run.length);
        assert.deepEqual(info.marks, []);
        assert.equal(info.records, records.length);
        for (let p = 0; p < partitions; p++) {
          const from = p === 0 ? 0 : info.partitionEnds[p - 1];
          const segment = decoded.filter((r) => r.offset >= from && r.offset < info.partitionEnds[p]);
          assert.ok(segment.length === 0 || segment[0].offset === from, `segment ${p} starts at its start`);
          const inP = records.filter((r) => partitionOf(keyOf(r, c.key), partitions) === p);
          assert.deepEqual(
            segment.map((r) => r.bytes),
            modelSort(inP, c.key),
          );
          // A record carries its key exactly when it must: first of its segment, or at a key change.
          segment.forEach((r, i) => {
            const key = keyOf(r.bytes, c.key);
            const mustCarry = i === 0 || !keyOf(segment[i - 1].bytes, c.key).equals(key);
            assert.equal(r.keyLength, mustCarry ? key.length : null, `segment ${p} record ${i}`);
          });
        }
        assert.deepEqual(
          decoded.map((r) => r.bytes),
          modelSort(records, c.key, partitions),
        );
        assertHolds(dir, ["map-output", "run"]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 100 },
  );
});

test("a reducer merging segment p of every map's run gets partition p in order, ties in map order", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(cases, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 5 }), spillBytes, fanIn, frameSizes, async (maps, partitions, spill, fan, sizes) => {
      const dir = tempDir();
      try {
        // Every map shares the first case's delimiter and key.
        const { delimiter, key } = maps[0];
        const runs = [];
        for (const [i, m] of maps.entries()) {
          fs.writeFileSync(path.join(dir, `map-${i}`), m.input);
          const info = await sortToRun(path.join(dir, `map-${i}`), path.join(dir, `run-${i}`), { delimiter, key, partitions, tmpDir: dir, spillBytes: spill, fanIn: fan });
          runs.push({ bytes: fs.readFileSync(path.join(dir, `run-${i}`)), info });
        }
        const all = maps.flatMap((m) => splitRecords(m.input, delimiter));
        for (let p = 0; p < partitions; p++) {
          const sources = runs.map(({ bytes, info }) => framed(bytes.subarray(p === 0 ? 0 : info.partitionEnds[p - 1], info.partitionEnds[p]), sizes));
          const merged = await collect(mergeRuns(sources, { delimiter, tmpDir: dir, fanIn: fan }));
          const expected = modelSort(
            all.filter((r) => partitionOf(keyOf(r, key), partitions) === p),
            key,
          );
          assert.deepEqual(merged, plain(expected, delimiter));
        }
        assertHolds(dir, maps.flatMap((_, i) => [`map-${i}`, `run-${i}`]));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 75 },
  );
});
