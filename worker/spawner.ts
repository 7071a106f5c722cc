// How the process runtime starts a program: through bach-spawner (worker/spawner.c), a small process
// that forks for us, or, where it was not built (no C compiler), through Node's child_process. Node
// forks the whole worker for every program: measured here, 4.7 ms of the worker's one thread at 50 MB
// of memory, 8 ms at 250 MB, and more in the embedded CLI; a request to the spawner costs a fraction.
// Either way the program gets the same: its stdin (a pipe fed from here, a file, or a range of a file
// copied into a pipe by a feeder process), its stdout written to a file, its stderr a pipe read here,
// a session of its own, the environment given and nothing else.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { errnoName } from "./keeper";

/** Built next to this file by scripts/build-keeper (npm run build). */
export const SPAWNER = path.join(__dirname, "bach-spawner");

export type ProgramStdin = { kind: "pipe" } | { kind: "file"; path: string } | { kind: "range"; path: string; offset: number; length: number };

export interface ProgramSpec {
  binary: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  stdin: ProgramStdin;
  /** A file, created or truncated, that gets the program's stdout. */
  stdoutPath: string;
  stderr: "pipe" | "ignore";
}

/**
 * A program started for an attempt. Its pid, stdin (when piped) and stderr (when piped) are there
 * once "spawn" is emitted; then "exit" (code, signal) and "close" once its stderr closed too. A
 * program that could not start emits "error" (an errno error: ENOENT for a program not found) and
 * then "exit" and "close".
 */
export interface StartedProgram extends EventEmitter {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stderr: Readable | null;
  /** The process copying a range into the program's stdin, whose place in the file tells how much was fed. */
  readonly feederPid: number | undefined;
  /** Resolves when the range's feeder is done (at once when there is none): "", or why it failed. */
  readonly fed: Promise<string>;
}

/**
 * The answers of kill(2) that leave nothing for us to do: the process is gone (ESRCH), or all that is
 * left of its group is not ours to signal (EPERM: a setuid program it started); no attempt should
 * crash the worker over either.
 */
export const NOTHING_TO_KILL = new Set(["ESRCH", "EPERM"]);

