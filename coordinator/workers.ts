// The connected workers: one session each (what it offers, what it runs, when it was last heard from),
// their heartbeats, and the views the scheduler decides from. It decides nothing about chunks: a worker
// that falls silent is reported to the coordinator, which ends its attempts.
import type { Logger } from "pino";
import type { Piece, WorkerHello } from "../core/generated/bach";
import type { Ledger } from "./ledger";
import { InputError, isDiskFull } from "../core/errors";
import { WorkerState } from "../core/states";
import { take, type Needs, type Resources, type WorkerView } from "./scheduler";

/** What a worker is told on joining: its id, the heartbeat pace, the spool probe, the data port. */
export interface Welcome {
  workerId: string;
  heartbeatMs: number;
  spoolProbe: string;
  spoolToken: string;
  dataPort: number;
}

/** One attempt for a worker to run: the chunk's bytes (a path for workers on this filesystem, else a range to fetch). */
export interface Assignment {
  attemptId: number;
  taskId: string;
  chunk: number;
  bundleHash: string;
  bachfileJson: string;
  source: { path: string; offset: number; length: number; pieces: Piece[] };
  /** Where a worker on this filesystem writes the output ("" for others: they upload it). */
  outputPath: string;
  imageId: string;
  /** What a remote worker presents to fetch the chunk and upload the output ("" for local ones). */
  key: string;
  /** A map attempt of a hash-ordered map-reduce task: the task's partitions (0 otherwise). */
  partitions: number;
  /** A reduce attempt: its partition and the ranges of the map chunks' runs it merges. */
  reduce?: ReduceAssignment;
}

export interface ReduceAssignment {
  partition: number;
  /** In map chunk order; `path` only for a worker on the coordinator's filesystem. */
  runs: { chunk: number; path: string; offset: number; length: number }[];
}

/**
 * What the coordinator can tell a connected worker. The domain calls these; the gRPC adapter
 * (server.ts) turns each into a message on the worker's stream, so no protobuf is built here.
 */
export interface WorkerLink {
  welcome(w: Welcome): void;
  assign(a: Assignment): void;
  cancel(attempt: number, reason: string): void;
  taskEnded(task: string): void;
  /** Ends the stream (a stale or silent session). */
  close(reason: string): void;
}

export interface WorkerSession {
  id: string;
  /** Which of the worker's sessions this is (the ledger's count of its hellos): attempts are fenced by it. */
  epoch: number;
  hello: WorkerHello;
  /** Its running attempts: which chunk, since when, and what each takes from it. */
  running: Map<number, RunningAttempt>;
  lastSeen: number;
  /** The last_seen the ledger has: it is written every recordSeenMs, not at every heartbeat. */
  recordedSeen: number;
  /** Leaving (SIGTERM): nothing new is placed on it. */
  draining: boolean;
  /**
   * Until then nothing is placed on it: it has yet to say whether it shares this spool, and a chunk
   * sent meanwhile would travel over the network though it could be read in place.
   */
  probingUntil: number;
  link: WorkerLink;
  /** Attempts it reported that were not its own, already told to stop. */
  stopped: Set<number>;
}

export interface RunningAttempt {
  task: string;
  seq: number;
  bytes: number;
  startedAt: number;
  needs: Needs;
  /** Input bytes the worker has fed it so far, as its last heartbeat said. */
  fed: number;
}

export interface WorkersOptions {
  /** How often workers send heartbeats. */
  heartbeatMs: number;
  /** A worker silent this long is declared lost. */
  lostAfterMs: number;
  /** How often a connected worker's last_seen is written to the ledger (default RECORD_SEEN_MS). */
  recordSeenMs?: number;
  log: Logger;
  /** Told to every worker that joins: a file of the spool and its content, to find out whether it shares this filesystem. */
  spoolProbe: { file: string; token: string };
  /** Told to every worker that joins: the TCP data port, 0 when there is none. */
  dataPort: () => number;
}

export interface WorkerEvents {
  /** A worker fell silent for lostAfterMs: its stream is closed; the coordinator ends its attempts. */
  silent(session: WorkerSession, reason: string): void;
  /** Each heartbeat check: time alone can make an attempt a straggler. */
  tick(): void;
}

