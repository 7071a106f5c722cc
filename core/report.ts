// The shape of a task report, shared by the coordinator (which builds it from the ledger) and the CLI
// (which prints it as text or JSON).

export interface WorkerShare {
  worker: string;
  name: string;
  attempts: number;
  committed: number;
  failed: number;
  lost: number;
  bytesIn: number;
  seconds: number;
  /** Input bytes per second of the attempts that committed, while they ran. */
  bytesPerSecond: number;
}

/** One attempt a report lists for what it was: failed, lost, cancelled, or a backup. */
export interface AttemptLine {
  chunk: number;
  offset: number;
  length: number;
  attempt: number;
  worker: string;
  state: string;
  reason: string;
  stderr: string;
  /** A speculative second attempt of a straggler, not a retry. */
  backup: boolean;
}

/** What one attempt wrote to stderr and did not fail for ("stderr": "log"). */
export interface AttemptStderr {
  chunk: number;
  offset: number;
  length: number;
  attempt: number;
  worker: string;
  state: string;
  /** As the worker kept it: the first 64 KiB. */
  stderr: string;
}

export interface TaskReport {
  id: string;
  name: string;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  /** When the coordinator removed the task's output from its spool (--keep-output), or null. */
  outputRemovedAt: string | null;
  wallSeconds: number;
  input: { kind: string; path: string; bytes: number; done: boolean };
  /** The cap given (-p N): at most this many attempts at once; null: none (every free slot it could get). */
  parallelism: number | null;
  /** The slots of the workers its attempts ran on (as each last said hello). */
  slots: number;
  /** The most attempts of it that ran at once. */
  peakAttempts: number;
  /** The container image's digest, or null when the task ran plain processes. */
  image: string | null;
  chunks: { planned: number; byState: Record<string, number> };
  /** Backups: second attempts of stragglers (speculative execution); they are not retries. */
  attempts: { total: number; byState: Record<string, number>; retries: number; backups: number };
  bytesOut: number;
  workers: WorkerShare[];
  /** Attempts that failed (the program's or its input's doing), newest last (at most 50). */
  failures: AttemptLine[];
  /** Attempts lost with their worker (it died, was cut off, fell silent, or left before they ended): their chunks ran again. Newest last, at most 50. */
  lost: AttemptLine[];
  /** Attempts Bach stopped: the task ended, or a rival attempt committed the chunk first. Newest last, at most 50. */
  cancelled: AttemptLine[];
  /** Backup attempts (speculative, for stragglers), however they ended. Newest last, at most 50. */
  backups: AttemptLine[];
  /**
   * Attempts that wrote to stderr and did not fail (under "stderr": "log"): how many, and the first 30
   * of them with what they wrote. A failed attempt's stderr is in `failures`.
   */
  stderr: { attempts: number; first: AttemptStderr[] };
  /** Every attempt (at most 5000), in milliseconds from the task's start: for the --html timeline. */
  timeline: TimelineBar[];
  notes: string[];
  /** A map-reduce task's two phases (null for a map-only task). */
  reduce: ReducePhase | null;
}

export interface ReducePhase {
  /** "map" until every map chunk has committed and its partitions are planned, then "reduce". */
  phase: "map" | "reduce";
  order: "hash" | "total";
  combine: boolean;
  /** Reduce partitions (0 until they are planned, for total order). */
  partitions: number;
  mapChunks: number;
  /** Bytes of the map chunks' committed runs (after the combiner, if any). */
  mapOutputBytes: number;
  /** Bytes reduce attempts read from the runs (every partition's ranges). */
  bytesShuffled: number;
  mapAttempts: number;
  reduceAttempts: number;
  /** Each partition's keys and state. */
  partitionStates: { partition: number; keys: string; state: string; bytesIn: number }[];
}

export interface TimelineBar {
  chunk: number;
  attempt: number;
  worker: string;
  state: string;
  startMs: number;
  endMs: number | null;
  bytes: number;
  backup: boolean;
  /** A map-reduce task's attempts: which phase (map-only tasks: always "map"). */
  phase: "map" | "reduce";
}

export interface TaskSummary {
  id: string;
  name: string;
  state: string;
  createdAt: string;
  bytesIn: number;
  chunksPlanned: number;
  chunksCommitted: number;
}

export interface WorkerSummary {
  id: string;
  name: string;
  host: string;
  state: string;
  slots: number;
  cpus: number;
  memoryMb: number;
  diskMb: number;
  gpus: number;
  /** A Docker Engine answered when it joined: tasks with an image may run there. */
  docker: boolean;
  interruptible: boolean;
  lastSeen: string;
}

/**
 * What a reader of a task's output receives, in order, until the task ends. A data event's bytes may
 * be a buffer used over and over: they are valid only until the reader asks for the next event.
 */
export type OutputEvent =
  | { kind: "data"; data: Buffer }
  | { kind: "chunk-done"; seq: number }
  | {
      kind: "progress";
      bytesIn: number;
      inputDone: boolean;
      planned: number;
      committed: number;
      running: number;
      /** Workers connected to the coordinator. */
      workers: number;
      /** How long the task has had chunks to run and no worker to take one (0: it is not waiting). */
      waitingMs: number;
      /** Input bytes processed: committed chunks' and what the running attempts have been fed so far. */
      processed: number;
      /** The whole input's size, once known. */
      total: number | null;
    }
  /** Only for a partial reader: chunks from..to (inclusive; to -1: never cut) never committed, input bytes offset..end (exclusive; -1: unknown). */
  | { kind: "gap"; from: number; to: number; offset: number; end: number; state: string }
  | { kind: "end"; state: string; error: string; tally: TaskTally | null };

/** What a task did, as its end says: for the summary line, and a failed task's offer of its committed chunks. */
export interface TaskTally {
  planned: number;
  committed: number;
  /** Input bytes of the committed chunks. */
  bytes: number;
  seconds: number;
  /** Attempts that failed or were lost. */
  failedAttempts: number;
  /** The committed chunks as inclusive ranges, in input order. */
  ranges: [number, number][];
}
