// The ledger holds tasks, chunks, attempts, workers and events, with a schema version, and allows only
// the transitions in core/states.ts; a commit happens once, and a fenced attempt never commits.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Ledger, SCHEMA_VERSION, type AttemptEnd } from "../coordinator/ledger";
import { IllegalTransition, canMoveAttempt, canMoveChunk, canMoveTask } from "../core/states";
import { tempDir } from "./harness";

const end: AttemptEnd = { kind: "ok", retryable: true, exitCode: 0, reason: "", stderr: "", bytesIn: 10, bytesOut: 5, seconds: 0.1 };

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

test("a task's first pending chunks are found without reading its committed ones", () => {
  const l = freshLedger();
  const plan = l.db.prepare("EXPLAIN QUERY PLAN SELECT * FROM chunks WHERE task_id=? AND state='pending' ORDER BY seq LIMIT ?").all("t1", 5) as { detail: string }[];
  assert.ok(plan.some((row) => /USING INDEX chunks_pending/.test(row.detail)), JSON.stringify(plan));
  l.close();
});

const limits = { retries: 3, maxLost: 3 };
const by = { worker: "w1", session: 1 };

test("a chunk commits once; a second attempt's result is fenced", () => {
  const l = freshLedger();
  const a1 = l.startAttempt("t1", 0, "w1");
  assert.throws(() => l.startAttempt("t1", 0, "w1"), IllegalTransition, "a running chunk cannot start again");
  assert.equal(l.endAttempt({ attempt: a1, by, to: "succeeded", end, limits }).kind, "committed");
  const again = l.endAttempt({ attempt: a1, by, to: "succeeded", end, limits });
  assert.deepEqual(again, { kind: "refused", why: `attempt ${a1} has already ended (succeeded)`, dropOutput: false }, "committing twice changes nothing, and keeps the output");
  assert.equal(l.chunk("t1", 0).state, "committed");
  assert.equal(l.chunk("t1", 0).commit_order, 0);
  assert.equal(l.endAttempt({ attempt: a1, by: null, to: "lost", end, limits }).kind, "refused");
  assert.equal(l.chunk("t1", 0).state, "committed", "a late loss cannot undo a commit");
  l.close();
});

test("only the session an attempt was given to may end it; unknown attempts are refused, not thrown", () => {
  const l = freshLedger();
  const a = l.startAttempt("t1", 0, "w1");
  assert.equal(l.attempt(a).session, 1);
  const forged = l.endAttempt({ attempt: a, by: { worker: "w2", session: 1 }, to: "succeeded", end, limits });
  assert.equal(forged.kind, "refused");
  assert.equal(forged.kind === "refused" && forged.dropOutput, false, "another session's refusal never removes the owner's output");
  const epoch = l.workerJoined({ id: "w1", name: "a", host: "h", slots: 1, cpus: 1, memory_mb: 1, disk_mb: 1, gpus: 0, docker: 0, interruptible: 0 });
  assert.equal(epoch, 2, "a hello starts a new session");
  assert.equal(l.endAttempt({ attempt: a, by: { worker: "w1", session: 2 }, to: "succeeded", end, limits }).kind, "refused", "a newer session of the same worker does not own the old one's attempts");
  assert.equal(l.endAttempt({ attempt: 99999, by, to: "succeeded", end, limits }).kind, "refused");
  assert.equal(l.attempt(a).state, "running");
  assert.equal(l.endAttempt({ attempt: a, by, to: "succeeded", end, limits }).kind, "committed");
  l.close();
});

