// The coordinator's domain: tasks come in, input becomes chunks, chunks go to worker slots, results
// commit or retry, output flows back in order. One dispatch point reacts to every event. It knows
// nothing of gRPC (server.ts adapts it) and keeps no truth of its own: the ledger holds it.
import { EventEmitter, once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Bachfile, Reduce } from "../core/bachfile";
import type { OutputEvent } from "../core/report";
import { ChunkSizer } from "../core/chunk-size";
import { fileSample } from "../core/file-sample";
import { DiskFullError, diskFullMessage, InputError, isDiskFull } from "../core/errors";
import type { AttemptFed, AttemptResult, Piece, WorkerHello } from "../core/generated/bach";
import { chunkPieces, piecesBytes, readWhole, type InputObject } from "../core/input-objects";
import type { S3Options, S3Store } from "../core/s3";
import { PresignedUrls, presignSeconds, resolveSources } from "./input-sources";
import { AttemptState, ChunkState, TaskState, WorkerState } from "../core/states";
import { Intake, type IntakeResume } from "./intake";
import { Ledger, noEnd, type AttemptEnd, type AttemptFinish, type AttemptRow, type ChunkRow, type RunIndex, type TaskEnd, type TaskRow } from "./ledger";
import { autoPartitions, checkRunIndex, planHash, planTotal, type MapRun } from "./reduce-plan";
import { OutcomeKind, outcomeKindOf } from "../core/outcome";
import { checkBachfileJson } from "../core/bachfile";
import { DEFAULT_SPECULATION, neverFits, placeBackups, placeChunks, type Needs, type RunningAttemptView, type Speculation, type TaskView } from "./scheduler";
import { Spool } from "./spool";
import { DataDirLock } from "./data-dir-lock";
import { ChunkData } from "./chunk-data";
import { Retention } from "./retention";
import { Workers, type ReduceAssignment, type WorkerLink, type WorkerSession } from "./workers";
import { filePieces } from "../core/file-pieces";
import { FRAME_BYTES } from "../core/rpc";

export type { WorkerLink, WorkerSession } from "./workers";

export interface CoordinatorOptions {
  dataDir: string;
  /** How often workers send heartbeats. */
  heartbeatMs: number;
  /** A worker silent this long is declared lost and its chunks run again elsewhere. */
  lostAfterMs: number;
  log: Logger;
  /** Backup attempts for stragglers (default on). */
  speculation?: Speculation | false;
  /** Workers use the same Docker Engine as whoever creates tasks (the embedded case): images need no upload. */
  sharesEngine?: boolean;
  /** How long an ended task's output stays in the spool (absent: for ever; see Retention). */
  keepOutputMs?: number;
  /** A chunk whose attempts were lost with their worker this many times fails its task (default 3). */
  maxLost?: number;
  /**
   * Survive a power loss, not only a crash: outputs and spooled input are fsynced before the ledger
   * records them, and every ledger transaction is synced (see Ledger). Costs the disk's write-back.
   */
  durable?: boolean;
  /**
   * What a program wrote to stderr under "stderr": "log", as each of its attempts ends (the ledger
   * keeps it either way; the embedded run prints it for the person at the terminal).
   */
  programStderr?(written: { task: string; chunk: number; attempt: number; stderr: string }): void;
  /** Where s3:// input is (absent: AWS_ENDPOINT_URL, or AWS itself); credentials come from the AWS chain. */
  s3?: S3Options;
}

export const DEFAULT_MAX_LOST = 3;

export interface NewTaskRequest {
  bachfile: Bachfile;
  bundleHash: string;
  /** The container image's digest ("" runs plain processes); the coordinator must hold the image. */
  imageId: string;
  parallelism: number;
  chunkSize: number | null;
  /**
   * A file is read in place. `sample` is a remote CLI's proof that it sees the same file (see
   * core/file-sample.ts): when this coordinator's sample of the path differs, or it cannot read it,
   * the task takes streamed input instead. null: the CLI runs this coordinator inside itself.
   */
  input: { kind: "stream" } | { kind: "path"; path: string; sample: string | null } | { kind: "objects"; sources: string[]; localFiles?: boolean };
  dataStreams: number;
}

/** What the coordinator made of a new task's input; `why`: the reason input offered as objects is streamed. */
export interface NewTask {
  id: string;
  input: "path" | "stream" | "objects";
  why?: string;
}

interface LiveTask {
  row: TaskRow;
  bachfile: Bachfile;
  sizer: ChunkSizer;
  intake: Intake;
  running: number;
  needs: Needs;
  /** Settles once a restarted task's intake has its spooled bytes back (at once for a new task). */
  ready: Promise<void>;
  /** Seconds per input byte of recent committed attempts: what a straggler is measured against. */
  pace: number[];
  /** Since when it has had pending chunks and none running: no worker could take one (0: it is not waiting). */
  waitingSince: number;
  /** The input's size when it is a file or objects (a stream's is known once it ends). */
  totalBytes: number | null;
  /** Input that workers read themselves: its objects, and the URLs they read them by. */
  objects: { list: InputObject[]; urls: PresignedUrls } | null;
}

/** Unstarted chunks a task may have planned ahead of its slots before the reader is held back. */
const PLAN_AHEAD = 2;

export class Coordinator {
  readonly ledger: Ledger;
  readonly spool: Spool;
  /** Where chunk bytes and attempt outputs are, for the servers that move them. */
  readonly data: ChunkData;
  /** The TCP data port once it listens (see data-server), told to workers as they join; 0: none. */
  dataPort = 0;
  private readonly live = new Map<string, LiveTask>();
  private s3Store: Promise<S3Store> | null = null;
  /** The connected workers; the server reports their heartbeats and announcements here directly. */
  readonly workers: Workers;
  private readonly changes = new EventEmitter();
  private dispatchQueued = false;
  /** Output streams open per task (retention never removes an output while it is read). */
  private readonly readers = new Map<string, number>();
  private readonly retention: Retention | null;
  private readonly maxLost: number;
  private closed = false;
  /** Tasks whose failure could not be written yet (a full disk): task -> its error. */
  private readonly unrecorded = new Map<string, string>();
  private readonly lock: DataDirLock;
  /** Map-reduce tasks whose reduce phase is being planned (reading their runs). */
  private readonly planning = new Set<string>();

