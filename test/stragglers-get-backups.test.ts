// Speculative execution: when slots are idle and an attempt runs far longer than its task's typical
// chunk, a backup attempt starts on another worker; the first to finish commits, the other is
// cancelled. With one worker throttled, the task still finishes near the speed of the healthy ones.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { TaskReport } from "../core/report";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
  for (const name of ["healthy-1", "healthy-2", "slow"]) await cluster.addWorker({ name, slots: 1 });
});
after(() => cluster.stop());

test("a throttled worker's chunks are backed up elsewhere; the task ends near the healthy workers' speed", async (t) => {
  const input = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(input, Array.from({ length: 4000 }, (_, i) => `line ${i}\n`).join(""));
  // On the worker named "slow" every chunk takes 60 s; elsewhere 0.2 s.
  const task = taskFolder({ binary: "sh", args: ["-c", 'if [ "$BACH_WORKER" = slow ]; then sleep 60; fi; sleep 0.2; cat'] });
  const on = ["--coordinator", cluster.address, "--token", cluster.token];
  const started = Date.now();
  const r = await runBach(["task-run", ...on, "--data", input, "--chunk-size", "2k", "--no-progress"], { cwd: task, timeoutMs: 120_000 });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  const report = JSON.parse((await runBach(["task-report", ...on, "--json"], { cwd: task })).stdout.toString()) as TaskReport;
  t.diagnostic(`${report.chunks.planned} chunks in ${seconds.toFixed(1)} s; ${report.attempts.backups} backups; attempts ${JSON.stringify(report.attempts.byState)}`);
  assert.ok(report.attempts.backups >= 1, "the slow worker's chunk got a backup");
  assert.ok(seconds < 30, `the task took ${seconds.toFixed(1)} s: it waited for the slow worker`);
  const slow = report.workers.find((w) => w.name === "slow");
  assert.equal(slow?.committed ?? 0, 0, "nothing committed from the slow worker");
  assert.ok((report.attempts.byState.cancelled ?? 0) >= 1, "the straggler's attempt was cancelled when its backup committed");
});

test("a poison chunk fails the task after its retries, with its stderr, without holding back the others", async () => {
  await cluster.workers[2].stop("SIGKILL"); // the slow worker: this test is about the poison alone
  const input = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(input, ["poison", ...Array.from({ length: 3000 }, (_, i) => `line ${i}`)].join("\n") + "\n");
  const task = taskFolder({
    binary: "sh",
    args: ["-c", "if grep -q '^poison$'; then sleep 0.5; echo 'cannot digest the poison record' >&2; exit 3; fi; cat"],
    retries: 3,
    stderr: "log",
  });
  const on = ["--coordinator", cluster.address, "--token", cluster.token];
  const r = await runBach(["task-run", ...on, "--data", input, "--chunk-size", "2k", "--no-progress"], { cwd: task, timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /chunk 0 \(bytes 0-\d+\) failed after 4 attempts: exit 3/);
  assert.match(r.stderr, /cannot digest the poison record/);
  const report = JSON.parse((await runBach(["task-report", ...on, "--json"], { cwd: task })).stdout.toString()) as TaskReport;
  assert.equal(report.chunks.byState.committed, report.chunks.planned - 1, "every other chunk committed while chunk 0 was retried");
});
