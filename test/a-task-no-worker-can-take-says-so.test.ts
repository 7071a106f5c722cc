// A task that no worker can take (none connected, or every one busy) does not sit silent at
// `chunks 0/1 done` for ever: after BACH_WORKER_WAIT (5 s by default, shortened here) task-run says so
// on stderr, in one plain line even when stderr is not a terminal, with the command that starts a
// worker; it reminds now and then, not every second, keeps waiting, and runs once a worker can.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

function runningAttempts(dataDir: string): number {
  const db = new Database(path.join(dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM attempts WHERE state = 'running'").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test("with no worker connected, task-run says so once, reminds later, and runs when a worker joins", async () => {
  const cluster = await startCluster({ workers: 0 });
  try {
    const input = lines(100);
    let stderr = "";
    const run = runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", input], {
      cwd: taskFolder({ binary: "cat" }),
      // A notice after 300 ms, then a reminder every 12 times as long (3.6 s).
      env: { BACH_WORKER_WAIT: "300ms" },
      timeoutMs: 60_000,
      onStart: (p) => p.stderr?.on("data", (b: Buffer) => (stderr += b.toString())),
    });
    const notice = new RegExp(
      `^bach: no worker is connected to ${cluster.address.replace(/\./g, "\\.")}: task t-\\S+ has waited \\d+(\\.\\d)?s for one; start one with: bach-worker join ${cluster.address.replace(/\./g, "\\.")} --token-file FILE$`,
      "m",
    );
    await waitFor("the notice that no worker is connected", () => notice.test(stderr), 15_000);
    const first = Date.now();
    await waitFor("a reminder", () => /^bach: still no worker is connected/m.test(stderr), 15_000);
    assert.ok(Date.now() - first >= 2500, `the reminder came ${Date.now() - first} ms after the notice, not seconds later`);
    assert.equal(stderr.split("\n").filter((l) => /no worker is connected/.test(l)).length, 2, `one notice and one reminder:\n${stderr}`);

    await cluster.addWorker();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
    assert.match(r.stderr, /^bach: a worker took task t-\S+ after \d+(\.\d)?s; it runs$/m);
  } finally {
    await cluster.stop();
  }
});

test("with every connected worker busy, task-run says none can take it now and how to add one", async () => {
  const cluster = await startCluster({ workers: 1, slots: 1 });
  try {
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const input = lines(10);
    // The first task holds the one slot until it is cancelled.
    const busy = runBach(["task-run", ...on, "--data", input], { cwd: taskFolder({ binary: "sh", args: ["-c", "sleep 60; cat"] }), timeoutMs: 60_000 });
    await waitFor("the first task to hold the slot", () => runningAttempts(cluster.dataDir) > 0);
    let stderr = "";
    const r = runBach(["task-run", ...on, "--data", input], {
      cwd: taskFolder({ binary: "cat" }),
      env: { BACH_WORKER_WAIT: "300ms" },
      timeoutMs: 60_000,
      onStart: (p) => p.stderr?.on("data", (b: Buffer) => (stderr += b.toString())),
    });
    const notice = /^bach: no worker can take task (t-\S+) now \(1 connected: every one busy, draining, or short of what its bachfile's hardware asks\); it has waited \d+(\.\d)?s; start another with: bach-worker join \S+ --token-file FILE$/m;
    const waiting = await waitFor("the notice that no worker can take the task", () => notice.exec(stderr)?.[1], 15_000);
    const first = await waitFor("the first task's id", () => {
      const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
      try {
        return (db.prepare("SELECT id FROM tasks WHERE id != ?").get(waiting) as { id: string } | undefined)?.id;
      } finally {
        db.close();
      }
    });
    const cancel = await runBach(["task-cancel", first, ...on], { cwd: tempDir() });
    assert.equal(cancel.code, 0, cancel.stderr);
    const done = await r;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout.toString(), fs.readFileSync(input, "utf8"));
    await busy;
  } finally {
    await cluster.stop();
  }
});
