// The ledger: tasks, chunks, attempts, workers and events in SQLite (WAL). It is the truth.
// Every state change goes through one method here that checks the transition table and writes the
// change with its consequences in one transaction. It never does I/O beyond its database.
import Database from "better-sqlite3";
import {
  AttemptState,
  ChunkState,
  IllegalTransition,
  TaskState,
  canMoveAttempt,
  canMoveChunk,
  canMoveTask,
} from "../core/states";

export const SCHEMA_VERSION = 5;

const schemaV1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, bachfile TEXT NOT NULL, bundle_hash TEXT NOT NULL,
  state TEXT NOT NULL, parallelism INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
  input_kind TEXT NOT NULL, input_path TEXT NOT NULL, data_streams INTEGER NOT NULL,
  bytes_in INTEGER NOT NULL DEFAULT 0, input_done INTEGER NOT NULL DEFAULT 0,
  chunks_planned INTEGER NOT NULL DEFAULT 0, commits INTEGER NOT NULL DEFAULT 0,
  error TEXT, created_at INTEGER NOT NULL, finished_at INTEGER);
CREATE TABLE chunks (
  task_id TEXT NOT NULL REFERENCES tasks(id), seq INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, committed_attempt INTEGER, commit_order INTEGER,
  bytes_out INTEGER, PRIMARY KEY (task_id, seq));
CREATE UNIQUE INDEX chunks_commit_order ON chunks(task_id, commit_order);
CREATE TABLE attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, seq INTEGER NOT NULL, worker_id TEXT NOT NULL,
  state TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER, exit_code INTEGER, reason TEXT, stderr TEXT,
  bytes_in INTEGER, bytes_out INTEGER, seconds REAL);
CREATE INDEX attempts_chunk ON attempts(task_id, seq);
CREATE TABLE workers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, host TEXT NOT NULL, slots INTEGER NOT NULL, cpus INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL, interruptible INTEGER NOT NULL, state TEXT NOT NULL,
  joined_at INTEGER NOT NULL, last_seen INTEGER NOT NULL);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, task_id TEXT, seq INTEGER, attempt_id INTEGER,
  worker_id TEXT, kind TEXT NOT NULL, detail TEXT);
