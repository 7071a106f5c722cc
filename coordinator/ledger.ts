// The ledger: tasks, chunks, attempts, workers and events in SQLite (WAL). It is the truth.
// Every state change goes through one method here that checks the transition table and writes the
// change with its consequences in one transaction. It never does I/O beyond its database.
import Database from "better-sqlite3";
import {
  AttemptState,
  ChunkState,
  IllegalTransition,
  TaskState,
  WorkerState,
  canMoveAttempt,
  canMoveChunk,
  canMoveTask,
} from "../core/states";
import { OutcomeKind } from "../core/outcome";
import type { TaskTally } from "../core/report";
import type { ZipCodec } from "../core/zip";
import type { InputObject } from "../core/input-objects";

export const SCHEMA_VERSION = 11;

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

/**
 * Version 6: fencing and bounded losses. A worker's sessions are numbered (`epoch`, one more at each
 * hello) and an attempt records the session it was given to: only that session's result counts. An
 * attempt records what kind of end it had (core/outcome.ts); a chunk counts the times an attempt of it
 * was lost with its worker, so a chunk that keeps killing its worker fails instead of looping.
 */
const schemaV6 = `
ALTER TABLE workers ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN session INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN kind TEXT;
ALTER TABLE chunks ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;
`;

/**
 * Version 7: a worker's state may be 'left' (it drained on SIGTERM and closed its stream), besides
 * 'connected' and 'lost'. The table keeps its shape; the version tells an older bach, which knows
 * only the two, that this ledger holds a state it would misreport.
 */
const schemaV7 = `
-- workers.state: 'connected', 'left' or 'lost'
`;

/**
 * Version 8: map-reduce. A task with a reduce phase (`reduce`) runs its map chunks (phase 'map'), then,
 * once every one has committed, its reduce partitions: chunks of phase 'reduce' numbered after the
 * map chunks (from `map_chunks`), whose input is the `shuffle` table's ranges of the committed map
 * chunks' runs. A committed map chunk keeps its run's index (`run_index`: partition ends or marks, as
 * JSON); a reduce chunk says what keys it holds (`key_range`). `partitions`: how many (hash order: from
 * the task's start; total order: once the map phase has ended).
 */
const schemaV8 = `
ALTER TABLE tasks ADD COLUMN reduce INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN phase TEXT NOT NULL DEFAULT 'map';
ALTER TABLE tasks ADD COLUMN partitions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN map_chunks INTEGER;
ALTER TABLE chunks ADD COLUMN phase TEXT NOT NULL DEFAULT 'map';
ALTER TABLE chunks ADD COLUMN run_index TEXT;
ALTER TABLE chunks ADD COLUMN key_range TEXT;
CREATE TABLE shuffle (
  task_id TEXT NOT NULL, part INTEGER NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
  PRIMARY KEY (task_id, part, seq));
`;

/**
 * Version 9: input that lives where workers reach it (input_kind 'objects'): the objects a task reads,
 * in order, laid end to end from `base`; its chunks are byte ranges of that line (core/input-objects.ts).
 * `etag` is the version the task reads: another one fails the read.
 */
const schemaV9 = `
CREATE TABLE inputs (
  task_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, url TEXT NOT NULL, size INTEGER NOT NULL,
  etag TEXT NOT NULL, base INTEGER NOT NULL, PRIMARY KEY (task_id, idx));
`;

/**
 * Version 10: an input object may be a member of a zip archive (core/zip.ts): `url` is the archive's,
 * the member's bytes start at `zip_offset`, stored or deflated (`zip_codec`, '' for an object that is
 * not a member), with the CRC-32 `zip_crc32` of its uncompressed bytes.
 */
const schemaV10 = `
ALTER TABLE inputs ADD COLUMN zip_codec TEXT NOT NULL DEFAULT '';
ALTER TABLE inputs ADD COLUMN zip_offset INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inputs ADD COLUMN zip_crc32 INTEGER NOT NULL DEFAULT 0;
`;

/**
 * Version 11: the pending chunks of a task found without reading past its committed ones. The
 * scheduler asks for the first few pending chunks at every turn; over the primary key that read every
 * committed chunk before them, so a task of 1,000 one-object chunks took time that grew with the square
 * of its chunks.
 */
const schemaV11 = `
CREATE INDEX chunks_pending ON chunks(task_id, seq) WHERE state='pending';
`;

