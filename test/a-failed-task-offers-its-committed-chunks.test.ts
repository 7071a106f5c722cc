// A task that fails keeps what committed: its failure says which chunks committed and how to get them,
// and `bach task-output TASK --partial` prints every committed chunk in input order, with one line on
// stderr for each gap, and exits 1 because there were gaps.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

describe("a failed task offers its committed chunks", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ workers: 1, slots: 8 });
  });
  after(() => cluster.stop());

  test("task-output --partial prints every committed chunk in order and says where the gap is", async () => {
    // Chunk 3 fails every time, after the others have had time to commit.
    const task = taskFolder({
      binary: "sh",
      args: ["-c", 'if [ "$BACH_CHUNK" = 3 ]; then sleep 3; echo "chunk 3 is bad" >&2; exit 3; fi; cat'],
      retries: 1,
    });
    const file = path.join(tempDir("bach-data-"), "lines.txt");
    const lines: string[] = [];
    for (let i = 0; i < 8 * 1024; i++) lines.push(`line ${String(i).padStart(57, "0")}\n`);
    fs.writeFileSync(file, lines.join(""));
    const input = fs.readFileSync(file);
    const env = { BACH_COORDINATOR: cluster.address, BACH_TOKEN: cluster.token };

    const run = await runBach(["task-run", "--data", file, "--chunk-size", "64k"], { cwd: task, env });
    assert.equal(run.code, 1, run.stderr);
    const id = /task (t-\S+) failed/.exec(run.stderr)?.[1];
    assert.ok(id, run.stderr);

    const report = await runBach(["task-report", id, "--json"], { cwd: task, env });
    const r = JSON.parse(report.stdout.toString()) as { chunks: { planned: number }; failures: { chunk: number; offset: number; length: number }[] };
    assert.equal(r.chunks.planned, 8);
    const bad = r.failures.find((f) => f.chunk === 3);
    assert.ok(bad, report.stdout.toString());

    assert.match(run.stderr, new RegExp(`^bach: chunks 0-2, 4-7 of 8 committed; bach task-output ${id} --partial --coordinator ${cluster.address} prints them in input order$`, "m"));

    const partial = await runBach(["task-output", id, "--partial"], { cwd: task, env });
    assert.equal(partial.code, 1, partial.stderr);
    const expected = Buffer.concat([input.subarray(0, bad.offset), input.subarray(bad.offset + bad.length)]);
    assert.ok(partial.stdout.equals(expected), `stdout is every chunk but 3, in order (${partial.stdout.length} bytes, expected ${expected.length})`);
    const [gap, end, ...rest] = partial.stderr.split("\n");
    assert.equal(gap, `bach: chunk 3 (bytes ${bad.offset}-${bad.offset + bad.length - 1}) is missing: the task failed before it committed`);
    assert.match(end, new RegExp(`^bach: task ${id} failed: chunk 3 `));
    // The rest of the task's failure (the failed attempt's stderr), and nothing else.
    assert.deepEqual(rest.at(-1), "");
    for (const line of rest.slice(0, -1)) assert.match(line, /^bach: /);
    assert.equal(partial.stderr.split("is missing").length, 2, "one gap line");
  });
});
