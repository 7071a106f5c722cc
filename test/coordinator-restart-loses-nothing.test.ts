// Losing the coordinator: SIGKILL it mid-task and start it again on the same data dir. The task carries
// on from the ledger and the spool, the workers and the `bach task-run` that started it reconnect, the
// input continues from the last byte the coordinator had spooled, and the output is still complete,
// in order, with every chunk committed exactly once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ workers: 2 });
});
after(() => cluster.stop());

/** Numbered lines, so a lost or doubled record shows. */
function numbered(lines: number): string {
  const file = path.join(tempDir(), "numbered.txt");
  fs.writeFileSync(file, Array.from({ length: lines }, (_, i) => `record ${String(i).padStart(9, "0")} ${"x".repeat(40)}\n`).join(""));
  return file;
}

/** Every chunk of the task committed, each by exactly one succeeded attempt. */
function committedOnce(task: string): { chunks: number; succeeded: number } {
  const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    const chunks = db.prepare("SELECT COUNT(*) AS n FROM chunks WHERE task_id=? AND state='committed' AND committed_attempt IS NOT NULL").get(task) as { n: number };
    const all = db.prepare("SELECT COUNT(*) AS n FROM chunks WHERE task_id=?").get(task) as { n: number };
    const succeeded = db.prepare("SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND state='succeeded'").get(task) as { n: number };
    assert.equal(chunks.n, all.n, "every chunk committed");
    return { chunks: all.n, succeeded: succeeded.n };
  } finally {
    db.close();
  }
}

const on = () => ["--coordinator", cluster.address, "--token", cluster.token];
const slowCat = () => taskFolder({ binary: "sh", args: ["-c", "sleep 0.2; cat"] });

for (const how of ["a file", "a pipe"] as const) {
  test(`input from ${how}: the task carries on through two coordinator restarts, byte for byte`, async () => {
    const input = numbered(60_000); // ~3.4 MiB: ~54 chunks of 64 KiB at ~0.2 s each, over two slots
    const task = slowCat();
    const args = ["task-run", ...on(), "--chunk-size", "64k", "--no-progress", "--reconnect", "60s", ...(how === "a file" ? ["--data", input] : [])];
    const running = runBach(args, { cwd: task, pipeFile: how === "a pipe" ? input : undefined, timeoutMs: 120_000 });
    let restarts = 0;
    for (const commits of [6, 24]) {
      await waitFor(`${commits} commits`, () => countCommits() >= commits, 60_000);
      await cluster.restartCoordinator(700);
      restarts++;
    }
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(fs.readFileSync(input)), "the output is the input, complete and in order");
    assert.match(r.stderr, /lost the coordinator/);
    if (how === "a pipe") assert.match(r.stderr, /lost the coordinator while sending the input/);
    const ledger = committedOnce(latestTask());
    assert.ok(ledger.chunks > 20, `expected many chunks, got ${ledger.chunks}`);
    assert.equal(ledger.succeeded, ledger.chunks, "no chunk committed twice");
    assert.equal(restarts, 2);
  });
}

test("a chunk half spooled when the coordinator died keeps its bytes; the CLI re-sends only what follows", async () => {
  // ~87 MiB in 6 MiB chunks, more than two slots, two planned ahead and the open chunk hold (42 MiB):
  // the reader is held back, mid-chunk, when the coordinator dies.
  const input = numbered(1_400_000);
  const task = taskFolder({ binary: "sh", args: ["-c", "sleep 0.5; cat"] });
  const running = runBach(["task-run", ...on(), "--chunk-size", "6m", "--no-progress", "--reconnect", "60s"], { cwd: task, pipeFile: input, timeoutMs: 120_000 });
  await waitFor("a first commit", () => countCommits() >= 1, 60_000);
  await cluster.restartCoordinator(500);
  const resumed = await waitFor("the input to resume", () => /"kept":(\d+),"offset":(\d+),"msg":"streamed input resumes/.exec(cluster.coordinator.stderr()), 30_000);
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(fs.readFileSync(input)), "the output is the input, complete and in order");
  assert.ok(Number(resumed[1]) > 0, `the open chunk kept its spooled bytes (kept ${resumed[1]}, resumed at ${resumed[2]})`);
  const ledger = committedOnce(latestTask());
  assert.equal(ledger.succeeded, ledger.chunks, "no chunk committed twice");
});

function latestTask(): string {
  const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.prepare("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { id: string }).id;
  } finally {
    db.close();
  }
}

/** Commits of the newest task, read from the ledger (the coordinator may be between lives). */
function countCommits(): number {
  const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    const row = db.prepare("SELECT commits FROM tasks WHERE state='running' ORDER BY created_at DESC LIMIT 1").get() as { commits: number } | undefined;
    return row?.commits ?? 0;
  } finally {
    db.close();
  }
}
