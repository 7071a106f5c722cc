// No failure loops for ever: a chunk whose program kills its worker (restarted each time by a
// supervisor) fails its task after --max-lost losses, naming the chunk and why; an end that no retry
// can mend (the program is not there) fails at once, with a hint, instead of using up the retries.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

function attemptsOf(c: Cluster, states: string): number {
  const db = new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE state IN (${states})`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe("failure loops end", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ workers: 1, coordinatorArgs: ["--max-lost", "3"] });
  });
  after(() => c.stop());

  test("a chunk that kills its worker fails the task after --max-lost losses, though a supervisor restarts the worker", async () => {
    // The program's parent is the worker's program spawner, whose parent is the worker (or, without a
    // spawner, the worker itself).
    const killWorker = 'p=$PPID; [ "$(cat /proc/$p/comm)" = bach-spawner ] && p=$(ps -o ppid= -p $p); kill -9 $p; sleep 3';
    const task = taskFolder({ binary: "sh", args: ["-c", killWorker] });
    const run = runBach(["task-run", "--data", lines(10), "--coordinator", c.address, "--token", c.token], { cwd: task, timeoutMs: 120_000 });
    let ended = false;
    // Ended either way; a rejected run fails the test at `await run` below.
    run.then(() => (ended = true), () => (ended = true));
    // The supervisor: each time the worker dies, a new one joins (bounded, so a loop cannot hang the test).
    for (let restarts = 0; restarts < 8 && !ended; restarts++) {
      const w = c.workers[c.workers.length - 1];
      if (w.proc.exitCode === null && w.proc.signalCode === null) await Promise.race([once(w.proc, "exit"), run]);
      if (!ended) await c.addWorker();
    }
    const r = await run;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^bach: task \S+ failed: chunk 0 \(bytes 0-\d+\) failed: its worker died 3 times while running it/m);
    assert.equal(attemptsOf(c, "'lost'"), 3);
  });

  test("a program that is not there fails the task at once, with a hint for a file of the task folder", async () => {
    if (c.workers.every((w) => w.proc.exitCode !== null || w.proc.signalCode !== null)) await c.addWorker();
    const before = attemptsOf(c, "'failed'");
    const task = taskFolder({ binary: "run.sh", retries: 3 }, { "run.sh": "#!/bin/sh\ncat\n" });
    const r = await runBach(["task-run", "--data", lines(10), "--coordinator", c.address, "--token", c.token], { cwd: task });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /failed after 1 attempt: program not found on worker \S+: run\.sh \(bachfile field binary\); did you mean \.\/run\.sh\?$/m);
    assert.equal(attemptsOf(c, "'failed'") - before, 1, "one attempt, no retries");
  });
});
