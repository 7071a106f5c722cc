// Map-reduce's oracle: for random records, keys and partition counts, `bach task-run` with a reduce
// block prints exactly what `map < input | LC_ALL=C sort -s -t TAB -k1,N | reduce` prints run once
// (total order), or, partition by partition, what that pipeline prints over each partition's records
// (hash order). Real runs: the CLI with its coordinator and workers, GNU sort as the judge.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { partitionOf } from "../core/shuffle";
import { runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

const TAB = 0x09;
const NL = 0x0a;

/** Field bytes: letters that are prefixes of each other, bytes above 0x7f, and the empty field. */
const field = fc.constantFrom("", "a", "ab", "abc", "b", "B", "\xe9", "\xe9a", "\xff", "a\xe9", " ", "z");
const record = fc.array(field, { minLength: 1, maxLength: 4 }).map((fields) => Buffer.from(fields.join("\t"), "latin1"));

/** Records, sometimes with one record repeated for about half of them (a skewed key). size "max": fast-check otherwise stops at 10. */
const records = fc.tuple(fc.array(record, { maxLength: 60, size: "max" }), fc.boolean(), record).map(([rs, skew, hot]) => (skew ? rs.flatMap((r) => [r, hot]) : rs));

/** A record's key as the pipeline's sort sees it: its first `fields` tab-separated fields. */
function keyOf(r: Buffer, fields: number): Buffer {
  let at = -1;
  for (let n = 0; n < fields; n++) {
    at = r.indexOf(TAB, at + 1);
    if (at < 0) return r;
  }
  return r.subarray(0, at);
}

function sortOnce(input: Buffer, fields: number): Buffer {
  const r = spawnSync("sort", ["-s", "-t", "\t", `-k1,${fields}`], { input, env: { ...process.env, LC_ALL: "C" }, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

function joined(rs: Buffer[], trailing: boolean): Buffer {
  const parts: Buffer[] = [];
  rs.forEach((r, i) => parts.push(r, ...(i < rs.length - 1 || trailing ? [Buffer.from([NL])] : [])));
  return Buffer.concat(parts);
}

/**
 * The records the input holds, as a reader of delimited records sees them: an input that is empty, or
 * whose last record is empty and has no delimiter after it, holds no record there (`joined([""], false)`
 * is the empty input, not one empty record).
 */
function recordsOf(input: Buffer): Buffer[] {
  const rs: Buffer[] = [];
  let start = 0;
  for (let nl = input.indexOf(NL); nl >= 0; nl = input.indexOf(NL, start)) {
    rs.push(input.subarray(start, nl));
    start = nl + 1;
  }
  if (start < input.length) rs.push(input.subarray(start));
  return rs;
}

/** Identity map and reduce: the output is the shuffle itself, so every byte of its order shows. */
function identityTask(order: "hash" | "total", fields: number, partitions: number): string {
  return taskFolder({
    binary: "cat",
    stderr: "fail",
    reduce: { binary: "cat", key: { separator: "\t", fields }, partitions, order },
  });
}

async function bachOutput(task: string, input: Buffer): Promise<Buffer> {
  const file = path.join(tempDir("bach-mr-"), "records");
  fs.writeFileSync(file, input);
  const r = await runBach(["task-run", "--data", file, "-p", "2", "--chunk-size", "64"], { cwd: task });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe("map-reduce gives the pipeline's output", () => {
  test("total order: byte-identical to map | sort -s | reduce run once", async () => {
    await fc.assert(
      fc.asyncProperty(records, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (rs, fields, partitions, trailing) => {
        const input = joined(rs, trailing);
        const out = await bachOutput(identityTask("total", fields, partitions), input);
        assert.ok(out.equals(sortOnce(input, fields)), `output differs from the pipeline's for ${JSON.stringify(input.toString("latin1"))}`);
      }),
      { numRuns: 12 },
    );
  });

  test("hash order: each partition's output is the pipeline over its records, partitions in order", async () => {
    await fc.assert(
      fc.asyncProperty(records, fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (rs, fields, partitions, trailing) => {
        const input = joined(rs, trailing);
        const out = await bachOutput(identityTask("hash", fields, partitions), input);
        const expected = Buffer.concat(
          Array.from({ length: partitions }, (_, p) => {
            const mine = recordsOf(input).filter((r) => partitionOf(keyOf(r, fields), partitions) === p);
            return mine.length ? sortOnce(joined(mine, true), fields) : Buffer.alloc(0);
          }),
        );
        assert.ok(out.equals(expected), `output differs for ${JSON.stringify(input.toString("latin1"))}`);
      }),
      // The empty input that once judged Bach by a record it never held (seed -1547698378), and a last empty record without its delimiter.
      { numRuns: 10, examples: [[[Buffer.alloc(0)], 1, 1, false], [[Buffer.from("a"), Buffer.alloc(0)], 1, 2, false]] },
    );
  });

  test("a counting reducer with a combiner gives the pipeline's counts, and empty map output gives the reducer's output over nothing", async () => {
    const sum = ["-F", "\t", "BEGIN { OFS = \"\\t\" } NR > 1 && $1 != k { print k, s; s = 0 } { k = $1; s += $2 } END { if (NR > 0) print k, s }"];
    const words = Array.from({ length: 3000 }, (_, i) => `w${(i * 7919) % 97}\tx${i % 5}`).join("\n");
    const file = path.join(tempDir("bach-mr-"), "words");
    fs.writeFileSync(file, `${words}\n`);
    const map = ["-F", "\t", "{ print $1 \"\\t1\" }"];
    const mapped = spawnSync("awk", [...map, file]).stdout;
    const expected = spawnSync("awk", sum, { input: sortOnce(mapped, 1) }).stdout;
    assert.ok(expected.length > 0);
    for (const combine of [false, true]) {
      const task = taskFolder({ binary: "awk", args: map, reduce: { binary: "awk", args: sum, order: "total", partitions: 3, combine } });
      const r = await runBach(["task-run", "--data", file, "-p", "2", "--chunk-size", "4k"], { cwd: task });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), expected.toString(), `combine ${combine}`);
    }
    const silent = taskFolder({ binary: "sh", args: ["-c", "cat > /dev/null"], reduce: { binary: "sh", args: ["-c", "cat; echo end"], order: "total" } });
    const r = await runBach(["task-run", "--data", file, "-p", "2", "--chunk-size", "4k"], { cwd: silent });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "end\n", "one reduce partition over an empty map output, as the pipeline runs its reducer once");
  });

  test("the report shows both phases", async () => {
    const task = identityTask("hash", 1, 3);
    const file = path.join(tempDir("bach-mr-"), "records");
    fs.writeFileSync(file, Array.from({ length: 500 }, (_, i) => `k${i % 17}\tv${i}`).join("\n"));
    const env = { BACH_HOME: tempDir("bach-home-") };
    const run = await runBach(["task-run", "--data", file, "-p", "2", "--chunk-size", "1k"], { cwd: task, env });
    assert.equal(run.code, 0, run.stderr);
    const r = await runBach(["task-report", "--json"], { cwd: task, env });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.toString()) as { reduce: { phase: string; partitions: number; bytesShuffled: number; mapChunks: number; reduceAttempts: number } };
    assert.equal(report.reduce.phase, "reduce");
    assert.equal(report.reduce.partitions, 3);
    assert.ok(report.reduce.mapChunks > 1, "several map chunks");
    assert.ok(report.reduce.bytesShuffled > 0);
    assert.ok(report.reduce.reduceAttempts >= 3);
    const text = await runBach(["task-report"], { cwd: task, env });
    assert.match(text.stdout.toString(), /shuffle +\d/);
    assert.match(text.stdout.toString(), /partition 2: committed/);
    const page = path.join(tempDir("bach-html-"), "report.html");
    const html = await runBach(["task-report", "--html", page], { cwd: task, env });
    assert.equal(html.code, 0, html.stderr);
    const written = fs.readFileSync(page, "utf8");
    assert.match(written, /class="reduce-start"/, "the map phase's end is marked on the timeline");
    assert.match(written, /<rect class="reduce"/, "reduce attempts are bars of their own kind");
  });
});

describe("map-reduce on a cluster", () => {
  /** Records of 40 keys, and the identity task's expected output in total order. */
  function keyed(): { file: string; expected: Buffer } {
    const input = Buffer.from(`${Array.from({ length: 40_000 }, (_, i) => `key${(i * 31) % 40}\trow ${i}`).join("\n")}\n`);
    const file = path.join(tempDir("bach-mr-"), "records");
    fs.writeFileSync(file, input);
    return { file, expected: sortOnce(input, 1) };
  }

  test("reduce attempts read runs in place on the spool's disk and over the data port from another machine; task-output prints the reduced output", async (t) => {
    const cluster = await startCluster({ slots: 2 });
    t.after(() => cluster.stop());
    await cluster.addWorker();
    await cluster.addWorker({ localSpool: true });
    await waitFor("worker-2 to find the spool", () => cluster.coordinator.stderr().includes("shares the coordinator's filesystem"));
    const { file, expected } = keyed();
    const task = identityTask("total", 1, 4);
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const run = await runBach(["task-run", ...on, "--data", file, "--chunk-size", "16k"], { cwd: task });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.equals(expected), "output identical to the pipeline's");
    const detached = await runBach(["task-run", ...on, "--data", file, "--chunk-size", "16k", "--detach"], { cwd: task });
    assert.equal(detached.code, 0, detached.stderr);
    const out = await runBach(["task-output", detached.stdout.toString().trim(), ...on], { cwd: task });
    assert.equal(out.code, 0, out.stderr);
    assert.ok(out.stdout.equals(expected), "task-output prints the reduced output");
  });

  test("reduce attempts fetch runs over gRPC when the data port cannot be reached", async (t) => {
    // The data port listens on 127.0.0.2 only: the worker's connections to 127.0.0.1 are refused.
    const cluster = await startCluster({ workers: 1, slots: 2, dataListen: "127.0.0.2:0" });
    t.after(() => cluster.stop());
    const { file, expected } = keyed();
    const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", file, "--chunk-size", "16k"], { cwd: identityTask("hash", 1, 1) });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected), "one hash partition: the whole output in key order");
    assert.match(cluster.workers[0]?.stderr() ?? "", /data port did not answer; fetching chunks over gRPC/);
  });
});