  constructor(private readonly opts: CoordinatorOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.maxLost = opts.maxLost ?? DEFAULT_MAX_LOST;
    // Before anything of the data dir is read or written: a second coordinator on it is refused.
    this.lock = DataDirLock.take(opts.dataDir);
    this.ledger = new Ledger(path.join(opts.dataDir, "ledger.sqlite"), Date.now, { durable: opts.durable });
    this.spool = new Spool(path.join(opts.dataDir, "spool"));
    // A worker that cannot reach a task's objects gets their bytes through this coordinator instead.
    this.data = new ChunkData(this.ledger, this.spool, (row, chunk) => {
      const t = this.live.get(row.id);
      if (!t?.objects) return null;
      const pieces = this.piecesFor(t.objects, chunk, t.bachfile.input !== "objects");
      return () => piecesBytes(pieces, t.bachfile.delimiter, t.bachfile.input === "objects");
    });
    this.changes.setMaxListeners(0);
    this.workers = new Workers(
      this.ledger,
      { heartbeatMs: opts.heartbeatMs, lostAfterMs: opts.lostAfterMs, log: opts.log, spoolProbe: { file: this.spool.probeFile, token: this.spool.probeToken }, dataPort: () => this.dataPort },
      {
        silent: (session, reason) => this.workerGone(session, reason),
        // Time alone can make an attempt a straggler: look again.
        tick: () => {
          this.recordUnrecorded();
          if (this.unrecorded.size === 0) this.spool.keepReserve();
          if (this.live.size > 0) this.queueDispatch();
        },
      },
    );
    this.carryOnWhatTheLastRunLeftOpen();
    const keep = opts.keepOutputMs;
    this.retention = keep === undefined ? null : new Retention(this.ledger, this.spool, keep, (task) => this.forget(task), opts.log);
  }

  /**
   * Tasks still running in the ledger belong to a coordinator process that stopped before they ended
   * (killed, or its machine restarted): they carry on from the ledger and the spool. Attempts that were
   * running are lost and their chunks run again; planning continues after the last recorded chunk;
   * streamed input continues after the last spooled byte, when its CLI reconnects.
   */
  private carryOnWhatTheLastRunLeftOpen(): void {
    for (const w of this.ledger.workers().filter((w) => w.state === "connected")) this.ledger.workerGone(w.id, WorkerState.lost, "coordinator restarted", null);
    for (const row of this.ledger.runningTasks()) {
      for (const a of this.ledger.runningAttemptsOfTask(row.id)) {
        this.ledger.endAttempt({ attempt: a.id, by: null, to: "lost", end: { ...noEnd, kind: OutcomeKind.lost, reason: "the coordinator restarted" }, limits: { retries: 0, maxLost: this.maxLost }, blameless: true });
        this.spool.removeQuietly(this.spool.attemptOutput(a.id));
      }
      let bachfile: Bachfile;
      try {
        bachfile = checkBachfileJson(row.bachfile);
      } catch (err) {
        // A task stored by an older or damaged ledger must not stop this coordinator from starting.
        this.opts.log.error({ task: row.id, err: (err as Error).message }, "a task left open has an unreadable bachfile; failing it");
        this.ledger.finishTask(row.id, TaskState.failed, `its stored bachfile cannot be read: ${(err as Error).message}`);
        continue;
      }
      const resume = { index: row.chunks_planned, offset: this.ledger.plannedEnd(row.id), openChunkSize: row.open_chunk_size, spooled: row.spooled };
      const totalBytes =
        row.input_kind === "path" ? (fs.statSync(row.input_path, { throwIfNoEntry: false })?.size ?? null) : row.input_kind === "objects" ? this.ledger.inputs(row.id).reduce((n, o) => n + o.size, 0) : null;
      const t = this.goLive(this.ledger.task(row.id), bachfile, totalBytes, row.input_done === 1 ? null : resume);
      for (const a of this.ledger.attempts(row.id)) {
        if (a.state === AttemptState.succeeded && a.bytes_in !== null && a.seconds !== null) observe(t, a.bytes_in, a.seconds);
      }
      this.opts.log.info({ task: row.id, chunks: row.chunks_planned, committed: row.commits, inputDone: row.input_done === 1 }, "carrying on a task the last run left open");
      this.finishIfDone(row.id);
    }
  }

  /** A task the coordinator runs: its sizer, its intake (resumed after a restart), its needs. */
  private goLive(row: TaskRow, bachfile: Bachfile, totalBytes: number | null, resume: IntakeResume | null): LiveTask {
    const id = row.id;
    const slots = row.parallelism > 0 ? row.parallelism : Math.max(1, this.workers.totalSlots());
    const explicit = row.chunk_size > 0 ? row.chunk_size : bachfile.chunkSize === "auto" ? null : bachfile.chunkSize;
    const sizer = new ChunkSizer({ explicit, totalBytes, slots });
    const intake = new Intake(
      id,
      bachfile.delimiter,
      sizer,
      this.ledger,
      { room: (waiting) => this.roomToPlan(id, slots, waiting), recorded: () => this.afterInput(id), failed: (err) => this.taskBroke(id, "cutting the input into chunks", err) },
      resume,
      this.opts.durable === true,
    );
    const list = row.input_kind === "objects" ? this.ledger.inputs(id) : [];
    const objects = row.input_kind === "objects" ? { list, urls: new PresignedUrls(list, () => this.s3(), presignSeconds(), (err) => this.taskBroke(id, "presigning its objects' URLs", err)) } : null;
    const t: LiveTask = { row, bachfile, sizer, intake, running: 0, needs: needsOf(bachfile, row.image_id), ready: Promise.resolve(), pace: [], waitingSince: 0, totalBytes, objects };
    this.live.set(id, t);
    objects?.urls.start().then(
      () => this.queueDispatch(),
      (err: Error) => this.taskBroke(id, "presigning its objects' URLs", err),
    );
    if (row.input_done === 1) return t;
    if (row.input_kind === "objects") {
      intake.planObjects(list, (o) => bachfile.input === "objects" || readWhole(o)).catch((err: Error) => this.taskBroke(id, "planning its chunks", err));
    } else if (row.input_kind === "path") {
      intake.scanFile(row.input_path).catch((err: Error) => this.taskBroke(id, `reading ${row.input_path}`, err));
    } else if (resume) {
      t.ready = intake.resumeStream((seq) => this.spool.inputChunk(id, seq)).then((kept) => {
        this.opts.log.info({ task: id, chunk: resume.index, kept, offset: intake.received }, "streamed input resumes after the last spooled byte");
      });
      t.ready.catch((err: Error) => this.taskBroke(id, "reading back the spooled input", err));
    }
    return t;
  }

