// Text forms of reports and lists for people; `--json` prints the same objects as JSON for machines.
import type { AttemptLine, TaskReport, TaskSummary, WorkerSummary } from "../core/report";
import { formatBytes } from "../core/sizes";

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function counts(byState: Record<string, number>): string {
  const parts = Object.entries(byState).map(([s, n]) => `${n} ${s}`);
  return parts.length ? parts.join(", ") : "none";
}

/** Lines of an attempt's stderr the text report and the embedded run show; `--json` has them all. */
export const STDERR_LINES_SHOWN = 10;

/**
 * The first `max` lines of a program's stderr, and, when there are more, a last line saying how many
 * and where the rest is.
 */
export function stderrLines(stderr: string, task: string, max = STDERR_LINES_SHOWN): string[] {
  const lines = stderr.trimEnd().split("\n");
  if (lines.length <= max) return lines;
  const more = lines.length - max;
  return [...lines.slice(0, max), `... ${more} more line${more === 1 ? "" : "s"} (bach task-report ${task} --json has them)`];
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** How parallel a task ran: the cap it was given (or none), the slots it ran on, the most attempts at once. */
export function parallelLine(r: TaskReport): string {
  const cap = r.parallelism === null ? "no cap" : `-p ${r.parallelism}`;
  return `${cap}: ran on ${plural(r.slots, "slot")} of ${plural(r.workers.length, "worker")}, at most ${plural(r.peakAttempts, "attempt")} at once`;
}

/**
 * Each list of attempts a report has, with the heading that says what they were. A backup in another
 * list is marked so; in its own list it need not be. Only failures show their stderr there (what
 * attempts that did not fail wrote has its own section).
 */
export function attemptLists(r: TaskReport): { title: string; why: string; lines: AttemptLine[]; markBackups: boolean; stderr: boolean }[] {
  return [
    { title: "Failed attempts", why: "", lines: r.failures, markBackups: true, stderr: true },
    { title: "Lost attempts", why: "their worker died, was cut off, fell silent or left before they ended; their chunks ran again", lines: r.lost, markBackups: true, stderr: false },
    { title: "Cancelled attempts", why: "the task ended, or a rival attempt committed the chunk first", lines: r.cancelled, markBackups: true, stderr: false },
    { title: "Backup attempts", why: "speculative second attempts of stragglers: the first to finish commits", lines: r.backups, markBackups: false, stderr: false },
  ];
}

/** One attempt of a list: `chunk 2 (bytes 200-300), attempt 7 on w2: cancelled: attempt 9 committed the chunk first`. */
export function attemptText(a: AttemptLine, markBackup: boolean): string {
  return `chunk ${a.chunk} (bytes ${a.offset}-${a.offset + a.length}), attempt ${a.attempt}${markBackup && a.backup ? " (backup)" : ""} on ${a.worker}: ${a.state}${a.reason ? `: ${a.reason}` : ""}`;
}

export function formatReport(r: TaskReport): string {
  const lines = [
    `task ${r.id} (${r.name}): ${r.state}${r.error ? ` - ${r.error.split("\n")[0]}` : ""}`,
    `  input     ${r.input.kind === "path" ? r.input.path : "streamed"}, ${formatBytes(r.input.bytes)}${r.input.done ? "" : " so far"}`,
    `  chunks    ${r.chunks.planned} planned${r.input.done ? "" : " so far"}: ${counts(r.chunks.byState)}`,
    `  attempts  ${r.attempts.total}: ${counts(r.attempts.byState)}; ${r.attempts.retries} retries; ${r.attempts.backups} backups (speculative, for stragglers)`,
    `  parallel  ${parallelLine(r)}`,
    `  output    ${formatBytes(r.bytesOut)}`,
    `  wall      ${r.wallSeconds.toFixed(1)} s (started ${r.createdAt})`,
    ...reduceLines(r),
  ];
  if (r.workers.length) {
    lines.push("", "  workers:");
    const rows = [["worker", "name", "attempts", "committed", "failed", "lost", "in", "throughput"]];
    for (const w of r.workers) {
      rows.push([w.worker, w.name, `${w.attempts}`, `${w.committed}`, `${w.failed}`, `${w.lost}`, formatBytes(w.bytesIn), w.bytesPerSecond ? `${formatBytes(w.bytesPerSecond)}/s` : "-"]);
    }
    lines.push(...table(rows).split("\n").map((l) => `    ${l}`));
  }
  for (const list of attemptLists(r).filter((l) => l.lines.length)) {
    lines.push("", `  ${list.title.toLowerCase()}${list.why ? ` (${list.why})` : ""}:`);
    for (const a of list.lines) {
      lines.push(`    ${attemptText(a, list.markBackups)}`);
      if (a.stderr.trim() && list.stderr) lines.push(...stderrLines(a.stderr, r.id, 20).map((l) => `      | ${l}`));
    }
  }
  if (r.stderr.attempts) {
    const n = r.stderr.attempts;
    lines.push("", `  stderr (${n} attempt${n === 1 ? "" : "s"} wrote to it; the first ${STDERR_LINES_SHOWN} lines of each):`);
    for (const s of r.stderr.first) {
      lines.push(`    chunk ${s.chunk} (bytes ${s.offset}-${s.offset + s.length}), attempt ${s.attempt} on ${s.worker}: ${s.state}`);
      lines.push(...stderrLines(s.stderr, r.id).map((l) => `      | ${l}`));
    }
    const left = n - r.stderr.first.length;
    if (left > 0) lines.push(`    ... and ${left} more attempt${left === 1 ? "" : "s"} (the report holds the first ${r.stderr.first.length})`);
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines.join("\n");
}

export function formatTasks(tasks: TaskSummary[]): string {
  if (!tasks.length) return "no tasks";
  return table([
    ["task", "name", "state", "created", "input", "chunks"],
    ...tasks.map((t) => [t.id, t.name, t.state, t.createdAt, formatBytes(t.bytesIn), `${t.chunksCommitted}/${t.chunksPlanned}`]),
  ]);
}

export function formatWorkers(workers: WorkerSummary[]): string {
  if (!workers.length) return "no workers have joined";
  return table([
    ["worker", "name", "host", "state", "slots", "cpus", "memory", "free disk", "gpus", "containers", "interruptible", "last seen"],
    ...workers.map((w) => [
      w.id, w.name, w.host, w.state, `${w.slots}`, `${w.cpus}`, `${w.memoryMb} MiB`, `${(w.diskMb / 1024).toFixed(1)} GiB`, `${w.gpus}`,
      w.docker ? "yes" : "no", w.interruptible ? "yes" : "no", w.lastSeen,
    ]),
  ]);
}

/** A map-reduce task's phases: the map side, the shuffle and the reduce partitions. */
function reduceLines(r: TaskReport): string[] {
  const m = r.reduce;
  if (!m) return [];
  const planned = m.phase === "reduce" ? `${plural(m.partitions, "partition")} (${m.order} order)` : `not planned yet (${m.order} order): the map phase runs`;
  const lines = [
    `  map       ${plural(m.mapChunks, "chunk")}, ${plural(m.mapAttempts, "attempt")}; output ${formatBytes(m.mapOutputBytes)}${m.combine ? " after the combiner" : ""}`,
    `  shuffle   ${formatBytes(m.bytesShuffled)} to reducers`,
    `  reduce    ${planned}; ${plural(m.reduceAttempts, "attempt")}`,
  ];
  for (const p of m.partitionStates.slice(0, 50)) lines.push(`    partition ${p.partition}: ${p.state}, ${formatBytes(p.bytesIn)} in: ${p.keys}`);
  if (m.partitionStates.length > 50) lines.push(`    (${m.partitionStates.length - 50} more partitions)`);
  return lines;
}