test("failures retry up to the limit, then fail the chunk and the task in one step; losses do not use up retries", () => {
  const l = freshLedger();
  const lim = { retries: 1, maxLost: 3 };
  const lost = l.startAttempt("t1", 1, "w1");
  assert.equal(l.endAttempt({ attempt: lost, by, to: "lost", end, limits: lim }).kind === "ended" && l.chunk("t1", 1).state, "pending");
  const f1 = l.startAttempt("t1", 1, "w1");
  const r1 = l.endAttempt({ attempt: f1, by, to: "failed", end: { ...end, kind: "exit", reason: "exit 2" }, limits: lim });
  assert.equal(r1.kind === "ended" && r1.chunk, "pending");
  const other = l.startAttempt("t1", 0, "w1");
  const f2 = l.startAttempt("t1", 1, "w1");
  const r2 = l.endAttempt({ attempt: f2, by, to: "failed", end: { ...end, kind: "exit", reason: "exit 2", stderr: "boom" }, limits: lim });
  assert.ok(r2.kind === "ended" && r2.chunk === "failed");
  assert.match(r2.taskEnd?.error ?? "", /chunk 1 \(bytes 10-20\) failed after 2 attempts: exit 2[\s\S]*boom/);
  assert.equal(l.chunk("t1", 1).state, "failed");
  assert.equal(l.task("t1").state, "failed", "the task fails in the same transaction");
  assert.deepEqual(r2.stop.map((a) => a.id), [other], "and its other running attempts are to be stopped");
  assert.equal(l.attempt(other).state, "cancelled");
  assert.deepEqual(l.failedOn("t1", 1), ["w1"]);
  l.close();
});

test("an end no retry can mend fails the chunk at once", () => {
  const l = freshLedger();
  const a = l.startAttempt("t1", 0, "w1");
  const r = l.endAttempt({ attempt: a, by, to: "failed", end: { ...end, kind: "not-found", retryable: false, reason: "program not found: x" }, limits });
  assert.ok(r.kind === "ended" && r.chunk === "failed");
  assert.match(r.taskEnd?.error ?? "", /^chunk 0 \(bytes 0-10\) failed after 1 attempt: program not found: x$/);
  assert.equal(l.attempt(a).kind, "not-found");
  l.close();
});

test("a chunk whose worker dies under it maxLost times fails its task; blameless losses do not count", () => {
  const l = freshLedger();
  const lim = { retries: 3, maxLost: 2 };
  const b = l.startAttempt("t1", 0, "w1");
  l.endAttempt({ attempt: b, by: null, to: "lost", end: { ...end, reason: "the coordinator restarted" }, limits: lim, blameless: true });
  assert.equal(l.chunk("t1", 0).losses, 0);
  const a1 = l.startAttempt("t1", 0, "w1");
  assert.equal(l.endAttempt({ attempt: a1, by, to: "lost", end: { ...end, reason: "worker w1 lost" }, limits: lim }).kind, "ended");
  assert.equal(l.chunk("t1", 0).state, "pending");
  const a2 = l.startAttempt("t1", 0, "w1");
  const r = l.endAttempt({ attempt: a2, by, to: "lost", end: { ...end, reason: "worker w1 lost" }, limits: lim });
  assert.ok(r.kind === "ended" && r.chunk === "failed");
  assert.match(r.taskEnd?.error ?? "", /chunk 0 .*its worker died 2 times while running it/);
  l.close();
});

test("the last commit ends the task in the same transaction", () => {
  const l = freshLedger();
  const a = l.startAttempt("t1", 0, "w1");
  assert.equal(l.endAttempt({ attempt: a, by, to: "succeeded", end, limits }).kind, "committed");
  const b = l.startAttempt("t1", 1, "w1");
  const r = l.endAttempt({ attempt: b, by, to: "succeeded", end, limits });
  assert.deepEqual(r.kind === "committed" && r.taskEnd, { state: "succeeded", error: null });
  assert.equal(l.task("t1").state, "succeeded");
  l.close();
});

test("finishing a task cancels what is open and returns the attempts to stop", () => {
  const l = freshLedger();
  const a = l.startAttempt("t1", 0, "w1");
  const cancelled = l.finishTask("t1", "cancelled", "by the user");
  assert.deepEqual(cancelled.map((x) => x.id), [a]);
  assert.equal(l.chunk("t1", 0).state, "cancelled");
  assert.equal(l.chunk("t1", 1).state, "cancelled");
  assert.equal(l.endAttempt({ attempt: a, by, to: "succeeded", end, limits }).kind, "refused", "a cancelled attempt never commits");
  assert.throws(() => l.finishTask("t1", "succeeded"), IllegalTransition);
  assert.ok(l.events("t1").some((e) => e.kind === "task-cancelled"));
  l.close();
});