  /** Where the task's streamed input continues, for a CLI that lost its coordinator. */
  async inputStatus(task: string): Promise<{ offset: number; inputDone: boolean }> {
    const row = this.ledger.findTask(task);
    if (!row) throw new InputError(`no task ${task}`);
    const t = this.live.get(task);
    if (!t) return { offset: row.bytes_in, inputDone: true };
    await t.ready;
    return { offset: t.intake.received, inputDone: t.intake.finished };
  }

  close(): void {
    // Streams the server cuts on its way down report their end after this: nothing is left to record.
    this.closed = true;
    this.retention?.stop();
    this.workers.close("coordinator stopping");
    this.ledger.close();
    this.lock.release();
  }

  // --- tasks ---

  /** Creates a task; says whether it reads its input in place, has workers read it, or takes it streamed. */
  async createTask(req: NewTaskRequest): Promise<NewTask> {
    // A negative cap would leave the task with no room for any attempt: it would wait for ever.
    if (!Number.isSafeInteger(req.parallelism) || req.parallelism < 0) throw new InputError(`parallelism ${req.parallelism}: expected a whole number of at least 0 (0: no cap)`, { field: "parallelism" });
    if (!Number.isSafeInteger(req.dataStreams) || req.dataStreams < 0) throw new InputError(`data streams ${req.dataStreams}: expected a whole number of at least 0 (0: no cap)`, { field: "dataStreams" });
    if (!this.spool.hasBundle(req.bundleHash)) throw new InputError(`bundle ${req.bundleHash.slice(0, 12)} was not uploaded`);
    if (req.imageId && !this.opts.sharesEngine && !this.spool.hasImage(req.imageId)) throw new InputError(`image ${req.imageId.slice(0, 19)} was not uploaded`);
    let totalBytes: number | null = null;
    let why: string | undefined;
    let objects: InputObject[] = [];
    let input = req.input.kind === "path" && req.input.sample !== null && fileSample(req.input.path) !== req.input.sample ? { kind: "stream" as const } : req.input;
    if (input.kind === "objects") {
      const resolved = await resolveSources(input.sources, req.bachfile.delimiter, req.bachfile.input, () => this.s3(), input.localFiles === true);
      if (resolved.kind === "stream") {
        why = resolved.why;
        input = { kind: "stream" };
      } else {
        objects = resolved.objects;
        totalBytes = objects.reduce((n, o) => n + o.size, 0);
      }
    }
    if (input.kind === "path") {
      const stat = fs.statSync(input.path, { throwIfNoEntry: false });
      if (!stat?.isFile()) throw new InputError(`--data ${input.path}: no such file on the coordinator`, { path: input.path });
      totalBytes = stat.size;
    }
    const id = `t-${new Date().toISOString().slice(0, 10).replace(/-/g, "")}-${randomBytes(3).toString("hex")}`;
    const reduce = req.bachfile.reduce;
    // Hash order partitions map output as it is made: their number is decided now, from the input's size.
    const partitions = reduce?.order === "hash" ? this.partitionsFor(reduce, totalBytes ?? 0, req.parallelism) : 0;
    this.ledger.createTask({
      id,
      name: req.bachfile.logicalName,
      bachfile: JSON.stringify(req.bachfile),
      bundleHash: req.bundleHash,
      imageId: req.imageId,
      parallelism: req.parallelism,
      chunkSize: req.chunkSize ?? 0,
      inputKind: input.kind,
      inputPath: input.kind === "path" ? input.path : "",
      dataStreams: req.dataStreams,
      reduce: reduce ? { partitions } : undefined,
      objects,
    });
    this.opts.log.info({ task: id, name: req.bachfile.logicalName, input: input.kind === "objects" ? { kind: "objects", objects: objects.length, bytes: totalBytes } : input, why }, "task created");
    this.goLive(this.ledger.task(id), req.bachfile, totalBytes, null);
    return { id, input: input.kind, why };
  }

  /** The S3 client, made at the first s3:// input (loading the AWS SDK only then). */
  private s3(): Promise<S3Store> {
    this.s3Store ??= import("../core/s3").then((m) => m.S3Store.open(this.opts.s3 ?? {}));
    // A failed start (say, no credentials) is tried again by the next task, not remembered.
    this.s3Store.catch(() => (this.s3Store = null));
    return this.s3Store;
  }

  async appendInput(task: string, offset: number, data: Buffer): Promise<void> {
    const t = this.liveTask(task);
    await t.ready;
    if (t.row.input_kind !== "stream") throw new InputError(`task ${task} reads ${t.row.input_kind === "path" ? "a file" : "objects where they live"}; it takes no streamed input`);
    await this.spooling(task, t.intake.append((seq) => this.spool.inputChunk(task, seq), offset, data));
  }

  async endInput(task: string): Promise<number> {
    const t = this.liveTask(task);
    await t.ready;
    await this.spooling(task, t.intake.endStream((seq) => this.spool.inputChunk(task, seq)));
    return t.intake.received;
  }

  /** Input that cannot be spooled (a full disk, an I/O error) fails the task, rather than leave it waiting. */
  private async spooling(task: string, work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (err) {
      if (err instanceof InputError) throw err;
      this.taskBroke(task, "spooling the input", err as Error);
      throw isDiskFull(err) ? new DiskFullError(diskFullMessage(err)) : err;
    }
  }

