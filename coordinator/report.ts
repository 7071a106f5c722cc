// Builds reports from the ledger: planned against done for one task, and the task and worker lists.
// Read-only: it never changes the ledger.
import type { AttemptLine, AttemptStderr, ReducePhase, TaskReport, TaskSummary, WorkerShare, WorkerSummary } from "../core/report";
import { InputError } from "../core/errors";
import type { AttemptRow, ChunkRow, Ledger, TaskRow } from "./ledger";

/** Attempts whose stderr a report carries in full (64 KiB each at most), so it stays well under a gRPC message. */
export const REPORT_STDERR_ATTEMPTS = 30;

export function taskReport(ledger: Ledger, taskId: string | null): TaskReport {
  const task = taskId ? ledger.findTask(taskId) : ledger.latestTask();
  if (!task) throw new InputError(taskId ? `no task ${taskId}` : "no tasks yet");
  const chunks = ledger.chunks(task.id);
  const attempts = ledger.attempts(task.id);
  const chunkStates = countBy(chunks.map((c) => c.state));
  const attemptStates = countBy(attempts.map((a) => a.state));
  const known = ledger.workers();
  const workerNames = new Map(known.map((w) => [w.id, w.name]));
  const shares = new Map<string, WorkerShare>();
  for (const a of attempts) {
    const s = shares.get(a.worker_id) ?? {
      worker: a.worker_id, name: workerNames.get(a.worker_id) ?? a.worker_id,
      attempts: 0, committed: 0, failed: 0, lost: 0, bytesIn: 0, seconds: 0, bytesPerSecond: 0,
    };
    s.attempts++;
    if (a.state === "succeeded") {
      s.committed++;
      s.bytesIn += a.bytes_in ?? 0;
      s.seconds += a.seconds ?? 0;
    }
    if (a.state === "failed") s.failed++;
    if (a.state === "lost") s.lost++;
    shares.set(a.worker_id, s);
  }
  for (const s of shares.values()) s.bytesPerSecond = s.seconds > 0 ? s.bytesIn / s.seconds : 0;
  const bySeq = new Map(chunks.map((c) => [c.seq, c]));
  const lines = (keep: (a: AttemptRow) => boolean) => attempts.filter(keep).slice(-50).map((a) => attemptLine(a, bySeq));
  const ranOn = new Set(attempts.map((a) => a.worker_id));
  const wrote = attempts.filter((a) => a.state !== "failed" && a.state !== "lost" && (a.stderr ?? "").trim() !== "");
  const stderr: AttemptStderr[] = wrote.slice(0, REPORT_STDERR_ATTEMPTS).map((a) => ({
    chunk: a.seq, offset: bySeq.get(a.seq)?.offset ?? 0, length: bySeq.get(a.seq)?.length ?? 0,
    attempt: a.id, worker: a.worker_id, state: a.state, stderr: a.stderr ?? "",
  }));
  const bachfile = JSON.parse(task.bachfile) as { hardware?: { cpu?: { max: number | null }; memory?: { max: number | null } } };
  const notes: string[] = [];
  if (task.image_id) {
    notes.push(`ran in containers of image ${task.image_id.slice(0, 19)}, under the bachfile's hardware limits`);
  } else if (bachfile.hardware?.cpu?.max || bachfile.hardware?.memory?.max) {
    notes.push("process runtime: hardware.cpu.max and hardware.memory.max are not enforced on plain processes (give the task an image to enforce them)");
  }
  const outputRemovedAt = task.output_removed_at === null ? null : new Date(task.output_removed_at).toISOString();
  if (outputRemovedAt) notes.push(`its output left the spool at ${outputRemovedAt} (bach-coordinator --keep-output); bach task-output can no longer print it`);
  return {
    id: task.id,
    name: task.name,
    image: task.image_id || null,
    state: task.state,
    error: task.error,
    createdAt: new Date(task.created_at).toISOString(),
    finishedAt: task.finished_at ? new Date(task.finished_at).toISOString() : null,
    outputRemovedAt,
    wallSeconds: ((task.finished_at ?? Date.now()) - task.created_at) / 1000,
    input: { kind: task.input_kind, path: task.input_kind === "objects" ? objectsPath(ledger.inputs(task.id).map((o) => o.name)) : task.input_path, bytes: task.bytes_in, done: task.input_done === 1 },
    parallelism: task.parallelism > 0 ? task.parallelism : null,
    slots: known.filter((w) => ranOn.has(w.id)).reduce((n, w) => n + w.slots, 0),
    peakAttempts: peakAtOnce(attempts),
    chunks: { planned: task.chunks_planned, byState: chunkStates },
    attempts: {
      total: attempts.length,
      byState: attemptStates,
      retries: Math.max(0, attempts.filter((a) => a.backup === 0).length - new Set(attempts.map((a) => a.seq)).size),
      backups: attempts.filter((a) => a.backup === 1).length,
    },
    // A map-reduce task's output is its reduce partitions'; its map chunks' runs are the shuffle's.
    bytesOut: chunks.filter((c) => task.reduce === 0 || c.phase === "reduce").reduce((n, c) => n + (c.bytes_out ?? 0), 0),
    workers: [...shares.values()],
    failures: lines((a) => a.state === "failed"),
    lost: lines((a) => a.state === "lost"),
    cancelled: lines((a) => a.state === "cancelled"),
    backups: lines((a) => a.backup === 1),
    stderr: { attempts: wrote.length, first: stderr },
    timeline: attempts.slice(0, 5000).map((a) => ({
      chunk: a.seq,
      attempt: a.id,
      worker: a.worker_id,
      state: a.state,
      startMs: a.started_at - task.created_at,
      endMs: a.ended_at === null ? null : a.ended_at - task.created_at,
      bytes: bySeq.get(a.seq)?.length ?? 0,
      backup: a.backup === 1,
      phase: bySeq.get(a.seq)?.phase ?? "map",
    })),
    notes,
    reduce: reducePhase(ledger, task, chunks, attempts),
  };
}