/**
 * A connected worker's last_seen reaches the ledger this often, not at each heartbeat: a hundred
 * workers cost 20 small writes a second, not 100. Reports for a coordinator's connected workers take
 * the exact time from memory (seenAt); the ledger's is for readers of the file (local ledgers).
 */
export const RECORD_SEEN_MS = 5000;

/** How long a new worker may take to answer the spool probe before it gets chunks anyway (over the network). */
const PROBE_ANSWER_MS = 2000;

export class Workers {
  private readonly sessions = new Map<string, WorkerSession>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly ledger: Ledger,
    private readonly opts: WorkersOptions,
    private readonly events: WorkerEvents,
  ) {
    this.timer = setInterval(() => this.checkHeartbeats(), Math.max(50, Math.floor(opts.heartbeatMs / 2)));
    this.timer.unref();
  }

  get(id: string): WorkerSession | undefined {
    return this.sessions.get(id);
  }

  all(): WorkerSession[] {
    return [...this.sessions.values()];
  }

  totalSlots(): number {
    let n = 0;
    for (const w of this.sessions.values()) n += w.hello.slots;
    return n;
  }

  /**
   * A worker connected: it keeps its id across reconnections, with a new session number. A session of
   * the same id still open is closed and returned as `replaced`: its attempts end with it.
   */
  join(hello: WorkerHello, link: WorkerLink): { session: WorkerSession; replaced: WorkerSession | null } {
    checkHello(hello);
    const known = hello.workerId && this.ledger.workers().some((w) => w.id === hello.workerId);
    const id = known ? hello.workerId : this.ledger.nextWorkerId();
    const replaced = this.sessions.get(id) ?? null;
    if (replaced) {
      this.sessions.delete(id);
      replaced.link.close("replaced by a new connection of the same worker");
    }
    const epoch = this.ledger.workerJoined({
      id,
      name: hello.name,
      host: hello.host,
      slots: hello.slots,
      cpus: hello.cpus,
      memory_mb: hello.memoryMb,
      disk_mb: hello.diskMb,
      gpus: hello.gpus,
      docker: hello.docker ? 1 : 0,
      interruptible: hello.interruptible ? 1 : 0,
    });
    const probingUntil = hello.localFiles ? 0 : Date.now() + PROBE_ANSWER_MS;
    const now = Date.now();
    const session: WorkerSession = { id, epoch, hello, running: new Map(), lastSeen: now, recordedSeen: now, draining: false, probingUntil, link, stopped: new Set() };
    this.sessions.set(id, session);
    const { file, token } = this.opts.spoolProbe;
    link.welcome({ workerId: id, heartbeatMs: this.opts.heartbeatMs, spoolProbe: file, spoolToken: token, dataPort: this.opts.dataPort() });
    this.opts.log.info({ worker: id, session: epoch, name: hello.name, slots: hello.slots, replaced: replaced !== null }, "worker joined");
    return { session, replaced };
  }

  /** The worker answered the spool probe: when it reads this spool in place, its chunks skip the network. */
  probed(session: WorkerSession, sharesSpool: boolean): void {
    session.probingUntil = 0;
    if (!sharesSpool) return;
    session.hello.localFiles = true;
    this.opts.log.info({ worker: session.id }, "worker shares the coordinator's filesystem");
  }

  /** The worker is leaving: it finishes what it runs (or hands it back when it goes) and gets nothing new. */
  draining(session: WorkerSession, graceMs: number): void {
    session.draining = true;
    this.opts.log.info({ worker: session.id, running: session.running.size, graceMs }, "worker draining");
  }

  seen(session: WorkerSession): void {
    session.lastSeen = Date.now();
  }

  /** When each connected worker was last heard from (ms since the epoch), by id. */
  seenAt(): Map<string, number> {
    return new Map(this.all().map((w) => [w.id, w.lastSeen]));
  }

  /**
   * Forgets a session whose stream ended: it left when it was draining and closed its stream itself
   * (`cleanly`), else it was lost. Null when it was already replaced or forgotten.
   */
  remove(session: WorkerSession, reason: string, cleanly: boolean): "left" | "lost" | null {
    if (this.sessions.get(session.id) !== session) return null;
    this.sessions.delete(session.id);
    const state = cleanly && session.draining ? WorkerState.left : WorkerState.lost;
    this.record(() => this.ledger.workerGone(session.id, state, reason, session.lastSeen));
    const level = state === WorkerState.lost && session.running.size > 0 ? "warn" : "info";
    this.opts.log[level]({ worker: session.id, reason, running: session.running.size }, `worker ${state}`);
    return state;
  }

  /** What the scheduler sees of each worker: free slots (none while draining) and free resources. */
  views(): WorkerView[] {
    return this.all().map((w) => {
      const capacity = capacityOf(w.hello);
      const freeSlots = w.draining || w.probingUntil > Date.now() ? 0 : w.hello.slots - w.running.size;
      return { id: w.id, freeSlots, capacity, free: [...w.running.values()].map((r) => r.needs).reduce(take, capacity), docker: w.hello.docker, interruptible: w.hello.interruptible };
    });
  }

  /** Workers that take new chunks, as neverFits weighs them. */
  candidates(): { name: string; docker: boolean; interruptible: boolean; capacity: Resources }[] {
    return this.all()
      .filter((w) => !w.draining)
      .map((w) => ({ name: `${w.id} ${w.hello.name}`, docker: w.hello.docker, interruptible: w.hello.interruptible, capacity: capacityOf(w.hello) }));
  }

  close(reason: string): void {
    clearInterval(this.timer);
    for (const w of this.all()) w.link.close(reason);
  }

  private record(write: () => void): void {
    recordOrSkip(write, this.opts.log);
  }

  private checkHeartbeats(): void {
    const now = Date.now();
    for (const w of this.all()) {
      if (now - w.lastSeen > this.opts.lostAfterMs) {
        const reason = `no heartbeat for ${((now - w.lastSeen) / 1000).toFixed(1)} s`;
        w.link.close(reason);
        this.events.silent(w, reason);
      } else if (w.lastSeen - w.recordedSeen >= (this.opts.recordSeenMs ?? RECORD_SEEN_MS)) {
        this.record(() => this.ledger.workerSeen(w.id, w.lastSeen));
        w.recordedSeen = w.lastSeen;
      }
    }
    this.events.tick();
  }
}