  /**
   * Something the task needed failed outside any caller that could answer for it: the task fails. A
   * full disk first gets back the room the task held in the spool (its input, its running attempts'
   * outputs), so the ledger can record the failure; should even that fail, it is tried again at the
   * next heartbeat check, and the coordinator stays up meanwhile.
   */
  private taskBroke(task: string, doing: string, err: Error): void {
    // A task that has ended meanwhile (its intake closed under a reader) has nothing left to fail.
    if (this.ledger.findTask(task)?.state !== TaskState.running && !this.unrecorded.has(task)) return;
    const full = isDiskFull(err);
    const error = full ? `${doing} failed: ${diskFullMessage(err)}` : `${doing} failed: ${err.message}`;
    this.opts.log.error({ task, err: err.message }, `${doing} failed: the task fails`);
    if (full) {
      this.spool.releaseReserve();
      this.spool.removeInput(task);
      for (const a of this.ledger.runningAttemptsOfTask(task)) this.spool.removeQuietly(this.spool.attemptOutput(a.id));
    }
    try {
      this.failTask(task, error);
      this.unrecorded.delete(task);
    } catch (again) {
      if (!isDiskFull(again)) throw again;
      this.unrecorded.set(task, error);
      this.opts.log.error({ task, err: (again as Error).message }, "the data dir is still full: the task's failure is recorded as soon as there is room");
    }
  }

  /** Failures taskBroke could not record for lack of room: tried again at each heartbeat check. */
  private recordUnrecorded(): void {
    for (const [task, error] of [...this.unrecorded]) {
      try {
        this.failTask(task, error);
        this.unrecorded.delete(task);
      } catch (err) {
        if (!isDiskFull(err)) throw err;
        return;
      }
    }
  }

  cancelTask(task: string): void {
    const row = this.ledger.findTask(task);
    if (!row) throw new InputError(`no task ${task}`);
    if (row.state !== TaskState.running) return;
    this.endTask(task, TaskState.cancelled, "cancelled by the user");
  }

  /**
   * The task's committed output, chunk by chunk, waiting for commits, until the task ends. `partial`
   * (in input order): once the task has ended, each run of chunks that never committed is a gap event
   * and the chunks after it follow, instead of the output ending at the first.
   */
  async *streamOutput(task: string, fromChunk: number, keepOrder: boolean, skipBytes = 0, partial = false): AsyncGenerator<OutputEvent> {
    // A reader's own numbers: a negative skip would reach a file read as a position (a bug's stack, not a refusal).
    if (!Number.isSafeInteger(fromChunk) || fromChunk < 0) throw new InputError(`fromChunk ${fromChunk}: expected a whole number of at least 0`);
    if (!Number.isSafeInteger(skipBytes) || skipBytes < 0) throw new InputError(`skipBytes ${skipBytes}: expected a whole number of at least 0`);
    const found = this.ledger.findTask(task);
    if (!found) throw new InputError(`no task ${task}`);
    if (found.output_removed_at !== null) {
      const when = new Date(found.output_removed_at).toISOString();
      throw new InputError(`the output of task ${task} was removed at ${when}, after it had been kept for bach-coordinator --keep-output (its report remains)`);
    }
    this.readers.set(task, (this.readers.get(task) ?? 0) + 1);
    try {
      yield* this.outputOf(task, fromChunk, keepOrder && !partial ? "order" : partial ? "partial" : "commits", skipBytes);
    } finally {
      const left = (this.readers.get(task) ?? 1) - 1;
      if (left > 0) this.readers.set(task, left);
      else this.readers.delete(task);
    }
  }

  private async *outputOf(task: string, fromChunk: number, order: "order" | "commits" | "partial", skipBytes: number): AsyncGenerator<OutputEvent> {
    let next = fromChunk;
    let skip = skipBytes;
    let lastProgress = 0;
    // One buffer for all the output read (see OutputEvent: a reader is done with it when it asks for more).
    const buffer = Buffer.allocUnsafeSlow(FRAME_BYTES);
    // A map-reduce task's output is its reduce partitions', in partition order, once they are planned.
    if (this.ledger.task(task).reduce === 1 && order === "commits") order = "order";
    for (;;) {
      const row = this.ledger.task(task);
      if (row.reduce === 1) {
        if (row.phase === "map" && row.state === TaskState.running && !this.unrecorded.has(task)) {
          if (Date.now() - lastProgress >= 250) {
            lastProgress = Date.now();
            yield this.progress(row);
          }
          await this.changed(task, 250);
          continue;
        }
        if (row.map_chunks !== null && next < row.map_chunks) {
          next = row.map_chunks;
          skip = 0;
        }
      }
      const chunk = order === "commits" ? this.ledger.chunkByCommitOrder(task, next) : this.ledger.findChunk(task, next);
      if (chunk && chunk.state === ChunkState.committed && chunk.committed_attempt !== null) {
        // Exactly the committed length: bytes a program's leftover process wrote after its commit never count.
        for await (const data of filePieces(this.spool.attemptOutput(chunk.committed_attempt), skip, chunk.bytes_out ?? 0, FRAME_BYTES, buffer)) {
          yield { kind: "data", data };
        }
        skip = 0;
        yield { kind: "chunk-done", seq: chunk.seq };
        next++;
        continue;
      }
      if (row.state !== TaskState.running) {
        if (order === "partial" && row.reduce === 1) {
          // Partitions have no input bytes of their own: a gap of them has none (offset -1); a task
          // that ended in its map phase has no partitions at all (to -1).
          if (row.map_chunks === null) yield { kind: "gap", from: 0, to: -1, offset: -1, end: -1, state: row.state };
          else if (next < row.chunks_planned) {
            const to = (this.ledger.nextCommitted(row.id, next) ?? row.chunks_planned) - 1;
            yield { kind: "gap", from: next - row.map_chunks, to: to - row.map_chunks, offset: -1, end: -1, state: row.state };
            next = to + 1;
            continue;
          }
        } else if (order === "partial" && next < row.chunks_planned) {
          const gap = this.gapFrom(row, next);
          yield gap;
          next = gap.to + 1;
          skip = 0;
          continue;
        }
        if (order === "partial" && row.input_done === 0 && row.reduce === 0) {
          yield { kind: "gap", from: row.chunks_planned, to: -1, offset: this.ledger.plannedEnd(task), end: -1, state: row.state };
        }
        yield { kind: "end", state: row.state, error: row.error ?? "", tally: this.ledger.tally(task) };
        return;
      }
      const unrecorded = this.unrecorded.get(task);
      if (unrecorded !== undefined) {
        // Failed, though the ledger has no room to say so yet.
        yield { kind: "end", state: TaskState.failed, error: unrecorded, tally: this.ledger.tally(task) };
        return;
      }
      if (Date.now() - lastProgress >= 250) {
        lastProgress = Date.now();
        yield this.progress(row);
      }
      await this.changed(task, 250);
    }
  }

