// Sizes the small properties never reach: outputs of several 4 MiB write frames (written while the
// next fills), spills of thousands of keys (ranked) and of ~100k distinct keys (radix, in buckets),
// extra merge passes. Still exactly LC_ALL=C sort -s's order (the reference here: the in-memory model
// takes seconds on a million records), and no temp file left.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { mergeRuns, partitionOf, sortToPlain, sortToRun } from "../core/shuffle";
import { filePieces } from "../core/file-pieces";
import { assertHolds, collect, decodeRun, keyOf, plain, splitRecords, tempDir } from "./shuffle-model";

/** A deterministic PRNG (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function input(bytes: number, line: (r: () => number) => string): Buffer {
  const r = random(1);
  const lines: string[] = [];
  for (let n = 0; n < bytes; ) {
    const l = line(r);
    lines.push(l);
    n += l.length;
  }
  return Buffer.from(lines.join(""), "latin1");
}

const few = (r: () => number) => `${["USA", "FRA", "DEU", "CHN", "BRA"][Math.floor(r() * 5)]}\t${2000 + Math.floor(r() * 600)}\t${Math.floor(r() * 1e6)}\n`;
const many = (r: () => number) => `${Math.floor(r() * 100_000).toString(36)}\xe9\t${Math.floor(r() * 1e6)}\n`;

const hasSort = spawnSync("sort", ["--version"]).status === 0;

for (const [name, line, fields] of [["thousands of keys (ranked)", few, 2], ["~100k distinct keys (radix)", many, 1]] as const) {
  test(`8 MiB of ${name}, in 3 MiB spills merged two at a time, sort as sort(1) does`, { skip: hasSort ? false : "no sort(1) here" }, async () => {
    const dir = tempDir();
    try {
      const data = input(8 * 1024 * 1024, line);
      fs.writeFileSync(path.join(dir, "map-output"), data);
      const o = { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields }, tmpDir: dir, spillBytes: 3 * 1024 * 1024, fanIn: 2 };
      const sorted = spawnSync("sort", ["-s", "-t", "\t", `-k1,${fields}`, path.join(dir, "map-output")], { env: { LC_ALL: "C" }, maxBuffer: 1 << 30 });
      assert.equal(sorted.status, 0, String(sorted.stderr));
      const expected = sorted.stdout;
      const records = splitRecords(expected, o.delimiter);
      await sortToPlain(path.join(dir, "map-output"), path.join(dir, "plain"), o);
      assert.ok(fs.readFileSync(path.join(dir, "plain")).equals(expected), "sortToPlain");
      const info = await sortToRun(path.join(dir, "map-output"), path.join(dir, "run"), { ...o, partitions: null });
      const merged = await collect(mergeRuns([() => filePieces(path.join(dir, "run"), 0, Infinity, 1 << 20)], { delimiter: o.delimiter, tmpDir: dir }));
      assert.ok(merged.equals(expected), "sortToRun, then mergeRuns");
      assert.equal(info.records, records.length);
      const hashed = await sortToRun(path.join(dir, "map-output"), path.join(dir, "hashed"), { ...o, partitions: 3 });
      const decoded = decodeRun(fs.readFileSync(path.join(dir, "hashed")));
      // Segment p: sort(1)'s records of partition p, in its order.
      const partitionOfRecord = records.map((r) => partitionOf(keyOf(r, o.key), 3));
      const bySegment = [0, 1, 2].flatMap((p) => records.filter((_, i) => partitionOfRecord[i] === p));
      assert.ok(plain(decoded.map((r) => r.bytes), o.delimiter).equals(plain(bySegment, o.delimiter)), "hash segments");
      assert.equal(decoded.length, records.length);
      assert.equal(hashed.partitionEnds[2], fs.statSync(path.join(dir, "hashed")).size);
      decoded.forEach((r, i) => {
        const carries = i === 0 || !keyOf(decoded[i - 1].bytes, o.key).equals(keyOf(r.bytes, o.key)) || hashed.partitionEnds.includes(r.offset);
        assert.equal(r.keyLength === null, !carries, `record ${i}`);
      });
      assertHolds(dir, ["map-output", "plain", "run", "hashed"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
