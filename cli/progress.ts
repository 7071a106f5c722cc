// What a task-run shows on stderr: a live progress line (only when stderr is a terminal) and one
// summary line when the task ends (always). The formatting is pure; only Progress writes.
import type { OutputEvent, TaskTally } from "../core/report";
import { formatBytes, formatDuration } from "../core/sizes";

type ProgressEvent = Extract<OutputEvent, { kind: "progress" }>;

/** What the progress line shows: bytes processed (committed chunks and the running attempts' share). */
export type ProgressView = Pick<ProgressEvent, "bytesIn" | "inputDone" | "planned" | "committed" | "running"> & { done: number; total: number | null };

/** `bach: 412 MiB of 954 MiB processed (43%), 38.2 MiB/s, ETA 14.2 s, chunks 3/8 done, 2 running` */
export function progressLine(v: ProgressView, bytesPerSecond: number | null): string {
  const rate = bytesPerSecond === null ? "-/s" : `${formatBytes(Math.round(bytesPerSecond))}/s`;
  const planned = v.inputDone ? `${v.planned}` : `${v.planned}+`;
  const chunks = `chunks ${v.committed}/${planned} done, ${v.running} running`;
  if (v.total === null) return `bach: ${formatBytes(v.done)} processed (${formatBytes(v.bytesIn)} in so far), ${rate}, ${chunks}`;
  const percent = v.total > 0 ? Math.floor((100 * v.done) / v.total) : 100;
  const eta = bytesPerSecond ? formatDuration((1000 * Math.max(0, v.total - v.done)) / bytesPerSecond) : "-";
  return `bach: ${formatBytes(v.done)} of ${formatBytes(v.total)} processed (${percent}%), ${rate}, ETA ${eta}, ${chunks}`;
}

/**
 * Bytes per second over the last `windowMs`: a rate since the start falls for ever after a fast first
 * second (a file read in place is "in" at once), and says nothing of how fast the task goes now.
 */
export class RecentRate {
  private readonly samples: { at: number; bytes: number }[] = [];

  constructor(private readonly windowMs = 10_000) {}

  add(at: number, bytes: number): void {
    this.samples.push({ at, bytes });
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (this.samples.length > 2 && this.samples[1].at <= at - this.windowMs) this.samples.shift();
  }

  /** null until a second of samples is in. */
  perSecond(): number | null {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 1000) return null;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

/**
 * The one line a run ends with: `bach: done: 8 chunks, 954 MiB in 27.3 s (34.9 MiB/s)`, or
 * `bach: failed: 7 of 8 chunks committed, 842 MiB in 3.1 s; 2 failed attempts`.
 */
export function summaryLine(t: Omit<TaskTally, "ranges"> & { state: string }): string {
  const time = formatDuration(t.seconds * 1000);
  const failed = t.failedAttempts === 1 ? "1 failed attempt" : `${t.failedAttempts} failed attempts`;
  if (t.state === "succeeded") {
    const rate = t.seconds > 0 ? ` (${formatBytes(Math.round(t.bytes / t.seconds))}/s)` : "";
    const retried = t.failedAttempts === 0 ? "" : `; ${failed} ${t.failedAttempts === 1 ? "was" : "were"} retried`;
    return `bach: done: ${t.committed} chunk${t.committed === 1 ? "" : "s"}, ${formatBytes(t.bytes)} in ${time}${rate}${retried}`;
  }
  return `bach: ${t.state}: ${t.committed} of ${t.planned} chunks committed, ${formatBytes(t.bytes)} in ${time}${t.failedAttempts === 0 ? "" : `; ${failed}`}`;
}

/** Committed chunk ranges as a person reads them: `0-2, 4-7`. */
export function chunkRanges(ranges: [number, number][]): string {
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(", ");
}

/** The stderr line for a partial reader's gap (byte ranges inclusive, as a person reads them). */
export function gapLine(g: Extract<OutputEvent, { kind: "gap" }>): string {
  const why = g.state === "cancelled" ? "the task was cancelled" : "the task failed";
  if (g.to < 0) return `bach: the input from byte ${g.offset} on${g.end >= 0 ? ` (to byte ${g.end - 1})` : ""} is missing: ${why} before it was cut into chunks`;
  const which = g.from === g.to ? `chunk ${g.from}` : `chunks ${g.from}-${g.to}`;
  return `bach: ${which} (bytes ${g.offset}-${g.end - 1}) ${g.from === g.to ? "is" : "are"} missing: ${why} before ${g.from === g.to ? "it" : "they"} committed`;
}

/** The live line on a terminal's stderr, redrawn in place. */
export class Progress {
  private shown = false;
  private readonly rate = new RecentRate();

  /** `totalBytes`: the input's size as this side knows it, until the coordinator knows it too. */
  constructor(
    private readonly totalBytes: number | null,
    private readonly now: () => number = Date.now,
  ) {}

  update(ev: ProgressEvent): void {
    this.rate.add(this.now(), ev.processed);
    process.stderr.write(`\r\x1b[K${progressLine({ ...ev, done: ev.processed, total: ev.total ?? this.totalBytes }, this.rate.perSecond())}`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write("\r\x1b[K");
  }
}