  /** The run of chunks from `from` of an ended task that never committed, up to the next that did. */
  private gapFrom(row: TaskRow, from: number): Extract<OutputEvent, { kind: "gap" }> {
    const to = (this.ledger.nextCommitted(row.id, from) ?? row.chunks_planned) - 1;
    const last = this.ledger.chunk(row.id, to);
    return { kind: "gap", from, to, offset: this.ledger.chunk(row.id, from).offset, end: last.offset + last.length, state: row.state };
  }

  private progress(row: TaskRow): OutputEvent {
    const t = this.live.get(row.id);
    // A chunk with a backup counts once, by its furthest attempt.
    const fed = new Map<number, number>();
    for (const w of this.workers.all()) {
      // Input bytes: a reduce partition's attempts read runs, not input.
      for (const r of w.running.values()) if (r.task === row.id && (row.map_chunks === null || r.seq < row.map_chunks)) fed.set(r.seq, Math.max(fed.get(r.seq) ?? 0, Math.min(r.fed, r.bytes)));
    }
    let processed = this.ledger.committedBytes(row.id);
    for (const n of fed.values()) processed += n;
    const waitingSince = t?.waitingSince ?? 0;
    return {
      kind: "progress",
      bytesIn: row.bytes_in,
      inputDone: row.input_done === 1,
      planned: row.chunks_planned,
      committed: row.commits,
      running: t?.running ?? 0,
      workers: this.workers.all().length,
      waitingMs: waitingSince > 0 ? Date.now() - waitingSince : 0,
      processed,
      total: t?.totalBytes ?? (row.input_done === 1 ? row.bytes_in : null),
    };
  }

  /** Retention's purge: a task whose output someone is reading right now is left for the next sweep. */
  private forget(task: string): boolean {
    if ((this.readers.get(task) ?? 0) > 0) return false;
    this.purgeTask(task);
    return true;
  }

  /** Removes a finished task's spooled bytes (the embedded CLI does this once it has printed the output). */
  purgeTask(task: string): void {
    for (const c of this.ledger.chunks(task)) {
      if (c.committed_attempt !== null) this.spool.removeQuietly(this.spool.attemptOutput(c.committed_attempt));
    }
    this.spool.removeInput(task);
  }

  private liveTask(task: string): LiveTask {
    const t = this.live.get(task);
    if (!t) {
      const row = this.ledger.findTask(task);
      throw new InputError(row ? `task ${task} has ended (${row.state})` : `no task ${task}`);
    }
    return t;
  }

  private async changed(task: string, timeoutMs: number): Promise<void> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      await once(this.changes, task, { signal: ac.signal });
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private notify(task: string): void {
    this.changes.emit(task);
  }

  private async roomToPlan(task: string, slots: number, waiting?: () => Promise<void>): Promise<void> {
    const full = () => this.live.has(task) && this.ledger.pendingChunks(task, slots + PLAN_AHEAD).length >= slots + PLAN_AHEAD;
    if (full()) {
      await waiting?.();
      while (full()) await this.changed(task, 1000);
    }
    if (!this.live.has(task)) throw new InputError(`task ${task} has ended`);
  }

  private afterInput(task: string): void {
    this.notify(task);
    this.finishIfDone(task);
    this.queueDispatch();
  }

  private finishIfDone(task: string): void {
    const row = this.ledger.task(task);
    if (row.state === TaskState.running && row.input_done === 1 && row.commits === row.chunks_planned) {
      if (row.reduce === 1 && row.phase === "map") this.planReduce(row);
      else this.endTask(task, TaskState.succeeded, null);
    }
  }

  /** The partitions a reduce block asks for: its number, or "auto" from `bytes` and the slots the task may use. */
  private partitionsFor(reduce: Reduce, bytes: number, parallelism: number): number {
    return reduce.partitions === "auto" ? autoPartitions(bytes, parallelism > 0 ? parallelism : this.workers.totalSlots()) : reduce.partitions;
  }

  /**
   * Every map chunk of a map-reduce task has committed: its reduce partitions are planned from the
   * committed runs (see reduce-plan) and recorded in one transaction; a restart that finds the map
   * phase over and nothing planned plans again.
   */
  private planReduce(row: TaskRow): void {
    const t = this.live.get(row.id);
    const reduce = t?.bachfile.reduce;
    if (!t || !reduce || this.planning.has(row.id)) return;
    this.planning.add(row.id);
    const runs: MapRun[] = [];
    for (const c of this.ledger.chunks(row.id)) {
      if (c.phase !== "map" || c.committed_attempt === null) continue;
      const index = (c.run_index ? JSON.parse(c.run_index) : { partitionEnds: [], marks: [] }) as RunIndex;
      runs.push({ seq: c.seq, file: this.spool.attemptOutput(c.committed_attempt), bytes: c.bytes_out ?? 0, index });
    }
    const mapOutput = runs.reduce((n, r) => n + r.bytes, 0);
    const plan = reduce.order === "hash" ? Promise.resolve(planHash(row.partitions, runs)) : planTotal(this.partitionsFor(reduce, mapOutput, row.parallelism), runs);
    plan
      .then((p) => {
        if (!this.ledger.planReduce(row.id, p.partitions, p.ranges)) return;
        this.opts.log.info({ task: row.id, partitions: p.partitions.length, mapOutput }, "map phase done: reduce partitions planned");
        this.notify(row.id);
        this.queueDispatch();
      })
      .catch((err: Error) => this.taskBroke(row.id, "planning the reduce phase", err))
      .finally(() => this.planning.delete(row.id));
  }

