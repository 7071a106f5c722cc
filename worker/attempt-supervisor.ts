// One attempt's supervision, the same for a plain process and a container: the stderr it keeps
// (bounded), the stop under "stderr": "fail", the timeout, who stopped it and why, and the one order
// in which the reasons an attempt failed win. A runtime starts the program, feeds it, makes sure every
// process of the attempt is gone, and then asks for the verdict; it never words a failure itself
// except what only it can know (why the program could not start, how its exit status reads).
import type { Bachfile } from "../core/bachfile";
import { OutcomeKind, retryableKind } from "../core/outcome";
import { formatDuration } from "../core/sizes";
import { stderrSummary } from "../core/stderr-summary";
import type { AttemptOutcome } from "./process-runtime";

/** Enough stderr to show a user what went wrong, bounded so a chatty program cannot fill memory. */
export const STDERR_KEPT = 64 * 1024;

/** What only the runtime knows about how the program ended. */
/**
 * Under "stderr": "fail", how long a program that has begun to write to stderr may go on before it is
 * stopped: the attempt has failed already, but a traceback comes a line at a time (Python writes each
 * line apart, within a millisecond) and a program that is dying exits on its own meanwhile, so the
 * report keeps its whole message instead of its first line.
 */
export const STDERR_FAIL_GRACE_MS = 200;

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
  /** What kind of failure feedError is (default: input). */
  feedErrorKind?: OutcomeKind;
}

export class AttemptSupervisor {
  readonly started = process.hrtime.bigint();
  private stderrText = "";
  private wroteStderr = false;
  private stopped: { reason: string; kind: OutcomeKind } | null = null;
  private over = false;
  private timer: NodeJS.Timeout | null = null;
  private stderrTimer: NodeJS.Timeout | null = null;

  /** `stop` ends everything of the attempt (its process group, its container, its feeder). */
  constructor(
    private readonly bachfile: Bachfile,
    private readonly stop: () => void,
    private readonly stderrGraceMs = STDERR_FAIL_GRACE_MS,
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
    if (this.stderrTimer) clearTimeout(this.stderrTimer);
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

  /**
   * Bytes the program wrote to stderr: kept (up to STDERR_KEPT), and under "fail" the attempt has
   * failed and stops after the grace (STDERR_FAIL_GRACE_MS) unless it ends first.
   */
  stderr(b: Buffer): void {
    if (b.length === 0) return;
    if (this.stderrText.length < STDERR_KEPT) this.stderrText += b.toString("utf8", 0, Math.min(b.length, STDERR_KEPT - this.stderrText.length));
    if (this.bachfile.stderr === "fail" && !this.wroteStderr && !this.over) {
      this.stderrTimer = setTimeout(() => this.kill("wrote to stderr", OutcomeKind.stderr), this.stderrGraceMs);
    }
    this.wroteStderr = true;
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
      : this.bachfile.stderr === "fail" && this.wroteStderr ? [OutcomeKind.stderr, `stderr: ${stderrSummary(this.stderrText)}`]
      : this.stopped ? [this.stopped.kind, this.stopped.reason]
      : e.exit ? withStderr(e.exit, this.stderrText)
      : e.feedError ? [e.feedErrorKind ?? OutcomeKind.input, `reading the chunk failed: ${e.feedError}`]
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

/** A non-zero exit quotes the stderr line that says why (under "log"; under "ignore" there is none). */
function withStderr([kind, reason]: [OutcomeKind, string], stderr: string): [OutcomeKind, string] {
  const line = kind === OutcomeKind.exit ? stderrSummary(stderr) : "";
  return [kind, line ? `${reason}: ${line}` : reason];
}