/** SIGKILLs a process, or with `group` its process group; nothing when `pid` is not set. */
export function sigkill(pid: number | undefined, opts: { group?: boolean } = {}): void {
  if (!pid) return;
  try {
    process.kill(opts.group ? -pid : pid, "SIGKILL");
  } catch (err) {
    if (!NOTHING_TO_KILL.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
  }
}

/** Starts `spec`'s program through the spawner, or through Node where there is none (or BACH_SPAWNER=node). */
export function startProgram(spec: ProgramSpec): StartedProgram {
  for (const s of [spec.binary, ...spec.args, spec.cwd, ...Object.entries(spec.env).flat()]) {
    // Node's spawn refuses these too; the spawner's fields end at a NUL.
    if (s.includes("\0")) throw Object.assign(new Error(`an argument or variable of ${spec.binary} holds a NUL byte`), { code: "ERR_INVALID_ARG_VALUE" });
  }
  if (process.env.BACH_SPAWNER !== "node" && !Spawner.unusable && fs.existsSync(SPAWNER)) return Spawner.shared().start(spec);
  return startByNode(spec);
}

/** The feeder dd: copies a file range into a pipe, in a process of its own. */
function rangeFeeder(input: { path: string; offset: number; length: number }): ChildProcess {
  return spawn("dd", [`if=${input.path}`, "bs=1M", "iflag=skip_bytes,count_bytes", `skip=${input.offset}`, `count=${input.length}`, "status=none"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function startByNode(spec: ProgramSpec): StartedProgram {
  const out = fs.openSync(spec.stdoutPath, "w");
  let file: number | null = null;
  try {
    file = spec.stdin.kind === "file" ? fs.openSync(spec.stdin.path, "r") : null;
  } catch {
    // The program's start reports it, as the spawner's does: its stdin could not be opened.
  }
  // A file that cannot be opened goes to dd, which says why.
  const feeder = spec.stdin.kind === "range" ? rangeFeeder(spec.stdin) : spec.stdin.kind === "file" && file === null ? rangeFeeder({ path: spec.stdin.path, offset: 0, length: Number.MAX_SAFE_INTEGER }) : null;
  let child: ChildProcess;
  try {
    child = spawn(spec.binary, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: [file ?? feeder?.stdout ?? "pipe", out, spec.stderr],
      // Its own process group, so a kill reaches whatever the program started (sh -c "a | b").
      detached: true,
    });
  } finally {
    fs.closeSync(out);
    if (file !== null) fs.closeSync(file);
  }
  // The program has its own copy of the pipe; this process must never read from it.
  feeder?.stdout?.destroy();
  const fed = new Promise<string>((resolve) => {
    if (!feeder) return resolve("");
    let stderr = "";
    feeder.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    feeder.on("error", (err) => resolve(`could not start dd: ${err.message}`));
    // SIGPIPE: the program stopped reading early, which is its right.
    feeder.on("close", (code, signal) => resolve(code === 0 || signal === "SIGPIPE" ? "" : `dd: ${stderr.trim() || `exit ${code ?? signal}`}`));
  });
  return Object.assign(child, { feederPid: feeder?.pid, fed });
}

/** A program the spawner started. */
class SpawnedProgram extends EventEmitter implements StartedProgram {
  pid: number | undefined;
  stdin: Writable | null = null;
  stderr: Readable | null = null;
  feederPid: number | undefined;
  readonly fed: Promise<string>;
  /** Set once the feeder is done (at once when there is none). */
  feederDone: boolean;
  resolveFed: (why: string) => void = () => {};
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  stderrOpen = false;

  constructor(readonly id: string, feeds: boolean) {
    super();
    this.feederDone = !feeds;
    this.fed = feeds ? new Promise((resolve) => (this.resolveFed = resolve)) : Promise.resolve("");
  }

  closeIfDone(): void {
    if (this.exitStatus && !this.stderrOpen) this.emit("close", this.exitStatus.code, this.exitStatus.signal);
  }
}

/** The code and signal of a raw wait status, as Node gives them. */
function waitStatus(status: number): { code: number | null; signal: NodeJS.Signals | null } {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff, signal: null };
  const name = Object.entries(os.constants.signals).find(([, n]) => n === signal)?.[0];
  return { code: null, signal: (name ?? "SIGKILL") as NodeJS.Signals };
}

function errnoError(step: string, errno: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${step} ${code}`), { code, errno, syscall: step });
}

/** The spawner this process uses: started at the first program, started again if it is lost. */
class Spawner {
  private static current: Spawner | null = null;
  /** Set when the spawner could not be started at all (a binary this machine cannot run): Node starts programs from then on. */
  static unusable = false;

  static shared(): Spawner {
    if (!Spawner.current) Spawner.current = new Spawner();
    return Spawner.current;
  }

  private readonly child: ChildProcess;
  private readonly programs = new Map<string, SpawnedProgram>();
  private lines = "";
  private nextId = 0;

  private constructor() {
    this.child = spawn(SPAWNER, [], { stdio: ["pipe", "pipe", "inherit"], env: {} });
    this.child.stdout?.setEncoding("latin1");
    this.child.stdout?.on("data", (text: string) => this.heard(text));
    this.child.stdin?.on("error", () => {});
    this.child.on("error", (err) => {
      Spawner.unusable = true;
      this.lost(`could not be started (${err.message})`);
    });
    this.child.on("exit", (code, signal) => this.lost(`exited (${code ?? signal})`));
    this.idle();
  }

  start(spec: ProgramSpec): StartedProgram {
    const id = String(++this.nextId);
    const program = new SpawnedProgram(id, spec.stdin.kind === "range");
    const stdin = spec.stdin.kind === "pipe" ? "pipe" : spec.stdin.kind === "file" ? `file:${spec.stdin.path}` : `range:${spec.stdin.offset}:${spec.stdin.length}:${spec.stdin.path}`;
    const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
    this.send(["S", id, spec.cwd, stdin, spec.stdoutPath, spec.stderr === "pipe" ? "pipe" : "null", String(spec.args.length + 1), spec.binary, ...spec.args, String(env.length), ...env]);
    this.programs.set(id, program);
    this.busy();
    return program;
  }

  private send(fields: string[]): void {
    const body = Buffer.from(fields.map((f) => `${f}\0`).join(""), "utf8");
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.length);
    this.child.stdin?.write(Buffer.concat([head, body]));
  }

  private heard(text: string): void {
    this.lines += text;
    let nl: number;
    while ((nl = this.lines.indexOf("\n")) >= 0) {
      const [event = "", id = "", ...rest] = this.lines.slice(0, nl).split(" ");
      this.lines = this.lines.slice(nl + 1);
      const program = this.programs.get(id);
      if (program) this.event(program, event, rest.map(Number), rest);
    }
  }

  private event(program: SpawnedProgram, event: string, numbers: number[], words: string[]): void {
    if (event === "started") {
      const [pid, inFd, errFd, feederPid] = numbers;
      program.pid = pid;
      program.feederPid = feederPid > 0 ? feederPid : undefined;
      let failure: NodeJS.ErrnoException | null = null;
      try {
        program.stdin = inFd >= 0 ? this.openEnd(inFd, fs.constants.O_WRONLY) : null;
        program.stderr = errFd >= 0 ? this.openEnd(errFd, fs.constants.O_RDONLY) : null;
      } catch (err) {
        // The pipes cannot be reopened here (no /proc?): the program must not run on without its input,
        // and no later one is started so.
        failure = err as NodeJS.ErrnoException;
        Spawner.unusable = true;
        program.stdin?.destroy();
        sigkill(pid, { group: true });
        sigkill(program.feederPid);
      }
      // The spawner may now let go of its ends: the program's pipes are ours.
      if (inFd >= 0 || errFd >= 0) this.send(["O", program.id]);
      if (failure) {
        program.emit("error", Object.assign(new Error(`the program's pipes could not be opened: ${failure.message}`), { code: failure.code, syscall: "open" }));
        return;
      }
      if (program.stderr) {
        program.stderrOpen = true;
        program.stderr.on("close", () => {
          program.stderrOpen = false;
          program.closeIfDone();
        });
      }
      program.emit("spawn");
    } else if (event === "failed") {
      // A program that never ran: its feeder, if one was started, matters no more.
      program.feederDone = true;
      program.resolveFed("");
      program.emit("error", errnoError(words[0] ?? "exec", numbers[1]));
      this.ended(program, { code: 127, signal: null });
    } else if (event === "exited") {
      this.ended(program, waitStatus(numbers[0]));
    } else if (event === "fed") {
      const status = waitStatus(numbers[0]);
      program.feederDone = true;
      program.resolveFed(status.code === 0 ? "" : `copying the range into its stdin failed: ${status.code !== null ? errnoName(status.code) : status.signal}`);
      this.forgetIfDone(program);
    }
  }

  /**
   * The spawner's end of a program's pipe, reopened here as the same pipe: null when the program is
   * gone already; throws when it cannot be reopened.
   */
  private openEnd(fd: number, mode: number): net.Socket | null {
    let opened: number;
    try {
      opened = fs.openSync(`/proc/${this.child.pid}/fd/${fd}`, mode | fs.constants.O_NONBLOCK);
    } catch (err) {
      // ENXIO: a stdin pipe whose reader, the program, has exited already: its exit tells the rest.
      if ((err as NodeJS.ErrnoException).code === "ENXIO") return null;
      throw err;
    }
    const write = mode === fs.constants.O_WRONLY;
    return new net.Socket({ fd: opened, readable: !write, writable: write });
  }

  private ended(program: SpawnedProgram, status: { code: number | null; signal: NodeJS.Signals | null }): void {
    program.exitStatus = status;
    this.forgetIfDone(program);
    program.emit("exit", status.code, status.signal);
    program.closeIfDone();
  }

  /** A program is forgotten once it has exited and its feeder (if any) is done: nothing more will come of it. */
  private forgetIfDone(program: SpawnedProgram): void {
    if (!program.exitStatus || !program.feederDone) return;
    this.programs.delete(program.id);
    if (this.programs.size === 0) this.idle();
  }

  /** The spawner is gone: its programs are orphans this process cannot wait for, so their attempts fail. */
  private lost(how: string): void {
    if (Spawner.current === this) Spawner.current = null;
    for (const program of [...this.programs.values()]) {
      program.feederDone = true;
      program.resolveFed(program.exitStatus ? "" : `the program spawner ${how}`);
      if (program.exitStatus) continue;
      program.emit("error", Object.assign(new Error(`the worker's program spawner ${how} ${program.pid === undefined ? "before the program started" : "while the program ran"}`), { code: "ESPAWNER" }));
      this.ended(program, { code: null, signal: "SIGKILL" });
    }
    this.programs.clear();
  }

  /** Waiting for a program's exit keeps this process running; an idle spawner does not. */
  private busy(): void {
    this.child.ref();
    (this.child.stdout as net.Socket | null)?.ref();
  }

  private idle(): void {
    this.child.unref();
    (this.child.stdout as net.Socket | null)?.unref();
    (this.child.stdin as net.Socket | null)?.unref();
  }
}