  private failTask(task: string, error: string): void {
    if (this.ledger.findTask(task)?.state === TaskState.running) this.endTask(task, TaskState.failed, error);
  }

  private endTask(task: string, state: TaskState, error: string | null): void {
    this.taskEnded(task, { state, error }, this.ledger.finishTask(task, state, error));
  }

  /** What follows a task's end in the ledger: its running attempts stopped, workers told, readers woken. */
  private taskEnded(task: string, end: TaskEnd, cancelled: AttemptRow[]): void {
    this.stopAttempts(cancelled, `task ${end.state}`);
    // Workers drop what they kept for the task (its containers).
    for (const w of this.workers.all()) w.link.taskEnded(task);
    const t = this.live.get(task);
    t?.objects?.urls.stop();
    this.live.delete(task);
    t?.intake.close();
    if (t?.row.input_kind === "stream") this.spool.removeInput(task);
    this.opts.log.info({ task, state: end.state, error: end.error }, "task ended");
    this.notify(task);
    this.queueDispatch();
  }

  /** Attempts the ledger has cancelled: stopped on their workers, their outputs removed. */
  private stopAttempts(attempts: AttemptRow[], reason: string): void {
    for (const a of attempts) {
      const w = this.workers.get(a.worker_id);
      if (w?.running.delete(a.id)) {
        const t = this.live.get(a.task_id);
        if (t) t.running--;
      }
      w?.link.cancel(a.id, reason);
      this.spool.removeQuietly(this.spool.attemptOutput(a.id));
    }
  }

  // --- workers (their sessions live in Workers; here, what their coming and going does to chunks) ---

  workerJoined(hello: WorkerHello, link: WorkerLink): WorkerSession {
    const { session, replaced } = this.workers.join(hello, link);
    // The same worker again on a new connection: what its old session ran is lost with it.
    if (replaced) this.loseAttemptsOf(replaced, "replaced by a new connection of the same worker");
    this.queueDispatch();
    return session;
  }

  /** The worker said whether it reads this spool in place: it may take chunks now. */
  workerProbed(session: WorkerSession, sharesSpool: boolean): void {
    this.workers.probed(session, sharesSpool);
    this.queueDispatch();
  }

  /**
   * The worker's stream ended (`cleanly`: the worker closed it) or it fell silent: its running
   * attempts are lost and run again elsewhere.
   */
  workerGone(session: WorkerSession, reason: string, cleanly = false): void {
    if (this.closed) return;
    const state = this.workers.remove(session, reason, cleanly);
    if (!state) return;
    this.loseAttemptsOf(session, reason, state);
    this.queueDispatch();
  }

  private loseAttemptsOf(session: WorkerSession, reason: string, state: "left" | "lost" = "lost"): void {
    for (const attempt of [...session.running.keys()]) {
      // A draining worker's unfinished chunks were handed back: preemption is not the chunk's fault.
      this.finishAttempt(session, attempt, "lost", { ...noEnd, kind: OutcomeKind.lost, reason: `worker ${session.id} ${state}: ${reason}` }, session.draining);
    }
    session.running.clear();
  }

  /**
   * A heartbeat lists what the worker runs: an attempt the ledger gave this session that it no longer
   * runs (its result was lost, or it never arrived) is lost; an attempt it runs that is not its own
   * running attempt in the ledger is stopped there. An attempt is only missed once the worker has had
   * two heartbeats' time to hear of it.
   */
  heartbeat(session: WorkerSession, running: number[], fed: AttemptFed[] = []): void {
    const reported = new Set(running);
    for (const f of fed) {
      const r = session.running.get(f.attemptId);
      if (r && Number.isSafeInteger(f.bytes) && f.bytes >= 0) r.fed = f.bytes;
    }
    const settled = Date.now() - 2 * this.opts.heartbeatMs;
    for (const [id, r] of [...session.running]) {
      if (!reported.has(id) && r.startedAt < settled) {
        this.finishAttempt(session, id, "lost", { ...noEnd, kind: OutcomeKind.lost, reason: `worker ${session.id} no longer runs it` });
      }
    }
    for (const id of reported) {
      // Each stranger is stopped (and logged) once: a worker that goes on listing it cannot flood the log.
      if (session.running.has(id) || session.stopped.has(id)) continue;
      if (session.stopped.size >= 10_000) session.stopped.clear();
      session.stopped.add(id);
      this.opts.log.warn({ worker: session.id, attempt: id }, "a worker runs an attempt that is not its own running attempt in the ledger: stopping it");
      session.link.cancel(id, "not a running attempt of this worker");
    }
  }

  /**
   * A worker's result. It counts only when the ledger says this session owns the attempt and it is
   * still running; anything else (an unknown attempt, another worker's, one already ended) is refused
   * and logged, never thrown.
   */
  attemptResult(session: WorkerSession, r: AttemptResult): void {
    if (this.opts.durable && r.ok && session.running.has(r.attemptId)) {
      // On disk before the ledger says it is committed; meanwhile the attempt stays running, and the
      // ledger fences whatever happened to it while this waited.
      const file = this.spool.attemptOutput(r.attemptId);
      syncToDisk(file).then(
        () => this.judge(session, r),
        (err: Error) => this.judge(session, { ...r, ok: false, kind: OutcomeKind.input, retryable: true, reason: `the output could not be synced to disk: ${err.message}` }),
      );
      return;
    }
    this.judge(session, r);
  }