/** Migrations by the version they produce; a later issue appends to this list, never edits it. */
const migrations: { version: number; sql: string }[] = [
  { version: 1, sql: schemaV1 },
  { version: 2, sql: schemaV2 },
  { version: 3, sql: schemaV3 },
  { version: 4, sql: schemaV4 },
  { version: 5, sql: schemaV5 },
  { version: 6, sql: schemaV6 },
  { version: 7, sql: schemaV7 },
  { version: 8, sql: schemaV8 },
  { version: 9, sql: schemaV9 },
  { version: 10, sql: schemaV10 },
  { version: 11, sql: schemaV11 },
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
  /** 1: a map-reduce task (see schema version 8). */
  reduce: number;
  phase: Phase;
  /** Reduce partitions (0: not decided yet, or no reduce). */
  partitions: number;
  /** The number of map chunks, once the reduce phase is planned: reduce partition p is chunk map_chunks + p. */
  map_chunks: number | null;
}

export type Phase = "map" | "reduce";

/** Where a committed map chunk's run ends each hash partition, or where records that carry their key start (total order). */
export interface RunIndex {
  partitionEnds: number[];
  marks: number[];
}

/** A reduce partition's input: the range of each map chunk's run that holds its keys. */
export interface ShuffleRange {
  part: number;
  seq: number;
  offset: number;
  length: number;
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
  /** Attempts of it lost with their worker (not counting preemption or a coordinator restart). */
  losses: number;
  phase: Phase;
  /** JSON of a committed map chunk's RunIndex (map-reduce tasks only). */
  run_index: string | null;
  /** A reduce partition's keys, in words ("keys from ... to ..."). */
  key_range: string | null;
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
  /** The worker session it was given to (WorkerRow.epoch at the time): only that session may end it. */
  session: number;
  kind: OutcomeKind | null;
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
  state: WorkerState;
  joined_at: number;
  /** When it was last heard from: written every few seconds while connected (Workers), and as it goes. */
  last_seen: number;
  /** Its current session: one more at each hello. */
  epoch: number;
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
  /** A map-reduce task, and its partitions when decided at its start (hash order; 0: later). */
  reduce?: { partitions: number };
  /** input_kind 'objects': what it reads, in order. */
  objects?: readonly InputObject[];
}

export interface AttemptEnd {
  kind: OutcomeKind;
  /** false: every retry would end the same way (see core/outcome.ts); the chunk fails at once. */
  retryable: boolean;
  exitCode: number;
  reason: string;
  stderr: string;
  bytesIn: number;
  bytesOut: number;
  seconds: number;
  /** A map attempt's run index (map-reduce tasks), kept with its commit. */
  run?: RunIndex | null;
}

/** The worker session an attempt was given to; only it may end the attempt. */
export interface Owner {
  worker: string;
  session: number;
}

/** How far a chunk may go wrong before it fails its task. */
export interface AttemptLimits {
  /** Failed attempts after the first (the bachfile's `retries`). */
  retries: number;
  /** Attempts lost with their worker (bach-coordinator --max-lost). */
  maxLost: number;
}

export interface EndAttempt {
  attempt: number;
  /** The session that reports it; null when the coordinator itself ends it (a restart, a lost worker). */
  by: Owner | null;
  to: "succeeded" | "failed" | "lost";
  end: AttemptEnd;
  limits: AttemptLimits;
  /** A lost attempt that is not the chunk's doing (its worker was draining, the coordinator restarted). */
  blameless?: boolean;
}

/** A task that ended with an attempt: succeeded with its last commit, or failed with a chunk. */
export interface TaskEnd {
  state: TaskState;
  error: string | null;
}

/**
 * What ending an attempt did (Ledger.endAttempt), in one transaction:
 * - refused: nothing changed. `why` names the reason (no such attempt, another session's, ended
 *   already); `dropOutput` says whether an output written for it may be removed (never a committed
 *   one, never one another session may still be writing).
 * - committed: its output is its chunk's, once and for all.
 * - ended: it did not commit; its chunk is unchanged (other attempts run it), pending again, or
 *   failed (and the task with it).
 * `stop` lists running attempts the change cancelled (rivals of a commit, the rest of a failed task),
 * to be stopped on their workers; `taskEnd` says when the task ended with this attempt.
 */
export type AttemptFinish =
  | { kind: "refused"; why: string; dropOutput: boolean }
  | { kind: "committed"; task: string; seq: number; stop: AttemptRow[]; taskEnd: TaskEnd | null }
  | { kind: "ended"; task: string; seq: number; chunk: "unchanged" | "pending" | "failed"; stop: AttemptRow[]; taskEnd: TaskEnd | null };

