// One attempt's supervision, the same for a plain process and a container: the stderr it keeps
// (bounded), the stop under "stderr": "fail", the timeout, who stopped it and why, and the one order
// in which the reasons an attempt failed win. A runtime starts the program, feeds it, makes sure every
// process of the attempt is gone, and then asks for the verdict; it never words a failure itself
// except what only it can know (why the program could not start, how its exit status reads).
import type { Bachfile } from "../core/bachfile";
import { OutcomeKind, retryableKind } from "../core/outcome";
import { formatDuration } from "../core/sizes";
import type { AttemptOutcome } from "./process-runtime";

/** Enough stderr to show a user what went wrong, bounded so a chatty program cannot fill memory. */
export const STDERR_KEPT = 64 * 1024;

/** What only the runtime knows about how the program ended. */
export interface Ending {
  /** It could not start: the kind and the line that says why (the program is not there, ...). */
  startFailure?: [OutcomeKind, string] | null;
  /** The kernel killed it for memory: the line that says so. */
  oom?: string | null;
  /** The exit status as the runtime reads it (-1: none), and how a non-zero one reads (null: it was 0). */
  exitCode: number;
  signal?: string;
  exit: [OutcomeKind, string] | null;
  /** The chunk could not be fed to it (the coordinator's stream broke, dd failed). */
  feedError?: string;
}

export class AttemptSupervisor {
  readonly started = process.hrtime.bigint();
  private stderrText = "";
  private wroteStderr = false;
  private stopped: { reason: string; kind: OutcomeKind } | null = null;
  private over = false;
  private timer: NodeJS.Timeout | null = null;

  /** `stop` ends everything of the attempt (its process group, its container, its feeder). */
  constructor(
    private readonly bachfile: Bachfile,
    private readonly stop: () => void,
  ) {}

  /** Starts the bachfile's timeout (call once the program runs). */
  arm(): void {
    const ms = this.bachfile.timeoutMs;
    if (ms) this.timer = setTimeout(() => this.kill(`timeout after ${formatDuration(ms)}`, OutcomeKind.timeout), ms);
  }

  /** The program has ended: a stop asked for from now on (a late cancel, the timeout) changes nothing. */
  ended(): void {
    this.over = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Stops the attempt; the first reason given is the one its outcome says. */
  kill(reason: string, kind: OutcomeKind = OutcomeKind.cancelled): void {
    if (this.stopped || this.over) return;
    this.stopped = { reason, kind };
    this.stop();
  }

  /** Why it was stopped, or null. */
  get stoppedFor(): { reason: string; kind: OutcomeKind } | null {
    return this.stopped;
  }

  /** Bytes the program wrote to stderr: kept (up to STDERR_KEPT), and under "fail" the attempt stops. */
  stderr(b: Buffer): void {
    if (b.length === 0) return;
    if (this.stderrText.length < STDERR_KEPT) this.stderrText += b.toString("utf8", 0, Math.min(b.length, STDERR_KEPT - this.stderrText.length));
    this.wroteStderr = true;
    if (this.bachfile.stderr === "fail") this.kill("wrote to stderr", OutcomeKind.stderr);
  }

  get stderrKept(): string {
    return this.stderrText;
  }

  /**
   * The outcome, once every process of the attempt is gone. Reasons win in this order: it could not
   * start; the kernel killed it for memory; it wrote to stderr under "fail"; Bach stopped it (a cancel,
   * its timeout, its chunk unreadable); it exited non-zero or died of a signal; its chunk could not be
   * fed although it exited 0.
   */
  verdict(e: Ending, measured: { bytesIn: number; bytesOut: number }): AttemptOutcome {
    this.ended();
    const [kind, reason]: [OutcomeKind, string] =
      e.startFailure ? e.startFailure
      : e.oom ? [OutcomeKind.oom, e.oom]
      : this.bachfile.stderr === "fail" && this.wroteStderr ? [OutcomeKind.stderr, `stderr: ${firstLine(this.stderrText)}`]
      : this.stopped ? [this.stopped.kind, this.stopped.reason]
      : e.exit ? e.exit
      : e.feedError ? [OutcomeKind.input, `reading the chunk failed: ${e.feedError}`]
      : [OutcomeKind.ok, ""];
    return {
      ok: kind === OutcomeKind.ok,
      kind,
      retryable: retryableKind(kind),
      exitCode: e.exitCode,
      signal: e.signal ?? "",
      reason,
      stderr: this.stderrText,
      bytesIn: measured.bytesIn,
      bytesOut: measured.bytesOut,
      seconds: Number(process.hrtime.bigint() - this.started) / 1e9,
    };
  }
}

export function firstLine(text: string): string {
  const line = text.trim().split("\n")[0] ?? "";
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}
