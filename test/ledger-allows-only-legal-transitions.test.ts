// The ledger holds tasks, chunks, attempts, workers and events, with a schema version, and allows only
// the transitions in core/states.ts; a commit happens once, and a fenced attempt never commits.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Ledger, SCHEMA_VERSION } from "../coordinator/ledger";
import { IllegalTransition, canMoveAttempt, canMoveChunk, canMoveTask } from "../core/states";
import { tempDir } from "./harness";

const end = { exitCode: 0, reason: "", stderr: "", bytesIn: 10, bytesOut: 5, seconds: 0.1 };

function freshLedger(): Ledger {
  const l = new Ledger(path.join(tempDir(), "ledger.sqlite"));
  l.createTask({ id: "t1", name: "n", bachfile: "{}", bundleHash: "h", imageId: "", parallelism: 0, chunkSize: 0, inputKind: "stream", inputPath: "", dataStreams: 0 });
  l.addChunks("t1", [{ seq: 0, offset: 0, length: 10 }, { seq: 1, offset: 10, length: 10 }], 20, true);
  l.workerJoined({ id: "w1", name: "a", host: "h", slots: 1, cpus: 1, memory_mb: 1, disk_mb: 1, gpus: 0, docker: 0, interruptible: 0 });
  return l;
}

test("the transition tables", () => {
  assert.ok(canMoveChunk("pending", "running"));
  assert.ok(canMoveChunk("running", "committed"));
  assert.ok(!canMoveChunk("committed", "pending"), "a committed chunk stays committed");
  assert.ok(!canMoveChunk("pending", "committed"), "only a running chunk commits");
  assert.ok(!canMoveChunk("failed", "running"));
  assert.ok(canMoveAttempt("running", "lost"));
  assert.ok(!canMoveAttempt("succeeded", "failed"));
  assert.ok(!canMoveTask("succeeded", "running"));
});

test("the schema has a version", () => {
  const l = freshLedger();
  assert.equal(l.schemaVersion(), SCHEMA_VERSION);
  for (const table of ["tasks", "chunks", "attempts", "workers", "events"]) {
    assert.ok(l.db.prepare("SELECT name FROM sqlite_master WHERE name=?").get(table), table);
  }
  l.close();
});

test("a chunk commits once; a second attempt's result is fenced", () => {
  const l = freshLedger();
  const a1 = l.startAttempt("t1", 0, "w1");
  assert.throws(() => l.startAttempt("t1", 0, "w1"), IllegalTransition, "a running chunk cannot start again");
  assert.equal(l.commitAttempt(a1, end), true);
  assert.equal(l.commitAttempt(a1, end), false, "committing twice changes nothing");
  assert.equal(l.chunk("t1", 0).state, "committed");
  assert.equal(l.chunk("t1", 0).commit_order, 0);
  assert.deepEqual(l.failAttempt(a1, "lost", end, 3), { ended: false });
  assert.equal(l.chunk("t1", 0).state, "committed", "a late loss cannot undo a commit");
  l.close();
});

test("failures retry up to the limit, then fail the chunk; losses do not use up retries", () => {
  const l = freshLedger();
  const lost = l.startAttempt("t1", 1, "w1");
  assert.deepEqual(l.failAttempt(lost, "lost", end, 1), { ended: true, chunk: "pending" });
  const f1 = l.startAttempt("t1", 1, "w1");
  assert.deepEqual(l.failAttempt(f1, "failed", { ...end, reason: "exit 2" }, 1), { ended: true, chunk: "pending" });
  const f2 = l.startAttempt("t1", 1, "w1");
  const outcome = l.failAttempt(f2, "failed", { ...end, reason: "exit 2", stderr: "boom" }, 1);
  assert.equal(outcome.ended && outcome.chunk, "failed");
  assert.match(outcome.ended && outcome.chunk === "failed" ? outcome.taskError : "", /chunk 1 \(bytes 10-20\) failed after 2 attempts: exit 2[\s\S]*boom/);
  assert.equal(l.chunk("t1", 1).state, "failed");
  assert.deepEqual(l.failedOn("t1", 1), ["w1"]);
  l.close();
});

test("finishing a task cancels what is open and returns the attempts to stop", () => {
  const l = freshLedger();
  const a = l.startAttempt("t1", 0, "w1");
  const cancelled = l.finishTask("t1", "cancelled", "by the user");
  assert.deepEqual(cancelled.map((x) => x.id), [a]);
  assert.equal(l.chunk("t1", 0).state, "cancelled");
  assert.equal(l.chunk("t1", 1).state, "cancelled");
  assert.equal(l.commitAttempt(a, end), false, "a cancelled attempt never commits");
  assert.throws(() => l.finishTask("t1", "succeeded"), IllegalTransition);
  assert.ok(l.events("t1").some((e) => e.kind === "task-cancelled"));
  l.close();
});