export class Ledger {
  readonly db: Database.Database;
  private readonly now: () => number;
  /** Each statement prepared once: preparing one per call cost a task of 1,000 one-object chunks 1.2 CPU-s. */
  private readonly statements = new Map<string, Database.Statement>();

  /**
   * `durable`: every transaction is on disk when it returns (synchronous = FULL: the WAL is fsynced at
   * each commit), so a power loss cannot take back a commit whose output was fsynced before it. Without
   * it (NORMAL), a commit survives any crash of the process, and the database stays consistent through
   * a power loss, which may take back the last commits (their chunks then run again).
   */
  constructor(file: string, now: () => number = Date.now, opts: { durable?: boolean } = {}) {
    this.db = new Database(file);
    this.now = now;
    this.db.pragma("journal_mode = WAL");
    this.db.pragma(opts.durable ? "synchronous = FULL" : "synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
  }

  close(): void {
    this.db.close();
  }

  schemaVersion(): number {
    const hasMeta = this.sql("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").get();
    if (!hasMeta) return 0;
    const row = this.sql("SELECT value FROM meta WHERE key='schema_version'").get() as { value: string } | undefined;
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
        this.sql("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)").run(String(m.version));
      })();
    }
  }

  private event(kind: string, e: { task?: string; seq?: number; attempt?: number; worker?: string; detail?: string }): void {
    this.sql("INSERT INTO events(at, task_id, seq, attempt_id, worker_id, kind, detail) VALUES (?,?,?,?,?,?,?)")
      .run(this.now(), e.task ?? null, e.seq ?? null, e.attempt ?? null, e.worker ?? null, kind, e.detail ?? null);
  }

  // --- the three moves; every state change in the ledger passes through one of them ---

  private moveTask(id: string, to: TaskState, error: string | null = null): void {
    const from = this.task(id).state;
    if (!canMoveTask(from, to)) throw new IllegalTransition("task", id, from, to);
    this.sql("UPDATE tasks SET state=?, error=COALESCE(?, error), finished_at=? WHERE id=?").run(to, error, this.now(), id);
    this.event(`task-${to}`, { task: id, detail: error ?? undefined });
  }

  private moveChunk(task: string, seq: number, to: ChunkState): void {
    const from = this.chunk(task, seq).state;
    if (!canMoveChunk(from, to)) throw new IllegalTransition("chunk", `${task}/${seq}`, from, to);
    this.sql("UPDATE chunks SET state=? WHERE task_id=? AND seq=?").run(to, task, seq);
  }

  private moveAttempt(id: number, to: AttemptState, end?: AttemptEnd): void {
    const from = this.attempt(id).state;
    if (!canMoveAttempt(from, to)) throw new IllegalTransition("attempt", String(id), from, to);
    this.sql("UPDATE attempts SET state=?, ended_at=?, kind=?, exit_code=?, reason=?, stderr=?, bytes_in=?, bytes_out=?, seconds=? WHERE id=?")
      .run(to, this.now(), end?.kind ?? null, end?.exitCode ?? null, end?.reason ?? null, end?.stderr ?? null, end?.bytesIn ?? null, end?.bytesOut ?? null, end?.seconds ?? null, id);
  }

  // --- tasks ---

  createTask(t: NewTask): void {
    this.db.transaction(() => {
      this.sql(
        `INSERT INTO tasks(id, name, bachfile, bundle_hash, image_id, state, parallelism, chunk_size, input_kind, input_path, data_streams, created_at, reduce, partitions)
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
      ).run(t.id, t.name, t.bachfile, t.bundleHash, t.imageId, TaskState.running, t.parallelism, t.chunkSize, t.inputKind, t.inputPath, t.dataStreams, this.now(), t.reduce ? 1 : 0, t.reduce?.partitions ?? 0);
      const object = this.sql("INSERT INTO inputs(task_id, idx, name, url, size, etag, base, zip_codec, zip_offset, zip_crc32) VALUES (?,?,?,?,?,?,?,?,?,?)");
      (t.objects ?? []).forEach((o, i) => object.run(t.id, i, o.name, o.url, o.size, o.etag, o.base, o.zip?.codec ?? "", o.zip?.offset ?? 0, o.zip?.crc32 ?? 0));
      this.event("task-created", { task: t.id, detail: `${t.inputKind} ${t.inputPath}`.trim() });
    })();
  }

  /** An 'objects' task's input, in order. */
  inputs(task: string): InputObject[] {
    const rows = this.sql("SELECT name, url, size, etag, base, zip_codec, zip_offset, zip_crc32 FROM inputs WHERE task_id=? ORDER BY idx").all(task) as (Omit<InputObject, "zip"> & { zip_codec: ZipCodec | ""; zip_offset: number; zip_crc32: number })[];
    return rows.map(({ zip_codec, zip_offset, zip_crc32, ...o }) => (zip_codec ? { ...o, zip: { codec: zip_codec, offset: zip_offset, crc32: zip_crc32 } } : o));
  }

  task(id: string): TaskRow {
    const row = this.sql("SELECT * FROM tasks WHERE id=?").get(id) as TaskRow | undefined;
    if (!row) throw new Error(`no task ${id} in the ledger`);
    return row;
  }

  findTask(id: string): TaskRow | undefined {
    return this.sql("SELECT * FROM tasks WHERE id=?").get(id) as TaskRow | undefined;
  }

  latestTask(): TaskRow | undefined {
    return this.sql("SELECT * FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT 1").get() as TaskRow | undefined;
  }

  tasks(limit = 50): TaskRow[] {
    return this.sql("SELECT * FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT ?").all(limit) as TaskRow[];
  }

  /** Ended tasks whose output is still in the spool and ended before `before` (ms since the epoch). */
  tasksEndedBefore(before: number): TaskRow[] {
    return this.sql("SELECT * FROM tasks WHERE state!='running' AND finished_at<? AND output_removed_at IS NULL ORDER BY finished_at")
      .all(before) as TaskRow[];
  }

  /** Records that a task's output left the spool; the task, its chunks and attempts stay for reports. */
  markOutputRemoved(id: string): void {
    this.db.transaction(() => {
      this.sql("UPDATE tasks SET output_removed_at=? WHERE id=?").run(this.now(), id);
      this.event("task-output-removed", { task: id });
    })();
  }

  /** Bundles and images of tasks that still run or still keep their output. */
  artifactsInUse(): { bundles: Set<string>; images: Set<string> } {
    const rows = this.sql("SELECT DISTINCT bundle_hash, image_id FROM tasks WHERE output_removed_at IS NULL").all() as { bundle_hash: string; image_id: string }[];
    return { bundles: new Set(rows.map((r) => r.bundle_hash)), images: new Set(rows.map((r) => r.image_id).filter(Boolean)) };
  }

  runningTasks(): TaskRow[] {
    return this.sql("SELECT * FROM tasks WHERE state='running' ORDER BY created_at, rowid").all() as TaskRow[];
  }

  /** Chunks cut from the input, recorded together with how far the input has come. */
  addChunks(task: string, cuts: { seq: number; offset: number; length: number }[], bytesIn: number, inputDone: boolean): void {
    this.db.transaction(() => {
      const insert = this.sql("INSERT INTO chunks(task_id, seq, offset, length, state) VALUES (?,?,?,?,'pending')");
      for (const c of cuts) insert.run(task, c.seq, c.offset, c.length);
      this.sql("UPDATE tasks SET bytes_in=?, input_done=?, chunks_planned=chunks_planned+? WHERE id=?")
        .run(bytesIn, inputDone ? 1 : 0, cuts.length, task);
      if (inputDone) this.event("input-done", { task, detail: `${bytesIn} bytes` });
    })();
  }

  /** Every streamed byte before `offset` is in complete spool writes. */
  setSpooled(task: string, offset: number): void {
    this.sql("UPDATE tasks SET spooled=? WHERE id=?").run(offset, task);
  }

  setOpenChunkSize(task: string, size: number): void {
    this.sql("UPDATE tasks SET open_chunk_size=? WHERE id=?").run(size, task);
  }

  /** Where the last recorded chunk ends (0 before the first). */
  plannedEnd(task: string): number {
    const row = this.sql("SELECT MAX(offset + length) AS e FROM chunks WHERE task_id=? AND phase='map'").get(task) as { e: number | null };
    return row.e ?? 0;
  }

  runningAttemptsOfTask(task: string): AttemptRow[] {
    return this.sql("SELECT * FROM attempts WHERE task_id=? AND state='running'").all(task) as AttemptRow[];
  }

  /** Ends a task: succeeded, failed or cancelled. Returns the attempts still running, to be cancelled on their workers. */
  finishTask(id: string, to: TaskState, error: string | null = null): AttemptRow[] {
    return this.db.transaction(() => this.endTaskNow(id, to, error))();
  }

  /** The body of finishTask, for transactions that end a task among other changes. */
  private endTaskNow(id: string, to: TaskState, error: string | null): AttemptRow[] {
    const running = this.sql("SELECT * FROM attempts WHERE task_id=? AND state='running'").all(id) as AttemptRow[];
    for (const a of running) this.moveAttempt(a.id, AttemptState.cancelled, { ...noEnd, kind: OutcomeKind.cancelled, reason: `task ${to}` });
    const open = this.sql("SELECT seq FROM chunks WHERE task_id=? AND state IN ('pending','running')").all(id) as { seq: number }[];
    for (const c of open) this.moveChunk(id, c.seq, ChunkState.cancelled);
    this.moveTask(id, to, error);
    return running;
  }

  // --- chunks and attempts ---

  chunk(task: string, seq: number): ChunkRow {
    const row = this.sql("SELECT * FROM chunks WHERE task_id=? AND seq=?").get(task, seq) as ChunkRow | undefined;
    if (!row) throw new Error(`no chunk ${task}/${seq} in the ledger`);
    return row;
  }

  chunks(task: string): ChunkRow[] {
    return this.sql("SELECT * FROM chunks WHERE task_id=? ORDER BY seq").all(task) as ChunkRow[];
  }

  /** Input bytes of the task's committed chunks. */
  committedBytes(task: string): number {
    return (this.sql("SELECT COALESCE(SUM(length), 0) AS n FROM chunks WHERE task_id=? AND state='committed' AND phase='map'").get(task) as { n: number }).n;
  }

  /** The first committed chunk at or after `seq`, if any: where a partial reader's gap ends. */
  nextCommitted(task: string, seq: number): number | null {
    return (this.sql("SELECT MIN(seq) AS s FROM chunks WHERE task_id=? AND seq>=? AND state='committed'").get(task, seq) as { s: number | null }).s;
  }

  /** What a task did: its chunks, committed bytes and ranges, failed attempts and time (see TaskTally). */
  tally(task: string): TaskTally {
    const t = this.task(task);
    const ranges = this.sql("SELECT MIN(seq) AS a, MAX(seq) AS b FROM (SELECT seq, seq - ROW_NUMBER() OVER (ORDER BY seq) AS g FROM chunks WHERE task_id=? AND state='committed') GROUP BY g ORDER BY a")
      .all(task) as { a: number; b: number }[];
    const failed = (this.sql("SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND state IN ('failed','lost')").get(task) as { n: number }).n;
    return {
      planned: t.chunks_planned,
      committed: t.commits,
      bytes: this.committedBytes(task),
      seconds: ((t.finished_at ?? this.now()) - t.created_at) / 1000,
      failedAttempts: failed,
      ranges: ranges.map((r) => [r.a, r.b]),
    };
  }

  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  findChunk(task: string, seq: number): ChunkRow | undefined {
    return this.sql("SELECT * FROM chunks WHERE task_id=? AND seq=?").get(task, seq) as ChunkRow | undefined;
  }

  pendingChunks(task: string, limit: number): ChunkRow[] {
    return this.sql("SELECT * FROM chunks WHERE task_id=? AND state='pending' ORDER BY seq LIMIT ?").all(task, limit) as ChunkRow[];
  }

  chunkByCommitOrder(task: string, order: number): ChunkRow | undefined {
    return this.sql("SELECT * FROM chunks WHERE task_id=? AND commit_order=?").get(task, order) as ChunkRow | undefined;
  }

  findAttempt(id: number): AttemptRow | undefined {
    return this.sql("SELECT * FROM attempts WHERE id=?").get(id) as AttemptRow | undefined;
  }

  attempt(id: number): AttemptRow {
    const row = this.sql("SELECT * FROM attempts WHERE id=?").get(id) as AttemptRow | undefined;
    if (!row) throw new Error(`no attempt ${id} in the ledger`);
    return row;
  }

  attempts(task: string): AttemptRow[] {
    return this.sql("SELECT * FROM attempts WHERE task_id=? ORDER BY id").all(task) as AttemptRow[];
  }

  /** Workers on which this chunk's attempts failed, so a retry can go elsewhere. */
  failedOn(task: string, seq: number): string[] {
    const rows = this.sql("SELECT DISTINCT worker_id FROM attempts WHERE task_id=? AND seq=? AND state IN ('failed','lost')")
      .all(task, seq) as { worker_id: string }[];
    return rows.map((r) => r.worker_id);
  }

  startAttempt(task: string, seq: number, worker: string): number {
    return this.db.transaction(() => {
      const session = this.workerEpoch(worker);
      this.moveChunk(task, seq, ChunkState.running);
      this.sql("UPDATE chunks SET attempts=attempts+1 WHERE task_id=? AND seq=?").run(task, seq);
      const id = Number(
        this.sql("INSERT INTO attempts(task_id, seq, worker_id, session, state, started_at) VALUES (?,?,?,?,'running',?)")
          .run(task, seq, worker, session, this.now()).lastInsertRowid,
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
        this.sql("INSERT INTO attempts(task_id, seq, worker_id, session, state, started_at, backup) VALUES (?,?,?,?,'running',?,1)")
          .run(task, seq, worker, this.workerEpoch(worker), this.now()).lastInsertRowid,
      );
      this.event("backup-started", { task, seq, attempt: id, worker });
      return id;
    })();
  }

  /**
   * Ends a running attempt as its owner reports it, with every consequence, in one transaction: the
   * commit and the cancelling of its rivals (and the task's success when it was the last chunk), or the
   * chunk's retry, or the chunk's failure and with it the task's. A chunk fails at once on an end that
   * no retry can mend, after `retries` failures, or after `maxLost` losses with its worker.
   */
  endAttempt(e: EndAttempt): AttemptFinish {
    return this.db.transaction((): AttemptFinish => {
      const a = this.findAttempt(e.attempt);
      if (!a) return { kind: "refused", why: `no attempt ${e.attempt} in the ledger`, dropOutput: false };
      if (e.by && (a.worker_id !== e.by.worker || a.session !== e.by.session)) {
        return { kind: "refused", why: `attempt ${e.attempt} belongs to worker ${a.worker_id} (session ${a.session}), not ${e.by.worker} (session ${e.by.session})`, dropOutput: false };
      }
      if (a.state !== AttemptState.running) return { kind: "refused", why: `attempt ${e.attempt} has already ended (${a.state})`, dropOutput: a.state !== AttemptState.succeeded };
      const c = this.chunk(a.task_id, a.seq);
      if (e.to === "succeeded") return this.commit(a, c, e.end);
      this.moveAttempt(a.id, e.to, e.end);
      this.event(`attempt-${e.to}`, { task: a.task_id, seq: a.seq, attempt: a.id, worker: a.worker_id, detail: e.end.reason });
      const counted = e.to === "lost" && !e.blameless;
      if (counted) this.sql("UPDATE chunks SET losses=losses+1 WHERE task_id=? AND seq=?").run(a.task_id, a.seq);
      const losses = c.losses + (counted ? 1 : 0);
      const ended = { kind: "ended" as const, task: a.task_id, seq: a.seq, stop: [] as AttemptRow[], taskEnd: null };
      const othersRunning = this.sql("SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND seq=? AND state='running'").get(a.task_id, a.seq) as { n: number };
      if (c.state !== ChunkState.running || othersRunning.n > 0) return { ...ended, chunk: "unchanged" };
      const why =
        e.to === "failed" && (!e.end.retryable || c.attempts > e.limits.retries) ? null
        : counted && losses >= e.limits.maxLost ? `its worker died ${losses} times while running it (last: ${e.end.reason}; bach-coordinator --max-lost ${e.limits.maxLost})`
        : undefined;
      if (why === undefined) {
        // A lost attempt is not the program's fault: it does not use up a retry.
        if (e.to !== "failed") this.sql("UPDATE chunks SET attempts=attempts-1 WHERE task_id=? AND seq=?").run(a.task_id, a.seq);
        this.moveChunk(a.task_id, a.seq, ChunkState.pending);
        return { ...ended, chunk: "pending" };
      }
      this.moveChunk(a.task_id, a.seq, ChunkState.failed);
      const mapChunks = this.task(a.task_id).map_chunks;
      const error = why === null ? chunkFailure(c, e.end, mapChunks) : `${chunkWords(c, mapChunks)} failed: ${why}${stderrOf(e.end)}`;
      const stop = this.endTaskNow(a.task_id, TaskState.failed, error);
      return { ...ended, chunk: "failed", stop, taskEnd: { state: TaskState.failed, error } };
    })();
  }

  /** The commit of a running attempt, its rivals cancelled, and the task's success when nothing is left. */
  private commit(a: AttemptRow, c: ChunkRow, end: AttemptEnd): AttemptFinish {
    if (c.state !== ChunkState.running) return { kind: "refused", why: `chunk ${a.task_id}/${a.seq} is ${c.state}`, dropOutput: true };
    this.moveAttempt(a.id, AttemptState.succeeded, end);
    this.moveChunk(a.task_id, a.seq, ChunkState.committed);
    const order = (this.sql("SELECT commits FROM tasks WHERE id=?").get(a.task_id) as { commits: number }).commits;
    const run = c.phase === "map" && end.run ? JSON.stringify(end.run) : null;
    this.sql("UPDATE chunks SET committed_attempt=?, commit_order=?, bytes_out=?, run_index=? WHERE task_id=? AND seq=?").run(a.id, order, end.bytesOut, run, a.task_id, a.seq);
    this.sql("UPDATE tasks SET commits=commits+1 WHERE id=?").run(a.task_id);
    this.event("chunk-committed", { task: a.task_id, seq: a.seq, attempt: a.id, worker: a.worker_id });
    // A straggler and its backup: the one that lost the race is stopped.
    const stop = this.sql("SELECT * FROM attempts WHERE task_id=? AND seq=? AND state='running'").all(a.task_id, a.seq) as AttemptRow[];
    for (const r of stop) this.moveAttempt(r.id, AttemptState.cancelled, { ...noEnd, kind: OutcomeKind.cancelled, reason: `attempt ${a.id} committed the chunk first` });
    const t = this.task(a.task_id);
    // A map-reduce task's map phase ending is not its end: its reduce phase is planned next (planReduce).
    const done = t.input_done === 1 && t.commits === t.chunks_planned && (t.reduce === 0 || t.phase === "reduce");
    if (done) this.moveTask(a.task_id, TaskState.succeeded, null);
    return { kind: "committed", task: a.task_id, seq: a.seq, stop, taskEnd: done ? { state: TaskState.succeeded, error: null } : null };
  }

  // --- map-reduce ---

  /**
   * The reduce phase of a task whose map chunks have all committed, in one transaction: its partitions
   * become pending chunks numbered after the map chunks, each with its shuffle ranges. False (nothing
   * changed) when the task is not a running map-reduce task at the end of its map phase.
   */
  planReduce(task: string, partitions: { keyRange: string }[], ranges: ShuffleRange[]): boolean {
    return this.db.transaction((): boolean => {
      const t = this.task(task);
      if (t.state !== TaskState.running || t.reduce !== 1 || t.phase !== "map" || t.input_done !== 1 || t.commits !== t.chunks_planned) return false;
      const first = t.chunks_planned;
      const insert = this.sql("INSERT INTO shuffle(task_id, part, seq, offset, length) VALUES (?,?,?,?,?)");
      const bytes = new Array<number>(partitions.length).fill(0);
      for (const r of ranges) {
        insert.run(task, r.part, r.seq, r.offset, r.length);
        bytes[r.part] += r.length;
      }
      const chunk = this.sql("INSERT INTO chunks(task_id, seq, offset, length, state, phase, key_range) VALUES (?,?,0,?,'pending','reduce',?)");
      partitions.forEach((p, i) => chunk.run(task, first + i, bytes[i], p.keyRange));
      this.sql("UPDATE tasks SET phase='reduce', partitions=?, map_chunks=?, chunks_planned=chunks_planned+? WHERE id=?").run(partitions.length, first, partitions.length, task);
      this.event("reduce-planned", { task, detail: `${partitions.length} partitions, ${bytes.reduce((a, b) => a + b, 0)} bytes shuffled` });
      return true;
    })();
  }

  /** A reduce partition's ranges of the map chunks' runs, in map chunk order (empty ones left out). */
  shuffleOf(task: string, part: number): ShuffleRange[] {
    return this.sql("SELECT part, seq, offset, length FROM shuffle WHERE task_id=? AND part=? AND length>0 ORDER BY seq").all(task, part) as ShuffleRange[];
  }

  /** One map chunk's range for a reduce partition, if it has one. */
  shuffleRange(task: string, part: number, seq: number): ShuffleRange | undefined {
    return this.sql("SELECT part, seq, offset, length FROM shuffle WHERE task_id=? AND part=? AND seq=?").get(task, part, seq) as ShuffleRange | undefined;
  }

  /** Bytes moved from map runs to reducers (every partition's ranges). */
  bytesShuffled(task: string): number {
    return (this.sql("SELECT COALESCE(SUM(length), 0) AS n FROM shuffle WHERE task_id=?").get(task) as { n: number }).n;
  }

  runningAttemptsOf(worker: string): AttemptRow[] {
    return this.sql("SELECT * FROM attempts WHERE worker_id=? AND state='running'").all(worker) as AttemptRow[];
  }

  // --- workers ---

  /** A worker said hello: returns the number of its new session (one more than its last). */
  workerJoined(w: Omit<WorkerRow, "state" | "joined_at" | "last_seen" | "epoch">): number {
    return this.db.transaction(() => {
      this.sql(
        `INSERT INTO workers(id, name, host, slots, cpus, memory_mb, disk_mb, gpus, docker, interruptible, state, joined_at, last_seen, epoch)
         VALUES (@id, @name, @host, @slots, @cpus, @memory_mb, @disk_mb, @gpus, @docker, @interruptible, 'connected', @now, @now, 1)
         ON CONFLICT(id) DO UPDATE SET name=@name, host=@host, slots=@slots, cpus=@cpus, memory_mb=@memory_mb,
           disk_mb=@disk_mb, gpus=@gpus, docker=@docker, interruptible=@interruptible, state='connected', last_seen=@now, epoch=epoch+1`,
      ).run({ ...w, now: this.now() });
      this.event("worker-joined", { worker: w.id, detail: `${w.name} on ${w.host}, ${w.slots} slots` });
      return this.workerEpoch(w.id);
    })();
  }

  private workerEpoch(id: string): number {
    const row = this.sql("SELECT epoch FROM workers WHERE id=?").get(id) as { epoch: number } | undefined;
    return row?.epoch ?? 0;
  }

  workerSeen(id: string, at: number): void {
    this.sql("UPDATE workers SET last_seen=MAX(last_seen, ?) WHERE id=?").run(at, id);
  }

  /**
   * A worker's session ended: it left (drained and said goodbye) or was lost, last heard from at
   * `lastSeen` (null: as the ledger has it already, e.g. after a coordinator restart).
   */
  workerGone(id: string, state: "left" | "lost", reason: string, lastSeen: number | null): void {
    this.db.transaction(() => {
      this.sql("UPDATE workers SET state=?, last_seen=MAX(last_seen, COALESCE(?, last_seen)) WHERE id=?").run(state, lastSeen, id);
      this.event(`worker-${state}`, { worker: id, detail: reason });
    })();
  }

  workers(): WorkerRow[] {
    return this.sql("SELECT * FROM workers ORDER BY joined_at, id").all() as WorkerRow[];
  }

  nextWorkerId(): string {
    const row = this.sql("SELECT COUNT(*) AS n FROM workers").get() as { n: number };
    return `w${row.n + 1}`;
  }

  events(task: string): EventRow[] {
    return this.sql("SELECT at, seq, attempt_id, worker_id, kind, detail FROM events WHERE task_id=? ORDER BY id").all(task) as EventRow[];
  }
}

/** The end of an attempt that never ran to a verdict of its own (lost, cancelled). */
export const noEnd: AttemptEnd = { kind: OutcomeKind.cancelled, retryable: true, exitCode: -1, reason: "", stderr: "", bytesIn: 0, bytesOut: 0, seconds: 0 };

function stderrOf(end: AttemptEnd): string {
  return end.stderr.trim() ? `\n--- stderr of its last attempt ---\n${end.stderr.trimEnd()}` : "";
}

/** What a user can do about a failure, when the failure's kind says. */
const WAY_OUT: Partial<Record<OutcomeKind, string>> = {
  // "fail" is the default: a first run of a program that merely warns ends here.
  [OutcomeKind.stderr]: 'a program that may write to stderr: "stderr": "log" in bachfile.json keeps it in the report instead',
};

/** A chunk in a failure's words: its input bytes, or a reduce partition's keys. */
export function chunkWords(c: ChunkRow, mapChunks: number | null): string {
  return c.phase === "reduce" ? `reduce partition ${c.seq - (mapChunks ?? 0)} (${c.key_range ?? "its keys"})` : `chunk ${c.seq} (bytes ${c.offset}-${c.offset + c.length})`;
}

function chunkFailure(c: ChunkRow, end: AttemptEnd, mapChunks: number | null): string {
  const wayOut = WAY_OUT[end.kind];
  return `${chunkWords(c, mapChunks)} failed after ${c.attempts} attempt${c.attempts === 1 ? "" : "s"}: ${end.reason}${wayOut ? ` (${wayOut})` : ""}${stderrOf(end)}`;
}
