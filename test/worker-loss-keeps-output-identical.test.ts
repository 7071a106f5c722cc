// Losing a worker: SIGKILL one of two workers mid-task, or freeze it so its heartbeats stop; its chunks
// run again on the other and the output is still byte-identical.
import { test } from "node:test";
import assert from "node:assert/strict";
import Database from "better-sqlite3";
import path from "node:path";
import fs from "node:fs";
import { exampleDir, gdeltFile, runBach, runOnce, startCluster, taskFolder, waitFor } from "./harness";

const task = exampleDir("gdelt-filter");

function attemptsRunningOn(dataDir: string, workerName: string): number {
  const db = new Database(path.join(dataDir, "ledger.sqlite"), { readonly: true });
  try {
    const row = db
      .prepare("SELECT COUNT(*) AS n FROM attempts a JOIN workers w ON a.worker_id = w.id WHERE w.name = ? AND a.state = 'running'")
      .get(workerName) as { n: number };
    return row.n;
  } finally {
    db.close();
  }
}

function lostAttempts(dataDir: string): number {
  const db = new Database(path.join(dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM attempts WHERE state = 'lost'").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

// A slowed copy of the node mapper, so chunks are still running when a worker is killed.
const slow = { binary: "sh", args: ["-c", "sleep 0.3; node filter.js"] };

test("SIGKILL of one of two workers mid-task keeps the output identical", async () => {
  const cluster = await startCluster({ workers: 2, slots: 1 });
  try {
    const input = gdeltFile(6 * 1024 * 1024);
    const expected = runOnce(task, "node", ["filter.js"], input);
    const folder = copyTask(slow);
    const run = runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", input, "--chunk-size", "256k"], { cwd: folder });
    await waitFor("an attempt running on worker-2", () => attemptsRunningOn(cluster.dataDir, "worker-2") > 0);
    cluster.workers[1].proc.kill("SIGKILL");
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected), "output identical after losing a worker");
    assert.ok(lostAttempts(cluster.dataDir) >= 1, "the killed worker's attempt was counted lost");
  } finally {
    await cluster.stop();
  }
});

test("a worker whose heartbeats stop is declared lost and its chunks run elsewhere", async () => {
  const cluster = await startCluster({ workers: 2, slots: 1, heartbeat: "100ms", lostAfter: "1s" });
  try {
    const input = gdeltFile(4 * 1024 * 1024);
    const expected = runOnce(task, "node", ["filter.js"], input);
    const folder = copyTask(slow);
    const run = runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", input, "--chunk-size", "256k"], { cwd: folder });
    await waitFor("an attempt running on worker-2", () => attemptsRunningOn(cluster.dataDir, "worker-2") > 0);
    // Frozen, not dead: its connection stays open, only its heartbeats stop.
    cluster.workers[1].proc.kill("SIGSTOP");
    const r = await run;
    cluster.workers[1].proc.kill("SIGCONT");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected));
    assert.match(cluster.coordinator.stderr(), /no heartbeat for/);
  } finally {
    await cluster.stop();
  }
});

function copyTask(bachfile: object): string {
  return taskFolder({ ...bachfile }, { "filter.js": fs.readFileSync(path.join(task, "filter.js"), "utf8") });
}
