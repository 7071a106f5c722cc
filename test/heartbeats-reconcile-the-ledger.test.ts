// A worker's heartbeat lists the attempts it runs, and the coordinator holds its ledger to it: an
// attempt the ledger gave that worker's session but the worker no longer reports is lost (its chunk
// runs again), and an attempt the worker reports that is not its own running attempt is cancelled
// there. Driven by a raw worker stream that reports what the test tells it to.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { connect } from "../core/rpc";
import type { CoordinatorMessage } from "../core/generated/bach";
import { runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

test("an attempt its worker stops reporting is lost and runs again; one the ledger does not give it is cancelled there", async () => {
  const c = await startCluster({ heartbeat: "200ms", lostAfter: "10s" });
  const client = connect(c.address, c.token);
  try {
    const stream = client.work();
    const got: CoordinatorMessage[] = [];
    stream.on("data", (m: CoordinatorMessage) => got.push(m));
    stream.on("error", () => undefined);
    stream.write({ kind: { $case: "hello", value: { name: "raw", host: "raw", slots: 1, cpus: 1, memoryMb: 1024, localFiles: false, version: "0.1.0", interruptible: false, workerId: "", diskMb: 1000, gpus: 0, docker: false } } });
    await waitFor("a welcome", () => got.some((m) => m.kind?.$case === "welcome"));
    stream.write({ kind: { $case: "sharedSpool", value: { ok: false } } });

    const input = path.join(tempDir(), "lines.txt");
    fs.writeFileSync(input, "a\nb\nc\n");
    const run = runBach(["task-run", "--data", input, "--coordinator", c.address, "--token", c.token], { cwd: taskFolder({ binary: "cat" }) });
    const assigned = await waitFor("an assignment", () => got.find((m) => m.kind?.$case === "assign"));
    const attempt = assigned.kind?.$case === "assign" ? assigned.kind.value.attemptId : -1;

    // Heartbeats that do not list it, and list an attempt the ledger never gave this worker.
    const beat = setInterval(() => stream.write({ kind: { $case: "heartbeat", value: { running: [424242], fed: [] } } }), 200);
    try {
      await waitFor("a cancel of the stranger", () => got.some((m) => m.kind?.$case === "cancel" && m.kind.value.attemptId === 424242), 10_000);
      const db = new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true });
      try {
        const row = await waitFor("the unreported attempt to be lost", () => {
          const a = db.prepare("SELECT state, reason FROM attempts WHERE id=?").get(attempt) as { state: string; reason: string | null };
          return a.state !== "running" && a;
        }, 10_000);
        assert.equal(row.state, "lost");
        assert.match(row.reason ?? "", /no longer runs it/);
      } finally {
        db.close();
      }
    } finally {
      clearInterval(beat);
    }
    stream.end();
    // A real worker runs the chunk again.
    await c.addWorker();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "a\nb\nc\n");
  } finally {
    client.close();
    await c.stop();
  }
});
