// What task-run says on stderr while a task runs: a one-line progress display (only when stderr is a
// terminal), and plain lines when the task waits for a worker (whatever stderr is). It never writes
// to stdout, which holds only the task's output.
import type { OutputEvent } from "../core/report";
import { formatBytes } from "../core/sizes";

type ProgressEvent = Extract<OutputEvent, { kind: "progress" }>;

export class Progress {
  private readonly started = Date.now();
  private shown = false;

  constructor(private readonly totalBytes: number | null) {}

  update(ev: ProgressEvent): void {
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? formatBytes(ev.bytesIn / seconds) : "-";
    const of = this.totalBytes !== null ? ` of ${formatBytes(this.totalBytes)}` : "";
    const planned = ev.inputDone ? `${ev.planned}` : `${ev.planned}+`;
    process.stderr.write(`\r\x1b[Kbach: ${formatBytes(ev.bytesIn)}${of} in, ${rate}/s, chunks ${ev.committed}/${planned} done, ${ev.running} running`);
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