  private judge(session: WorkerSession, r: AttemptResult): void {
    const kind = outcomeKindOf(r.kind);
    let end: AttemptEnd = {
      // Only an ok result commits, and only once its output is checked below: one that is not ok fails,
      // whatever kind it names ("ok" included).
      kind: r.ok ? OutcomeKind.ok : kind === OutcomeKind.ok ? OutcomeKind.exit : kind,
      retryable: r.ok || r.kind === "" ? true : r.retryable,
      exitCode: r.exitCode,
      reason: r.reason,
      stderr: r.stderr,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      seconds: r.seconds,
    };
    if (end.kind === OutcomeKind.ok) {
      // Whatever the session's own bookkeeping says: nothing commits without its whole output.
      const size = fileSize(this.spool.attemptOutput(r.attemptId));
      if (size !== r.bytesOut) end = { ...end, kind: OutcomeKind.input, retryable: true, reason: `output incomplete: ${size ?? "no"} bytes of ${r.bytesOut} arrived` };
    }
    if (end.kind === OutcomeKind.ok) {
      const run = this.runIndexOf(session, r);
      if (typeof run === "string") end = { ...end, kind: OutcomeKind.input, retryable: true, reason: `the map output's run cannot be used: ${run}` };
      else end = { ...end, run };
    }
    this.finishAttempt(session, r.attemptId, end.kind === OutcomeKind.ok ? "succeeded" : "failed", end);
    this.queueDispatch();
  }

  /** A map attempt's run index, checked against its output (null: the attempt makes no run; a string: why it is unusable). */
  private runIndexOf(session: WorkerSession, r: AttemptResult): RunIndex | string | null {
    const running = session.running.get(r.attemptId);
    const t = running ? this.live.get(running.task) : undefined;
    const reduce = t?.bachfile.reduce;
    if (!running || !t || !reduce || this.ledger.findChunk(running.task, running.seq)?.phase !== "map") return null;
    return checkRunIndex({ partitionEnds: r.partitionEnds, marks: r.marks }, r.bytesOut, reduce.order, t.row.partitions);
  }

  /** Ends an attempt in the ledger as `session` reports it, and does what the ledger says follows. */
  private finishAttempt(session: WorkerSession, attempt: number, to: "succeeded" | "failed" | "lost", end: AttemptEnd, blameless = false): void {
    const running = session.running.get(attempt);
    const t = running ? this.live.get(running.task) : undefined;
    const retries = t?.bachfile.retries ?? 0;
    let f: AttemptFinish;
    try {
      f = this.ledger.endAttempt({ attempt, by: { worker: session.id, session: session.epoch }, to, end, limits: { retries, maxLost: this.maxLost }, blameless });
    } catch (err) {
      if (!isDiskFull(err) || !running) throw err;
      // Nothing was recorded: the attempt is still running in the ledger, and its task fails for room.
      session.running.delete(attempt);
      this.spool.removeQuietly(this.spool.attemptOutput(attempt));
      this.taskBroke(running.task, `recording attempt ${attempt}`, err as Error);
      return;
    }
    if (f.kind === "refused") {
      this.opts.log.warn({ worker: session.id, attempt, why: f.why }, "attempt result refused");
      if (f.dropOutput) this.spool.removeQuietly(this.spool.attemptOutput(attempt));
      return;
    }
    session.running.delete(attempt);
    if (t) t.running--;
    // An attempt that fails its chunk has its stderr quoted whole in the task's failure instead.
    const failsChunk = f.kind === "ended" && f.chunk === "failed";
    if (t?.bachfile.stderr === "log" && end.stderr.trim() && !failsChunk) this.opts.programStderr?.({ task: f.task, chunk: f.seq, attempt, stderr: end.stderr });
    if (f.kind === "committed") {
      // A chunk's pace (and the sizer's measure) is its map program's: a reduce partition's input is runs.
      if (t && this.ledger.findChunk(f.task, f.seq)?.phase === "map") observe(t, end.bytesIn, end.seconds);
      this.stopAttempts(f.stop, `attempt ${attempt} committed the chunk first`);
      // The last map chunk of a map-reduce task: its reduce phase comes next.
      if (!f.taskEnd && t?.bachfile.reduce) this.finishIfDone(f.task);
    } else {
      this.spool.removeQuietly(this.spool.attemptOutput(attempt));
      const next = f.chunk === "failed" ? "the chunk failed" : f.chunk === "pending" ? "the chunk runs again" : "other attempts run the chunk";
      this.opts.log.warn({ task: f.task, chunk: f.seq, attempt, reason: end.reason, kind: end.kind }, `attempt ${to}: ${next}`);
    }
    if (f.taskEnd) this.taskEnded(f.task, f.taskEnd, f.stop);
    else this.notify(f.task);
  }

  /** Proof that a connection asking for an attempt's chunk or sending its output is the attempt's worker. */
  attemptKey(attempt: number): string {
    return this.data.keyOf(attempt);
  }

  // --- the one dispatch point ---

  queueDispatch(): void {
    if (this.dispatchQueued) return;
    this.dispatchQueued = true;
    setImmediate(() => {
      this.dispatchQueued = false;
      try {
        this.dispatch();
      } catch (err) {
        // Only a bug gets here (assign handles a full disk): it is logged loudly, and the next event dispatches again.
        this.opts.log.error({ err: (err as Error).stack }, "dispatch failed");
      }
    });
  }

  private dispatch(): void {
    const candidates = this.workers.candidates();
    for (const t of [...this.live.values()]) {
      const why = neverFits(candidates, t.needs);
      if (why) this.failTask(t.row.id, why);
    }
    this.place();
    this.noteWaiting();
  }

  /**
   * A task with chunks to run and none running, after placing, waits for a worker: none is connected,
   * or every one is busy, draining, or short of what it asks. Its CLI is told how long (see progress).
   */
  private noteWaiting(): void {
    const now = Date.now();
    for (const t of this.live.values()) {
      const waiting = t.running === 0 && this.ledger.pendingChunks(t.row.id, 1).length > 0;
      t.waitingSince = waiting ? t.waitingSince || now : 0;
    }
  }