/** What a map-reduce task's phases did (null for a map-only task). */
function reducePhase(ledger: Ledger, task: TaskRow, chunks: ChunkRow[], attempts: AttemptRow[]): ReducePhase | null {
  if (task.reduce !== 1) return null;
  const b = JSON.parse(task.bachfile) as { reduce?: { order?: "hash" | "total"; combine?: boolean } };
  const phaseOf = new Map(chunks.map((c) => [c.seq, c.phase]));
  const maps = chunks.filter((c) => c.phase === "map");
  return {
    phase: task.phase,
    order: b.reduce?.order ?? "hash",
    combine: b.reduce?.combine ?? false,
    partitions: task.partitions,
    mapChunks: maps.length,
    mapOutputBytes: maps.reduce((n, c) => n + (c.state === "committed" ? (c.bytes_out ?? 0) : 0), 0),
    bytesShuffled: ledger.bytesShuffled(task.id),
    mapAttempts: attempts.filter((a) => phaseOf.get(a.seq) !== "reduce").length,
    reduceAttempts: attempts.filter((a) => phaseOf.get(a.seq) === "reduce").length,
    partitionStates: chunks
      .filter((c) => c.phase === "reduce")
      .map((c) => ({ partition: c.seq - (task.map_chunks ?? 0), keys: c.key_range ?? "", state: c.state, bytesIn: c.length })),
  };
}

export function taskList(ledger: Ledger): TaskSummary[] {
  return ledger.tasks().map((t: TaskRow) => ({
    id: t.id, name: t.name, state: t.state, createdAt: new Date(t.created_at).toISOString(),
    bytesIn: t.bytes_in, chunksPlanned: t.chunks_planned, chunksCommitted: t.commits,
  }));
}

/**
 * The workers the ledger knows. `seenAt`: when connected workers were last heard from, from the
 * coordinator's memory (the ledger's last_seen is written only every few seconds).
 */
export function workerList(ledger: Ledger, seenAt: ReadonlyMap<string, number> = new Map()): WorkerSummary[] {
  return ledger.workers().map((w) => ({
    id: w.id, name: w.name, host: w.host, state: w.state, slots: w.slots, cpus: w.cpus,
    memoryMb: w.memory_mb, diskMb: w.disk_mb, gpus: w.gpus, docker: w.docker === 1, interruptible: w.interruptible === 1,
    lastSeen: new Date(Math.max(w.last_seen, seenAt.get(w.id) ?? 0)).toISOString(),
  }));
}

function attemptLine(a: AttemptRow, bySeq: Map<number, ChunkRow>): AttemptLine {
  return {
    chunk: a.seq, offset: bySeq.get(a.seq)?.offset ?? 0, length: bySeq.get(a.seq)?.length ?? 0,
    attempt: a.id, worker: a.worker_id, state: a.state, reason: a.reason ?? "", stderr: a.stderr ?? "", backup: a.backup === 1,
  };
}

/**
 * The most attempts running at the same time: one that ends as another starts does not overlap it;
 * one that ended within the millisecond it started still ran.
 */
function peakAtOnce(attempts: AttemptRow[]): number {
  const moments = attempts.flatMap((a) => (a.ended_at === null ? [[a.started_at, 1]] : [[a.started_at, 1], [Math.max(a.ended_at, a.started_at + 1), -1]]));
  moments.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let now = 0;
  let peak = 0;
  for (const [, step] of moments) peak = Math.max(peak, (now += step));
  return peak;
}

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** An objects task's input in a few words: its objects' names, or the first and how many more. */
function objectsPath(names: string[]): string {
  return names.length <= 3 ? names.join(" ") : `${names[0]} and ${names.length - 1} more objects`;
}
