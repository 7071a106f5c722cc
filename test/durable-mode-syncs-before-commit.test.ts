// bach-coordinator --durable puts on disk what the ledger is about to point at: every committed
// attempt's output file is fsynced (and its folder) before its commit, spooled input before it is
// recorded, and the ledger's write-ahead log at every commit. Without it, nothing is fsynced on the
// data path. Seen from outside with strace attached to the coordinator (skipped without strace).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

const hasStrace = spawnSync("strace", ["-V"]).status === 0;

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i} ${"z".repeat(50)}\n`).join(""));
  return file;
}

/** Runs a streamed task on a fresh cluster with strace watching the coordinator's syncs; returns the synced paths and the committed attempts. */
async function syncsOfATask(coordinatorArgs: string[]): Promise<{ synced: string[]; committed: number[] }> {
  const c = await startCluster({ workers: 1, coordinatorArgs });
  try {
    const log = path.join(tempDir(), "strace.log");
    const strace = spawn("strace", ["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", log, "-p", String(c.coordinator.proc.pid)], { stdio: ["ignore", "ignore", "pipe"] });
    await waitFor("strace to attach", () => fs.existsSync(log));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const input = lines(20_000);
    const r = await runBach(["task-run", "--coordinator", c.address, "--token", c.token, "--chunk-size", "128k"], { cwd: taskFolder({ binary: "cat" }), pipeFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
    strace.kill("SIGINT");
    await once(strace, "exit");
    const synced = [...fs.readFileSync(log, "utf8").matchAll(/f(?:data)?sync\(\d+<([^>]+)>\)\s+=\s+0/g)].map((m) => m[1] as string);
    const db = new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true });
    const committed = (db.prepare("SELECT committed_attempt AS a FROM chunks WHERE committed_attempt IS NOT NULL").all() as { a: number }[]).map((x) => x.a);
    db.close();
    return { synced, committed };
  } finally {
    await c.stop();
  }
}

test("--durable fsyncs each committed output, the spooled input and the ledger; the default fsyncs no output", { skip: hasStrace ? false : "strace is not installed" }, async () => {
  const durable = await syncsOfATask(["--durable"]);
  assert.ok(durable.committed.length >= 4, `chunks: ${durable.committed.length}`);
  for (const a of durable.committed) assert.ok(durable.synced.some((p) => p.endsWith(`/spool/attempts/${a}.out`)), `attempt ${a}'s output was fsynced`);
  assert.ok(durable.synced.some((p) => p.endsWith("/spool/attempts")), "the outputs' folder was fsynced");
  assert.ok(durable.synced.filter((p) => /\/spool\/input\/[^/]+\/\d+$/.test(p)).length >= durable.committed.length, "every spooled chunk was fsynced");
  assert.ok(durable.synced.some((p) => p.endsWith("ledger.sqlite-wal")), "the ledger's log was fsynced");

  const plain = await syncsOfATask([]);
  assert.deepEqual(plain.synced.filter((p) => p.includes("/spool/")), [], "without --durable the data path fsyncs nothing");
});