/**
 * A hello's numbers are what the scheduler places work by: a worker claiming two billion slots or
 * negative memory would hold chunks it cannot run. Refused with the field, as any bad input is.
 */
function checkHello(h: WorkerHello): void {
  const bad = (field: string, value: unknown, want: string) => new InputError(`hello: ${field} ${String(value)}: ${want}`, { field });
  if (!Number.isInteger(h.slots) || h.slots < 1 || h.slots > 4096) throw bad("slots", h.slots, "expected a whole number from 1 to 4096");
  if (!Number.isFinite(h.cpus) || h.cpus <= 0 || h.cpus > 65536) throw bad("cpus", h.cpus, "expected a number of cores above 0");
  for (const [field, value] of [["memory_mb", h.memoryMb], ["disk_mb", h.diskMb], ["gpus", h.gpus]] as const) {
    if (!Number.isFinite(value) || value < 0) throw bad(field, value, "expected a number of at least 0");
  }
  if (h.name.length > 256 || h.host.length > 256 || h.workerId.length > 64) throw bad("name", h.name.slice(0, 40), "names are at most 256 characters");
}

/** Runs a write of what workers did; a full disk leaves it unwritten (it is only a record) rather than stop the coordinator. */
function recordOrSkip(write: () => void, log: Logger): void {
  try {
    write();
  } catch (err) {
    if (!isDiskFull(err)) throw err;
    log.warn({ err: (err as Error).message }, "the data dir is full: a worker's comings and goings are not recorded");
  }
}

function capacityOf(hello: WorkerHello): Resources {
  return { cpu: hello.cpus, memoryMb: hello.memoryMb, diskMb: hello.diskMb, gpus: hello.gpus };
}
