// The process runtime: one attempt is one fresh program process, its chunk on stdin, its stdout written
// aside to a file. The verdict comes from the exit status (and stderr, under "stderr": "fail"), never
// from a write error: a program may stop reading early (EPIPE) and still succeed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Bachfile } from "../core/bachfile";
import { formatDuration } from "../core/sizes";

/** Enough stderr to show a user what went wrong, bounded so a chatty program cannot fill memory. */
const STDERR_KEPT = 64 * 1024;

export interface AttemptRun {
  bachfile: Bachfile;
  /** The unpacked bundle: the program's working directory. */
  cwd: string;
  input: Readable;
  outputFile: string;
  env: Record<string, string>;
  workerName: string;
}

export interface AttemptOutcome {
  ok: boolean;
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
  kill(reason: string): void;
}

export function runProcess(run: AttemptRun): RunningAttempt {
  const started = process.hrtime.bigint();
  const { bachfile } = run;
  const out = fs.openSync(run.outputFile, "w");
  const binary = bachfile.binary.includes("/") ? path.resolve(run.cwd, bachfile.binary) : bachfile.binary;
  const child = spawn(binary, bachfile.args, {
    cwd: run.cwd,
    env: { ...process.env, ...bachfile.env, ...run.env },
    stdio: ["pipe", out, bachfile.stderr === "ignore" ? "ignore" : "pipe"],
  });
  fs.closeSync(out);
  let bytesIn = 0;
  let stderr = "";
  let killedFor = "";
  let spawnError: NodeJS.ErrnoException | null = null;

  const kill = (reason: string) => {
    if (killedFor || child.exitCode !== null) return;
    killedFor = reason;
    child.kill("SIGKILL");
  };

  const stdin = child.stdin;
  if (!stdin) throw new Error("spawn gave no stdin pipe");
  stdin.on("error", () => {
    // EPIPE or ECONNRESET: the program stopped reading. Its exit status decides, so stop feeding it.
    run.input.destroy();
  });
  run.input.on("data", (b: Buffer) => {
    bytesIn += b.length;
  });
  run.input.on("error", (err) => kill(`reading the chunk failed: ${err.message}`));
  run.input.pipe(stdin);

  child.stderr?.on("data", (b: Buffer) => {
    if (stderr.length < STDERR_KEPT) stderr += b.toString("utf8", 0, Math.min(b.length, STDERR_KEPT - stderr.length));
    if (bachfile.stderr === "fail") kill("wrote to stderr");
  });

  const timer = bachfile.timeoutMs ? setTimeout(() => kill(`timeout after ${formatDuration(bachfile.timeoutMs ?? 0)}`), bachfile.timeoutMs) : null;

  const done = new Promise<AttemptOutcome>((resolve) => {
    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      run.input.destroy();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const bytesOut = fs.statSync(run.outputFile, { throwIfNoEntry: false })?.size ?? 0;
      const exitCode = code ?? -1;
      const reason = spawnError
        ? spawnError.code === "ENOENT"
          ? `program not found on worker ${run.workerName}: ${bachfile.binary} (bachfile field binary)`
          : `could not start ${bachfile.binary} on worker ${run.workerName}: ${spawnError.message}`
        : killedFor === "wrote to stderr"
          ? `stderr: ${firstLine(stderr)}`
          : killedFor || (exitCode !== 0 ? (signal ? `killed by ${signal}` : `exit ${exitCode}`) : "");
      resolve({ ok: reason === "", exitCode, signal: signal ?? "", reason, stderr, bytesIn, bytesOut, seconds });
    });
  });
  return { done, kill };
}

function firstLine(text: string): string {
  const line = text.trim().split("\n")[0] ?? "";
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}
