// Stopping a task is not its failure: Ctrl-C on `bach task-run` exits 130 (128 + SIGINT, as shells
// expect), and a task cancelled from elsewhere with `bach task-cancel` ends the waiting task-run with 4;
// a failed task keeps 1.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import { once } from "node:events";
import Database from "better-sqlite3";
import { bin, runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

/** The task with an attempt running in the ledger at `file`, or null. */
function runningTask(file: string): string | null {
  if (!fs.existsSync(file)) return null;
  const db = new Database(file, { readonly: true });
  try {
    // The ledger's file may be there before its tables are.
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'attempts'").get()) return null;
    return (db.prepare("SELECT task_id FROM attempts WHERE state = 'running'").get() as { task_id: string } | undefined)?.task_id ?? null;
  } finally {
    db.close();
  }
}

const slow = { binary: "sh", args: ["-c", "sleep 60; cat"] };

test("Ctrl-C on an embedded task-run cancels the task and exits 130", async () => {
  const home = tempDir("bach-home-");
  // Its own process group, as a shell's foreground job: Ctrl-C signals the whole group.
  const proc = spawn(process.execPath, [bin.bach, "task-run", "--data", lines(10), "-p", "1"], {
    cwd: taskFolder(slow),
    env: { ...process.env, BACH_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stderr = "";
  proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  process.on("exit", () => proc.exitCode === null && proc.kill("SIGKILL"));
  const closed = once(proc, "close");
  const task = await waitFor("an attempt to run", () => runningTask(path.join(home, "local", "ledger.sqlite")), 30_000);
  process.kill(-(proc.pid ?? 0), "SIGINT");
  const [code] = (await closed) as [number | null];
  assert.equal(code, 130, stderr);
  assert.match(stderr, new RegExp(`^bach: SIGINT: cancelling task ${task}$`, "m"));
  assert.doesNotMatch(stderr, /internal error|\n\s+at /);
});

test("bach task-cancel from elsewhere ends the waiting task-run with 4, not 1", async () => {
  const cluster = await startCluster({ workers: 1, slots: 1 });
  try {
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const run = runBach(["task-run", ...on, "--data", lines(10)], { cwd: taskFolder(slow), timeoutMs: 60_000 });
    const task = await waitFor("an attempt to run", () => runningTask(path.join(cluster.dataDir, "ledger.sqlite")), 30_000);
    const cancel = await runBach(["task-cancel", task, ...on], { cwd: tempDir() });
    assert.equal(cancel.code, 0, cancel.stderr);
    const r = await run;
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`^bach: task ${task} was cancelled \\(by bach task-cancel\\)$`, "m"));
  } finally {
    await cluster.stop();
  }
});

test("Ctrl-C on a task-run against a coordinator cancels the task there and exits 130", async () => {
  const cluster = await startCluster({ workers: 1, slots: 1 });
  try {
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const proc = spawn(process.execPath, [bin.bach, "task-run", ...on, "--data", lines(10)], {
      cwd: taskFolder(slow),
      env: { ...process.env, BACH_HOME: tempDir("bach-home-") },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let stderr = "";
    proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    process.on("exit", () => proc.exitCode === null && proc.kill("SIGKILL"));
    const closed = once(proc, "close");
    const task = await waitFor("an attempt to run", () => runningTask(path.join(cluster.dataDir, "ledger.sqlite")), 30_000);
    process.kill(-(proc.pid ?? 0), "SIGINT");
    const [code] = (await closed) as [number | null];
    assert.equal(code, 130, stderr);
    assert.match(stderr, new RegExp(`^bach: SIGINT: cancelling task ${task}$`, "m"));
    const report = await runBach(["task-report", task, ...on, "--json"], { cwd: tempDir() });
    assert.equal((JSON.parse(report.stdout.toString()) as { state: string }).state, "cancelled");
  } finally {
    await cluster.stop();
  }
});
