// The process runtime: one attempt is one fresh program process, its chunk on stdin, its stdout written
// aside to a file. The verdict comes from the exit status (and stderr, under "stderr": "fail"), never
// from a write error: a program may stop reading early (EPIPE) and still succeed.
import fs from "node:fs";
import path from "node:path";
import type { Writable } from "node:stream";
import type { Bachfile } from "../core/bachfile";
import { feedFailureKind, notFoundHint, OutcomeKind } from "../core/outcome";
import { AttemptSupervisor } from "./attempt-supervisor";
import { rangeFed } from "./fed-bytes";
import { NOTHING_TO_KILL, sigkill, startProgram } from "./spawner";


/**
 * How long to wait, once the program's group is killed, for its stderr pipe to close and its group to
 * be gone: killed processes are gone within milliseconds; one that left the group (setsid) and holds
 * the pipe would otherwise hold the attempt for ever.
 */
const AFTER_EXIT_WAIT_MS = 2000;

/**
 * What a program inherits from the worker's environment: what finding tools, writing temp files,
 * formatting dates and text need. Never the rest: the worker's BACH_TOKEN would let any task's program
 * speak for the worker to the coordinator, and other variables may hold secrets of the machine.
 */
const INHERITED = /^(PATH|HOME|LANG|LC_[A-Z_]+|TZ|TMPDIR|USER|LOGNAME)$/;

/** The program's environment: the inherited few, then the bachfile's env, then the attempt's BACH_* variables. */
export function programEnv(worker: NodeJS.ProcessEnv, bachfileEnv: Record<string, string>, attemptEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(worker)) if (value !== undefined && INHERITED.test(name)) env[name] = value;
  return { ...env, ...bachfileEnv, ...attemptEnv };
}