  /** Free slots take pending chunks (see placeChunks), then backups of stragglers. */
  private place(): void {
    const workers = this.workers.views();
    const free = workers.reduce((n, w) => n + Math.max(0, w.freeSlots), 0);
    if (free === 0) return;
    const tasks: TaskView[] = [];
    for (const t of this.live.values()) {
      const room = t.row.parallelism > 0 ? t.row.parallelism - t.running : free;
      if (room <= 0 || (t.objects && !t.objects.urls.ready)) continue;
      // A few more than the free slots: a retry waiting for another worker must not hold back the rest.
      const pending = this.ledger.pendingChunks(t.row.id, Math.min(room, free) + 16);
      // A chunk never tried failed nowhere: no query for it (this runs at every turn, for every pending chunk).
      tasks.push({ id: t.row.id, room, needs: t.needs, pending: pending.map((c) => ({ seq: c.seq, avoid: c.attempts > 0 ? this.ledger.failedOn(t.row.id, c.seq) : [] })) });
    }
    const placed = placeChunks(workers, tasks);
    for (const p of placed) this.assign(p.worker, p.task, p.seq);
    if (placed.length < free && this.opts.speculation !== false) this.speculate(this.opts.speculation ?? DEFAULT_SPECULATION);
  }

  /** Idle slots take backups of stragglers (see placeBackups). */
  private speculate(s: Speculation): void {
    const now = Date.now();
    const perChunk = new Map<string, number>();
    for (const w of this.workers.all()) for (const r of w.running.values()) perChunk.set(`${r.task}/${r.seq}`, (perChunk.get(`${r.task}/${r.seq}`) ?? 0) + 1);
    const running: RunningAttemptView[] = [];
    for (const w of this.workers.all()) {
      for (const r of w.running.values()) {
        const t = this.live.get(r.task);
        if (!t) continue;
        running.push({
          task: r.task,
          seq: r.seq,
          worker: w.id,
          elapsedMs: now - r.startedAt,
          expectedMs: t.pace.length > 0 ? median(t.pace) * r.bytes * 1000 : null,
          hasBackup: (perChunk.get(`${r.task}/${r.seq}`) ?? 0) > 1,
          taskHasRoom: t.row.parallelism === 0 || t.running < t.row.parallelism,
          needs: r.needs,
        });
      }
    }
    if (running.length === 0) return;
    for (const p of placeBackups(this.workers.views(), running, s)) this.assign(p.worker, p.task, p.seq, true);
  }

  /** The object ranges a chunk of input that workers read themselves is made of, with the URLs to read them by. */
  private piecesFor(objects: NonNullable<LiveTask["objects"]>, chunk: ChunkRow, records: boolean): Piece[] {
    return chunkPieces(objects.list, chunk.offset, chunk.length, { records, urlOf: (i) => objects.urls.urlOf(i) });
  }


  /** A reduce attempt's input: its partition's ranges of the committed map runs, in map chunk order (paths for a worker on this filesystem). */
  private reduceInput(task: string, seq: number, local: boolean): ReduceAssignment {
    const row = this.ledger.task(task);
    const partition = seq - (row.map_chunks ?? 0);
    const runs = this.ledger.shuffleOf(task, partition).map((r) => {
      const where = this.data.runOf(row, this.ledger.chunk(task, seq), r.seq);
      return { chunk: r.seq, path: local ? where.path : "", offset: r.offset, length: r.length };
    });
    return { partition, runs };
  }

  private assign(workerId: string, task: string, seq: number, backup = false): void {
    const w = this.workers.get(workerId);
    const t = this.live.get(task);
    if (!w || !t) return;
    const chunk = this.ledger.chunk(task, seq);
    let attemptId: number;
    try {
      attemptId = backup ? this.ledger.startBackupAttempt(task, seq, workerId) : this.ledger.startAttempt(task, seq, workerId);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      return this.taskBroke(task, `starting an attempt of chunk ${seq}`, err as Error);
    }
    if (backup) this.opts.log.info({ task, chunk: seq, attempt: attemptId, worker: workerId }, "backup attempt for a straggler");
    t.running++;
    // A chunk leaving pending makes room for the reader to plan more.
    this.notify(task);
    w.running.set(attemptId, { task, seq, bytes: chunk.length, startedAt: Date.now(), needs: t.needs, fed: 0 });
    const local = w.hello.localFiles;
    const reduce = chunk.phase === "reduce" ? this.reduceInput(task, chunk.seq, local) : undefined;
    w.link.assign({
      attemptId,
      taskId: task,
      chunk: seq,
      bundleHash: t.row.bundle_hash,
      bachfileJson: t.row.bachfile,
      source: t.objects && !reduce ? { path: "", offset: chunk.offset, length: chunk.length, pieces: this.piecesFor(t.objects, chunk, t.bachfile.input !== "objects") } : local && !reduce ? { ...this.data.bytesOf(t.row, chunk), pieces: [] } : { path: "", offset: chunk.offset, length: chunk.length, pieces: [] },
      outputPath: local ? this.spool.attemptOutput(attemptId) : "",
      imageId: t.row.image_id,
      key: local ? "" : this.data.keyOf(attemptId),
      partitions: t.bachfile.reduce?.order === "hash" && chunk.phase === "map" ? t.row.partitions : 0,
      reduce,
    });
  }
}

function observe(t: LiveTask, bytes: number, seconds: number): void {
  t.sizer.observe({ bytes, seconds });
  if (bytes > 0) {
    t.pace.push(seconds / bytes);
    if (t.pace.length > 50) t.pace.shift();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** What one attempt of the task takes from a worker: the bachfile's minimums, and an engine for an image. */
function needsOf(b: Bachfile, imageId: string): Needs {
  return {
    cpu: b.hardware.cpu.min,
    memoryMb: b.hardware.memory.min,
    diskMb: Math.ceil(b.hardware.disk.min / 2 ** 20),
    gpus: b.hardware.graphics?.count ?? 0,
    docker: imageId !== "",
    steady: !b.interruptible,
  };
}

/** fsyncs a file and the folder that names it (a new file's entry must reach the disk too). */
async function syncToDisk(file: string): Promise<void> {
  for (const [name, flags] of [[file, "r"], [path.dirname(file), "r"]] as const) {
    const handle = await fs.promises.open(name, flags);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

function fileSize(file: string): number | null {
  return fs.statSync(file, { throwIfNoEntry: false })?.size ?? null;
}