CREATE INDEX events_task ON events(task_id);
`;

/** Version 2: tasks that run in containers name their image; workers report disk, GPUs and Docker. */
const schemaV2 = `
ALTER TABLE tasks ADD COLUMN image_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN disk_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN docker INTEGER NOT NULL DEFAULT 0;
`;

/**
 * Version 3: how far a task's streamed input is spooled (a restarted coordinator resumes there), and
 * the size the chunk being filled was given (so it is cut where it would have been).
 */
const schemaV3 = `
ALTER TABLE tasks ADD COLUMN spooled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN open_chunk_size INTEGER NOT NULL DEFAULT 0;
`;

/** Version 4: backup attempts (speculative execution) are marked, so reports can count them. */
const schemaV4 = `
ALTER TABLE attempts ADD COLUMN backup INTEGER NOT NULL DEFAULT 0;
`;

/** Version 5: when an ended task's output was removed from the spool (bach-coordinator --keep-output). */
const schemaV5 = `
ALTER TABLE tasks ADD COLUMN output_removed_at INTEGER;
`;

/** Migrations by the version they produce; a later issue appends to this list, never edits it. */
const migrations: { version: number; sql: string }[] = [
  { version: 1, sql: schemaV1 },
  { version: 2, sql: schemaV2 },
  { version: 3, sql: schemaV3 },
  { version: 4, sql: schemaV4 },
  { version: 5, sql: schemaV5 },
];

export interface TaskRow {
  id: string;
  name: string;
  bachfile: string;
  bundle_hash: string;
  image_id: string;
  spooled: number;
  open_chunk_size: number;
  state: TaskState;
  parallelism: number;
  chunk_size: number;
  input_kind: string;
  input_path: string;
  data_streams: number;
  bytes_in: number;
  input_done: number;
  chunks_planned: number;
  commits: number;
  error: string | null;
  created_at: number;
  finished_at: number | null;
  output_removed_at: number | null;
}

export interface ChunkRow {
  task_id: string;
  seq: number;
  offset: number;
  length: number;
  state: ChunkState;
  attempts: number;
  committed_attempt: number | null;
  commit_order: number | null;
  bytes_out: number | null;
}

export interface AttemptRow {
  id: number;
  task_id: string;
  seq: number;
  worker_id: string;
  state: AttemptState;
  started_at: number;
  ended_at: number | null;
  exit_code: number | null;
  reason: string | null;
  stderr: string | null;
  bytes_in: number | null;
  bytes_out: number | null;
  seconds: number | null;
  backup: number;
}

export interface WorkerRow {
  id: string;
  name: string;
  host: string;
  slots: number;
  cpus: number;
  memory_mb: number;
  disk_mb: number;
  gpus: number;
  docker: number;
  interruptible: number;
  state: "connected" | "lost";
  joined_at: number;
  last_seen: number;
}

export interface EventRow {
  at: number;
  seq: number | null;
  attempt_id: number | null;
  worker_id: string | null;
  kind: string;
  detail: string | null;
}

export interface NewTask {
  id: string;
  name: string;
  bachfile: string;
  bundleHash: string;
  /** The container image's digest, or "" for a task that runs plain processes. */
  imageId: string;
  parallelism: number;
  chunkSize: number;
  inputKind: string;
  inputPath: string;
  dataStreams: number;
}

export interface AttemptEnd {
  exitCode: number;
  reason: string;
  stderr: string;
  bytesIn: number;
  bytesOut: number;
  seconds: number;
}

/**
 * What ending an attempt did: nothing (it was no longer running: fenced), or ended it and left its chunk
 * to other running attempts, put the chunk back to pending, or failed it for good (and the task with it).
 */
export type FailOutcome =
  | { ended: false }
  | { ended: true; chunk: "unchanged" | "pending" }
  | { ended: true; chunk: "failed"; taskError: string };

export class Ledger {
  readonly db: Database.Database;
  private readonly now: () => number;

  constructor(file: string, now: () => number = Date.now) {
    this.db = new Database(file);
    this.now = now;
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
  }

  close(): void {
    this.db.close();
  }

  schemaVersion(): number {
    const hasMeta = this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").get();
    if (!hasMeta) return 0;
    const row = this.db.prepare("SELECT value FROM meta WHERE key='schema_version'").get() as { value: string } | undefined;
    return row ? Number(row.value) : 0;
  }

  private migrate(): void {
    const current = this.schemaVersion();
    if (current > SCHEMA_VERSION) {
      throw new Error(`ledger schema version ${current} is newer than this bach (${SCHEMA_VERSION}); upgrade bach`);
    }
    for (const m of migrations.filter((m) => m.version > current)) {
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)").run(String(m.version));
      })();
    }
  }

  private event(kind: string, e: { task?: string; seq?: number; attempt?: number; worker?: string; detail?: string }): void {
    this.db
      .prepare("INSERT INTO events(at, task_id, seq, attempt_id, worker_id, kind, detail) VALUES (?,?,?,?,?,?,?)")
      .run(this.now(), e.task ?? null, e.seq ?? null, e.attempt ?? null, e.worker ?? null, kind, e.detail ?? null);
  }

  // --- the three moves; every state change in the ledger passes through one of them ---

  private moveTask(id: string, to: TaskState, error: string | null = null): void {
    const from = this.task(id).state;
    if (!canMoveTask(from, to)) throw new IllegalTransition("task", id, from, to);
    this.db.prepare("UPDATE tasks SET state=?, error=COALESCE(?, error), finished_at=? WHERE id=?").run(to, error, this.now(), id);
    this.event(`task-${to}`, { task: id, detail: error ?? undefined });
  }

  private moveChunk(task: string, seq: number, to: ChunkState): void {
    const from = this.chunk(task, seq).state;
    if (!canMoveChunk(from, to)) throw new IllegalTransition("chunk", `${task}/${seq}`, from, to);
    this.db.prepare("UPDATE chunks SET state=? WHERE task_id=? AND seq=?").run(to, task, seq);
  }

  private moveAttempt(id: number, to: AttemptState, end?: AttemptEnd): void {
    const from = this.attempt(id).state;
    if (!canMoveAttempt(from, to)) throw new IllegalTransition("attempt", String(id), from, to);
    this.db
      .prepare(
        `UPDATE attempts SET state=?, ended_at=?, exit_code=?, reason=?, stderr=?, bytes_in=?, bytes_out=?, seconds=? WHERE id=?`,
      )
      .run(to, this.now(), end?.exitCode ?? null, end?.reason ?? null, end?.stderr ?? null, end?.bytesIn ?? null, end?.bytesOut ?? null, end?.seconds ?? null, id);
  }

  // --- tasks ---

  createTask(t: NewTask): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO tasks(id, name, bachfile, bundle_hash, image_id, state, parallelism, chunk_size, input_kind, input_path, data_streams, created_at)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
        )
        .run(t.id, t.name, t.bachfile, t.bundleHash, t.imageId, TaskState.running, t.parallelism, t.chunkSize, t.inputKind, t.inputPath, t.dataStreams, this.now());
      this.event("task-created", { task: t.id, detail: `${t.inputKind} ${t.inputPath}`.trim() });
    })();
  }

  task(id: string): TaskRow {
    const row = this.db.prepare("SELECT * FROM tasks WHERE id=?").get(id) as TaskRow | undefined;
    if (!row) throw new Error(`no task ${id} in the ledger`);
    return row;
  }

  findTask(id: string): TaskRow | undefined {
    return this.db.prepare("SELECT * FROM tasks WHERE id=?").get(id) as TaskRow | undefined;
  }

  latestTask(): TaskRow | undefined {
    return this.db.prepare("SELECT * FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT 1").get() as TaskRow | undefined;
  }

  tasks(limit = 50): TaskRow[] {
    return this.db.prepare("SELECT * FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT ?").all(limit) as TaskRow[];
  }

  /** Ended tasks whose output is still in the spool and ended before `before` (ms since the epoch). */
  tasksEndedBefore(before: number): TaskRow[] {
    return this.db
      .prepare("SELECT * FROM tasks WHERE state!='running' AND finished_at<? AND output_removed_at IS NULL ORDER BY finished_at")
      .all(before) as TaskRow[];
  }

  /** Records that a task's output left the spool; the task, its chunks and attempts stay for reports. */
  markOutputRemoved(id: string): void {
    this.db.transaction(() => {
      this.db.prepare("UPDATE tasks SET output_removed_at=? WHERE id=?").run(this.now(), id);
      this.event("task-output-removed", { task: id });
    })();
  }

  /** Bundles and images of tasks that still run or still keep their output. */
  artifactsInUse(): { bundles: Set<string>; images: Set<string> } {
    const rows = this.db.prepare("SELECT DISTINCT bundle_hash, image_id FROM tasks WHERE output_removed_at IS NULL").all() as { bundle_hash: string; image_id: string }[];
    return { bundles: new Set(rows.map((r) => r.bundle_hash)), images: new Set(rows.map((r) => r.image_id).filter(Boolean)) };
  }

  runningTasks(): TaskRow[] {
    return this.db.prepare("SELECT * FROM tasks WHERE state='running' ORDER BY created_at, rowid").all() as TaskRow[];
  }

  /** Chunks cut from the input, recorded together with how far the input has come. */
  addChunks(task: string, cuts: { seq: number; offset: number; length: number }[], bytesIn: number, inputDone: boolean): void {
    this.db.transaction(() => {
      const insert = this.db.prepare("INSERT INTO chunks(task_id, seq, offset, length, state) VALUES (?,?,?,?,'pending')");
      for (const c of cuts) insert.run(task, c.seq, c.offset, c.length);
      this.db
        .prepare("UPDATE tasks SET bytes_in=?, input_done=?, chunks_planned=chunks_planned+? WHERE id=?")
        .run(bytesIn, inputDone ? 1 : 0, cuts.length, task);
      if (inputDone) this.event("input-done", { task, detail: `${bytesIn} bytes` });
    })();
  }

  /** Every streamed byte before `offset` is in complete spool writes. */
  setSpooled(task: string, offset: number): void {
    this.db.prepare("UPDATE tasks SET spooled=? WHERE id=?").run(offset, task);
  }

  setOpenChunkSize(task: string, size: number): void {
    this.db.prepare("UPDATE tasks SET open_chunk_size=? WHERE id=?").run(size, task);
  }

  /** Where the last recorded chunk ends (0 before the first). */
  plannedEnd(task: string): number {
    const row = this.db.prepare("SELECT MAX(offset + length) AS e FROM chunks WHERE task_id=?").get(task) as { e: number | null };
    return row.e ?? 0;
  }

  runningAttemptsOfTask(task: string): AttemptRow[] {
    return this.db.prepare("SELECT * FROM attempts WHERE task_id=? AND state='running'").all(task) as AttemptRow[];
  }

  /** Ends a task: succeeded, failed or cancelled. Returns the attempts still running, to be cancelled on their workers. */
  finishTask(id: string, to: TaskState, error: string | null = null): AttemptRow[] {
    return this.db.transaction(() => {
      const running = this.db.prepare("SELECT * FROM attempts WHERE task_id=? AND state='running'").all(id) as AttemptRow[];
      for (const a of running) this.moveAttempt(a.id, AttemptState.cancelled, { ...noEnd, reason: `task ${to}` });
      const open = this.db.prepare("SELECT seq FROM chunks WHERE task_id=? AND state IN ('pending','running')").all(id) as { seq: number }[];
      for (const c of open) this.moveChunk(id, c.seq, ChunkState.cancelled);
      this.moveTask(id, to, error);
      return running;
    })();
  }

  // --- chunks and attempts ---

  chunk(task: string, seq: number): ChunkRow {
    const row = this.db.prepare("SELECT * FROM chunks WHERE task_id=? AND seq=?").get(task, seq) as ChunkRow | undefined;
    if (!row) throw new Error(`no chunk ${task}/${seq} in the ledger`);
    return row;
  }

  chunks(task: string): ChunkRow[] {
    return this.db.prepare("SELECT * FROM chunks WHERE task_id=? ORDER BY seq").all(task) as ChunkRow[];
  }

  findChunk(task: string, seq: number): ChunkRow | undefined {
    return this.db.prepare("SELECT * FROM chunks WHERE task_id=? AND seq=?").get(task, seq) as ChunkRow | undefined;
  }

  pendingChunks(task: string, limit: number): ChunkRow[] {
    return this.db.prepare("SELECT * FROM chunks WHERE task_id=? AND state='pending' ORDER BY seq LIMIT ?").all(task, limit) as ChunkRow[];
  }

  chunkByCommitOrder(task: string, order: number): ChunkRow | undefined {
    return this.db.prepare("SELECT * FROM chunks WHERE task_id=? AND commit_order=?").get(task, order) as ChunkRow | undefined;
  }

  attempt(id: number): AttemptRow {
    const row = this.db.prepare("SELECT * FROM attempts WHERE id=?").get(id) as AttemptRow | undefined;
    if (!row) throw new Error(`no attempt ${id} in the ledger`);
    return row;
  }

  attempts(task: string): AttemptRow[] {
    return this.db.prepare("SELECT * FROM attempts WHERE task_id=? ORDER BY id").all(task) as AttemptRow[];
  }

  /** Workers on which this chunk's attempts failed, so a retry can go elsewhere. */
  failedOn(task: string, seq: number): string[] {
    const rows = this.db
      .prepare("SELECT DISTINCT worker_id FROM attempts WHERE task_id=? AND seq=? AND state IN ('failed','lost')")
      .all(task, seq) as { worker_id: string }[];
    return rows.map((r) => r.worker_id);
  }

  startAttempt(task: string, seq: number, worker: string): number {
    return this.db.transaction(() => {
      this.moveChunk(task, seq, ChunkState.running);
      this.db.prepare("UPDATE chunks SET attempts=attempts+1 WHERE task_id=? AND seq=?").run(task, seq);
      const id = Number(
        this.db
          .prepare("INSERT INTO attempts(task_id, seq, worker_id, state, started_at) VALUES (?,?,?,'running',?)")
          .run(task, seq, worker, this.now()).lastInsertRowid,
      );
      this.event("attempt-started", { task, seq, attempt: id, worker });
      return id;
    })();
  }

  /**
   * A backup attempt of a chunk that is running long (speculative execution): the chunk stays running,
   * and whichever attempt finishes first commits. A backup does not use up a retry.
   */
  startBackupAttempt(task: string, seq: number, worker: string): number {
    return this.db.transaction(() => {
      const c = this.chunk(task, seq);
      if (c.state !== ChunkState.running) throw new Error(`chunk ${task}/${seq} is ${c.state}, not running: no backup`);
      const id = Number(
        this.db
          .prepare("INSERT INTO attempts(task_id, seq, worker_id, state, started_at, backup) VALUES (?,?,?,'running',?,1)")
          .run(task, seq, worker, this.now()).lastInsertRowid,
      );
      this.event("backup-started", { task, seq, attempt: id, worker });
      return id;
    })();
  }

  /** After a commit: the chunk's other running attempts are cancelled (they lost the race). */
  cancelRivals(committed: number): AttemptRow[] {
    return this.db.transaction(() => {
      const a = this.attempt(committed);
      const rivals = this.db.prepare("SELECT * FROM attempts WHERE task_id=? AND seq=? AND state='running' AND id<>?").all(a.task_id, a.seq, committed) as AttemptRow[];
      for (const r of rivals) this.moveAttempt(r.id, AttemptState.cancelled, { exitCode: -1, reason: `attempt ${committed} committed the chunk first`, stderr: "", bytesIn: 0, bytesOut: 0, seconds: 0 });
      return rivals;
    })();
  }

  /**
   * Commits an attempt's output as its chunk's, once. Returns false, changing nothing, when the attempt
   * is no longer running (fenced: the coordinator gave up on it, or the chunk already committed).
   */
  commitAttempt(id: number, end: AttemptEnd): boolean {
    return this.db.transaction(() => {
      const a = this.attempt(id);
      if (a.state !== AttemptState.running) return false;
      const c = this.chunk(a.task_id, a.seq);
      if (c.state !== ChunkState.running) return false;
      this.moveAttempt(id, AttemptState.succeeded, end);
      this.moveChunk(a.task_id, a.seq, ChunkState.committed);
      const order = (this.db.prepare("SELECT commits FROM tasks WHERE id=?").get(a.task_id) as { commits: number }).commits;
      this.db
        .prepare("UPDATE chunks SET committed_attempt=?, commit_order=?, bytes_out=? WHERE task_id=? AND seq=?")
        .run(id, order, end.bytesOut, a.task_id, a.seq);
      this.db.prepare("UPDATE tasks SET commits=commits+1 WHERE id=?").run(a.task_id);
      this.event("chunk-committed", { task: a.task_id, seq: a.seq, attempt: id, worker: a.worker_id });
      return true;
    })();
  }

  /**
   * Ends a running attempt that did not succeed. The chunk goes back to pending while it has attempts
   * left (retries + 1 in all), else it fails and takes the task with it, in the same transaction.
   */
  failAttempt(id: number, to: "failed" | "lost" | "cancelled", end: AttemptEnd, retries: number): FailOutcome {
    return this.db.transaction((): FailOutcome => {
      const a = this.attempt(id);
      if (a.state !== AttemptState.running) return { ended: false };
      this.moveAttempt(id, to, end);
      this.event(`attempt-${to}`, { task: a.task_id, seq: a.seq, attempt: id, worker: a.worker_id, detail: end.reason });
      const c = this.chunk(a.task_id, a.seq);
      const othersRunning = this.db
        .prepare("SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND seq=? AND state='running'")
        .get(a.task_id, a.seq) as { n: number };
      if (c.state !== ChunkState.running || othersRunning.n > 0) return { ended: true, chunk: "unchanged" };
      // A lost or cancelled attempt is not the program's fault: it does not use up a retry.
      if (to !== "failed" || c.attempts <= retries) {
        if (to !== "failed") this.db.prepare("UPDATE chunks SET attempts=attempts-1 WHERE task_id=? AND seq=?").run(a.task_id, a.seq);
        this.moveChunk(a.task_id, a.seq, ChunkState.pending);
        return { ended: true, chunk: "pending" };
      }
      this.moveChunk(a.task_id, a.seq, ChunkState.failed);
      const taskError = chunkFailure(c, end);
      return { ended: true, chunk: "failed", taskError };
    })();
  }

  runningAttemptsOf(worker: string): AttemptRow[] {
    return this.db.prepare("SELECT * FROM attempts WHERE worker_id=? AND state='running'").all(worker) as AttemptRow[];
  }

  // --- workers ---

  workerJoined(w: Omit<WorkerRow, "state" | "joined_at" | "last_seen">): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO workers(id, name, host, slots, cpus, memory_mb, disk_mb, gpus, docker, interruptible, state, joined_at, last_seen)
           VALUES (@id, @name, @host, @slots, @cpus, @memory_mb, @disk_mb, @gpus, @docker, @interruptible, 'connected', @now, @now)
           ON CONFLICT(id) DO UPDATE SET name=@name, host=@host, slots=@slots, cpus=@cpus, memory_mb=@memory_mb,
             disk_mb=@disk_mb, gpus=@gpus, docker=@docker, interruptible=@interruptible, state='connected', last_seen=@now`,
        )
        .run({ ...w, now: this.now() });
      this.event("worker-joined", { worker: w.id, detail: `${w.name} on ${w.host}, ${w.slots} slots` });
    })();
  }

  workerSeen(id: string, at: number): void {
    this.db.prepare("UPDATE workers SET last_seen=? WHERE id=?").run(at, id);
  }

  workerLost(id: string, reason: string): void {
    this.db.transaction(() => {
      this.db.prepare("UPDATE workers SET state='lost' WHERE id=?").run(id);
      this.event("worker-lost", { worker: id, detail: reason });
    })();
  }

  workers(): WorkerRow[] {
    return this.db.prepare("SELECT * FROM workers ORDER BY joined_at, id").all() as WorkerRow[];
  }

  nextWorkerId(): string {
    const row = this.db.prepare("SELECT COUNT(*) AS n FROM workers").get() as { n: number };
    return `w${row.n + 1}`;
  }

  events(task: string): EventRow[] {
    return this.db.prepare("SELECT at, seq, attempt_id, worker_id, kind, detail FROM events WHERE task_id=? ORDER BY id").all(task) as EventRow[];
  }
}

const noEnd: AttemptEnd = { exitCode: -1, reason: "", stderr: "", bytesIn: 0, bytesOut: 0, seconds: 0 };

function chunkFailure(c: ChunkRow, end: AttemptEnd): string {
  const stderr = end.stderr.trim() ? `\n--- stderr of its last attempt ---\n${end.stderr.trimEnd()}` : "";
  return `chunk ${c.seq} (bytes ${c.offset}-${c.offset + c.length}) failed after ${c.attempts} attempt${c.attempts === 1 ? "" : "s"}: ${end.reason}${stderr}`;
}