/** Resolves once no process is left in the group (or after `ms`): a killed one may still be mid-write. */
async function groupGone(pid: number | undefined, ms: number): Promise<void> {
  if (!pid) return;
  const until = Date.now() + ms;
  for (;;) {
    try {
      process.kill(-pid, 0);
    } catch (err) {
      if (NOTHING_TO_KILL.has((err as NodeJS.ErrnoException).code ?? "")) return;
      throw err;
    }
    if (Date.now() >= until) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A chunk's bytes: a range of a file this machine can read, or frames from the coordinator, each
 * valid only until the next is asked for (they may be one buffer read into over and over).
 */
export type ChunkInput = { kind: "range"; path: string; offset: number; length: number } | { kind: "stream"; frames: AsyncIterable<Buffer | readonly Buffer[]> };

/**
 * Writes each frame (a buffer, or a group of them) into `into` (a program's stdin, or dd's) and waits until it is written before
 * asking for the next; then ends it. A program that stops reading (EPIPE) ends the feeding quietly:
 * its exit status decides. Rejects when the frames fail (the chunk could not be read).
 */
export async function feedFrames(frames: AsyncIterable<Buffer | readonly Buffer[]>, into: Writable, counted: (bytes: number) => void): Promise<void> {
  let closed = false;
  into.on("error", () => (closed = true));
  for await (const frame of frames) {
    if (closed) break;
    const group = Buffer.isBuffer(frame) ? [frame] : frame;
    if (group.length === 0) continue;
    // A group of buffers goes as one writev: no copy into one buffer, one system call for as much as the pipe takes.
    into.cork();
    for (const b of group.slice(0, -1)) into.write(b);
    const written = new Promise<boolean>((resolve) => into.write(group[group.length - 1], (err) => resolve(!err)));
    into.uncork();
    if (!(await written)) break;
    counted(group.reduce((n, b) => n + b.length, 0));
  }
  if (!closed) into.end();
}

export interface AttemptRun {
  bachfile: Bachfile;
  /** The unpacked bundle: the program's working directory. */
  cwd: string;
  input: ChunkInput;
  outputFile: string;
  /** The attempt's variables (BACH_TASK, BACH_CHUNK, BACH_ATTEMPT, BACH_WORKER): all a program gets from Bach. */
  env: Record<string, string>;
  workerName: string;
}

export interface AttemptOutcome {
  ok: boolean;
  /** What ended it (OutcomeKind.ok when it succeeded) and whether another try could end otherwise. */
  kind: OutcomeKind;
  retryable: boolean;
  exitCode: number;
  signal: string;
  reason: string;
  stderr: string;
  bytesIn: number;
  bytesOut: number;
  seconds: number;
}

export interface RunningAttempt {
  done: Promise<AttemptOutcome>;
  /** Stops it; the outcome says `reason`, of `kind` (default: cancelled, Bach stopped it). */
  kill(reason: string, kind?: OutcomeKind): void;
  /** Input bytes fed to the program so far (heartbeats report it: the progress a user sees). */
  fed(): number;
}

/** A range that is a whole file (a streamed chunk's own spool file) is the program's stdin as it is: no copy into a pipe. */
function isWholeFile(input: { path: string; offset: number; length: number }): boolean {
  return input.offset === 0 && fs.statSync(input.path, { throwIfNoEntry: false })?.size === input.length;
}

/** What a program that did not start (or whose spawner was lost) is judged as. */
function startFailure(failure: NodeJS.ErrnoException, binary: string, run: AttemptRun): [OutcomeKind, string] {
  if (failure.code === "ESPAWNER") return [OutcomeKind.worker, `${binary} on worker ${run.workerName}: ${failure.message}`];
  if (failure.code === "ENOENT" && /^(spawn|exec)\b/.test(failure.syscall ?? "")) {
    return [OutcomeKind.notFound, `program not found on worker ${run.workerName}: ${binary} (bachfile field binary)${notFoundHint(binary, fs.existsSync(path.join(run.cwd, binary)))}`];
  }
  return [OutcomeKind.worker, `could not start ${binary} on worker ${run.workerName}: ${failure.message}`];
}

export function runProcess(run: AttemptRun): RunningAttempt {
  const { bachfile, input } = run;
  const binary = bachfile.binary.includes("/") ? path.resolve(run.cwd, bachfile.binary) : bachfile.binary;
  const whole = input.kind === "range" && isWholeFile(input);
  const child = startProgram({
    binary,
    args: bachfile.args,
    cwd: run.cwd,
    env: programEnv(process.env, bachfile.env, run.env),
    // A range is copied into a pipe by a feeder process, so feeding several programs at once uses every
    // core instead of this event loop (a pipe costs ~1 s of CPU per GiB on the machines measured).
    stdin: input.kind === "stream" ? { kind: "pipe" } : whole ? { kind: "file", path: input.path } : { kind: "range", path: input.path, offset: input.offset, length: input.length },
    stdoutPath: run.outputFile,
    stderr: bachfile.stderr === "ignore" ? "ignore" : "pipe",
  });
  let bytesIn = input.kind === "range" ? input.length : 0;
  /** A range's bytes fed so far, from its reader's place in the file: the program's own, or the feeder's. */
  let rangeSoFar = 0;
  const fed = (): number => {
    if (input.kind === "stream") return bytesIn;
    if (exitedAlready) return input.length;
    rangeSoFar = rangeFed(whole ? child.pid : child.feederPid, input.offset, input.length, rangeSoFar);
    return rangeSoFar;
  };
  let feedError = "";
  let spawnError: NodeJS.ErrnoException | null = null;
  let exitedAlready = false;
  let killed = false;
  /** The program's group, and the feeder of its range (which has no group of its own). */
  const killAll = () => {
    sigkill(child.pid, { group: true });
    sigkill(child.feederPid);
  };
  const supervisor = new AttemptSupervisor(bachfile, () => {
    if (exitedAlready) return;
    killed = true;
    killAll();
  });

  child.on("spawn", () => {
    // A kill asked for before the program ran reaches it now.
    if (killed) killAll();
    child.stderr?.on("data", (b: Buffer) => supervisor.stderr(b));
    if (input.kind !== "stream") return;
    // No stdin: the program is gone already, and its exit status decides.
    if (!child.stdin) return;
    feedFrames(input.frames, child.stdin, (n) => (bytesIn += n)).catch((err: Error) => {
      feedError = err.message;
      supervisor.kill(`reading the chunk failed: ${err.message}`, feedFailureKind(err));
    });
  });
  const feederDone = child.fed.then((why) => {
    if (why && !supervisor.stoppedFor) feedError = why;
  });

  supervisor.arm();

  type Status = { code: number | null; signal: NodeJS.Signals | null };
  const exited = new Promise<Status>((resolve) => {
    let status: Status | null = null;
    let closeWait: NodeJS.Timeout | null = null;
    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on("exit", (code, signal) => {
      status = { code, signal };
      exitedAlready = true;
      supervisor.ended();
      // The attempt is the main process: what it left in its group (a background job still writing to
      // stdout) dies with it, before the attempt is judged and its output measured, so a committed
      // output never changes after. 'close' waits for stderr, which such a job could hold open.
      sigkill(child.pid, { group: true });
      closeWait = setTimeout(() => {
        child.stderr?.destroy();
        resolve({ code, signal });
      }, AFTER_EXIT_WAIT_MS);
    });
    child.on("close", (code, signal) => {
      if (closeWait) clearTimeout(closeWait);
      resolve(status ?? { code, signal });
    });
  }).then(async (status) => {
    await groupGone(child.pid, AFTER_EXIT_WAIT_MS);
    return status;
  });

  const done = Promise.all([exited, feederDone]).then(([{ code, signal }]) => {
    const bytesOut = fs.statSync(run.outputFile, { throwIfNoEntry: false })?.size ?? 0;
    const exitCode = code ?? -1;
    const failure: NodeJS.ErrnoException | null = spawnError;
    return supervisor.verdict(
      {
        startFailure: failure ? startFailure(failure, bachfile.binary, run) : null,
        exitCode,
        signal: signal ?? "",
        exit: exitCode === 0 ? null : signal ? [OutcomeKind.signal, `killed by ${signal}`] : [OutcomeKind.exit, `exit ${exitCode}`],
        feedError,
      },
      { bytesIn, bytesOut },
    );
  });
  return { done, kill: (reason, kind) => supervisor.kill(reason, kind), fed };
}

