// What a task-run shows on stderr: a live progress line (only when stderr is a terminal), plain lines
// when the task waits for a worker, and one summary line when the task ends (both whatever stderr
// is). The formatting is pure; only Progress and WaitNotice's `say` write. Never stdout.
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
  // A map-reduce task's reduce partitions (no input bytes of their own: offset -1).
  if (g.offset < 0 && g.to < 0) return `bach: the reduced output is missing: ${why} in its map phase, before any reduce partition ran`;
  if (g.offset < 0) return `bach: reduce partition${g.from === g.to ? ` ${g.from} is` : `s ${g.from}-${g.to} are`} missing: ${why} before ${g.from === g.to ? "it" : "they"} committed`;
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
    this.shown = false;
  }
}

/** 7.5s, 42s, 3m: how long a task has waited. */
export function waited(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  return `${Math.round(ms / 60_000)}m`;
}

export interface WaitNoticeOptions {
  task: string;
  /** The coordinator's address, for the command that starts a worker. */
  coordinator: string;
  /** Say so once the task has waited this long for a worker (BACH_WORKER_WAIT, default 5 s)... */
  afterMs: number;
  /** ...and again every this long while it still waits. */
  remindEveryMs: number;
  say(line: string): void;
}

/**
 * A task no worker can take would otherwise show `chunks 0/1 done, 0 running` for ever: once the
 * coordinator says it has waited `afterMs`, this says why (no worker connected, or none free that
 * fits) and how to start one, once, then a reminder every `remindEveryMs`, and that it runs once a
 * worker takes it. The task keeps waiting: a worker may join at any time.
 */
export class WaitNotice {
  /** When it last said the task waits (0: it has not, since the task last ran). */
  private saidAt = 0;
  private waitedMs = 0;

  constructor(private readonly o: WaitNoticeOptions) {}

  update(ev: ProgressEvent): void {
    const now = Date.now();
    if (ev.waitingMs >= this.o.afterMs) {
      this.waitedMs = ev.waitingMs;
      if (this.saidAt === 0) this.say(ev, "");
      else if (now - this.saidAt >= this.o.remindEveryMs) this.say(ev, "still ");
      return;
    }
    if (ev.waitingMs === 0 && ev.running > 0) this.ran();
  }

  /** A worker has taken one of the task's chunks (it runs, or it committed). */
  ran(): void {
    if (this.saidAt === 0) return;
    this.saidAt = 0;
    this.o.say(`a worker took task ${this.o.task} after ${waited(this.waitedMs)}; it runs`);
  }

  private say(ev: ProgressEvent, still: string): void {
    this.saidAt = Date.now();
    const { task, coordinator } = this.o;
    const join = `bach-worker join ${coordinator} --token-file FILE`;
    this.o.say(
      ev.workers === 0
        ? `${still}no worker is connected to ${coordinator}: task ${task} has waited ${waited(ev.waitingMs)} for one; start one with: ${join}`
        : `${still}no worker can take task ${task} now (${ev.workers} connected: every one busy, draining, or short of what its bachfile's hardware asks); it has waited ${waited(ev.waitingMs)}; start another with: ${join}`,
    );
  }
}
