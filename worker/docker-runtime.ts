// The Docker runtime: a task with an image runs each chunk in a container under the bachfile's limits.
//
// One long-lived container per slot and task, and a fresh program process per chunk, started by a
// keeper shell inside the container: it reads a chunk's number on its stdin (attached from here), runs
// the program once, and reports its exit status on its stderr after the program's own stderr, so the
// two arrive in order. Measured here: a new container ~0.55 s, a `docker exec` per chunk ~0.15 s, the
// keeper ~6 ms. The chunk reaches the program's stdin through a named pipe in a folder bind-mounted at
// /bach, fed on this side by dd, and its stdout goes to a file there: no chunk byte passes through
// dockerd. The container's memory limit holds one program at a time, so an out-of-memory kill is read
// from the container's memory cgroup.
//
// Containers run as an unprivileged user, without new privileges or capabilities, with a pids limit,
// and carry labels naming this worker, so a restarted worker removes what a killed one left behind.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Writable, type Readable } from "node:stream";
import type Docker from "dockerode";
import type { Logger } from "pino";
import { CONTAINER_USER, imageId, LABEL, loadImage, statusCode } from "../core/docker";
import { isAlive } from "../core/pids";
import { formatDuration } from "../core/sizes";
import { notFoundHint, OutcomeKind, retryableKind } from "../core/outcome";
import { feedFrames, firstLine, STDERR_KEPT, type AttemptOutcome, type AttemptRun, type RunningAttempt } from "./process-runtime";

const PID_LABEL = "org.bach.pid";
const TASK_LABEL = "org.bach.task";
/**
 * The keeper: `sh -c KEEPER sh TOKEN PROGRAM ARGS...`. For each line (an attempt id) on its stdin it runs
 * the program with the attempt's variables from /bach/env, stdin from the pipe and stdout to the file,
 * then writes "\x1e TOKEN ID STATUS" to stderr: after the program's stderr, on the same pipe.
 */
const KEEPER = 't=$1; shift; while IFS= read -r id; do ( . /bach/env; exec "$@" ) </bach/in >/bach/out; printf "\\036%s %s %s\\n" "$t" "$id" "$?" >&2; done';

export interface ContainerRun extends AttemptRun {
  taskId: string;
  imageId: string;
}

interface SlotContainer {
  name: string;
  task: string;
  container: Docker.Container;
  /** On this machine: the folder mounted at /bach (the pipe, the output) and its scratch space. */
  dir: string;
  /** The container's memory cgroup file that counts OOM kills, when this machine can read it. */
  oomFile: string | null;
  /** Killed or dead: removed instead of reused. */
  broken: boolean;
  /** The keeper's stdin: one line per attempt to run. */
  control: NodeJS.WritableStream;
  /** Marks the end of an attempt in the keeper's stderr: random, so a program cannot forge it. */
  marker: Buffer;
  /** Where the keeper's stderr goes: the current attempt's reader. */
  onStderr: ((b: Buffer) => void) | null;
  /** Settles when the container's attached streams end: it stopped. */
  stopped: Promise<void>;
  /** Attempts run in it so far: the number the keeper echoes back names the one that ended. */
  runs: number;
}

export interface DockerRuntimeOptions {
  dataDir: string;
  /** Names this worker's containers across its restarts (host and data dir). */
  key: string;
  log: Logger;
  /** The coordinator's copy of an image, as a `docker save` tar stream. */
  fetchImage(id: string): Readable;
}

export class DockerRuntime {
  private readonly idle = new Map<string, SlotContainer[]>();
  private readonly busy = new Set<SlotContainer>();
  private readonly endedTasks = new Set<string>();
  private readonly images = new Map<string, Promise<void>>();
  private made = 0;
  /** Removals under way, so close() can wait for them. */
  private readonly removing = new Set<Promise<void>>();
  private readonly root: string;

  constructor(
    private readonly docker: Docker,
    private readonly opts: DockerRuntimeOptions,
  ) {
    this.root = path.join(opts.dataDir, "containers");
    fs.mkdirSync(this.root, { recursive: true });
  }

  /** Removes containers that this worker's earlier lives left (they were killed before cleaning up). */
  async removeLeftovers(): Promise<number> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL}=${this.opts.key}`] } });
    const orphans = list.filter((c) => !isAlive(Number(c.Labels[PID_LABEL])) || Number(c.Labels[PID_LABEL]) === process.pid);
    await Promise.all(orphans.map((c) => this.remove(c.Id, (c.Names[0] ?? "").replace(/^\//, ""))));
    if (orphans.length > 0) this.opts.log.info({ removed: orphans.length }, "removed containers an earlier run of this worker left behind");
    return orphans.length;
  }

  run(r: ContainerRun): RunningAttempt {
    const started = process.hrtime.bigint();
    let killedFor = "";
    let killedKind: OutcomeKind = OutcomeKind.cancelled;
    let slot: SlotContainer | null = null;
    let feeder: ChildProcess | null = null;
    const kill = (reason: string, kind: OutcomeKind = OutcomeKind.cancelled) => {
      if (killedFor) return;
      killedFor = reason;
      killedKind = kind;
      feeder?.kill("SIGKILL");
      if (slot) {
        slot.broken = true;
        slot.container.kill().catch((err: Error) => this.opts.log.debug({ err: err.message }, "container already stopped"));
      }
    };
    const outcome = (o: Partial<AttemptOutcome> & { reason: string; kind: OutcomeKind }): AttemptOutcome => ({
      ok: o.kind === OutcomeKind.ok,
      retryable: retryableKind(o.kind),
      exitCode: -1,
      signal: "",
      stderr: "",
      bytesIn: 0,
      bytesOut: 0,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
      ...o,
    });

    const done = (async (): Promise<AttemptOutcome> => {
      try {
        await this.ensureImage(r.imageId);
      } catch (err) {
        return outcome({ kind: OutcomeKind.badImage, reason: `image missing and could not be loaded: ${(err as Error).message}` });
      }
      if (killedFor) return outcome({ kind: killedKind, reason: killedFor });
      try {
        slot = await this.takeSlot(r);
      } catch (err) {
        return outcome({ kind: OutcomeKind.worker, reason: `could not start a container of ${r.imageId.slice(0, 19)} on worker ${r.workerName}: ${dockerMessage(err)}` });
      }
      if (killedFor) {
        this.giveBack(slot);
        return outcome({ kind: killedKind, reason: killedFor });
      }
      try {
        return await this.runIn(slot, r, started, kill, (f) => (feeder = f), () => ({ reason: killedFor, kind: killedKind }));
      } finally {
        this.giveBack(slot);
      }
    })();
    return { done, kill };
  }

  private async runIn(
    slot: SlotContainer,
    r: ContainerRun,
    started: bigint,
    kill: (reason: string, kind?: OutcomeKind) => void,
    setFeeder: (f: ChildProcess) => void,
    killed: () => { reason: string; kind: OutcomeKind },
  ): Promise<AttemptOutcome> {
    const { bachfile } = r;
    const out = path.join(slot.dir, "out");
    fs.rmSync(out, { force: true });
    emptyFolder(path.join(slot.dir, "scratch"));
    const oomBefore = readOomKills(slot.oomFile);
    fs.writeFileSync(path.join(slot.dir, "env"), Object.entries(r.env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(""));

    let stderr = "";
    let wroteStderr = false;
    const programStderr = (b: Buffer) => {
      if (b.length === 0) return;
      if (stderr.length < STDERR_KEPT) stderr += b.toString("utf8", 0, Math.min(b.length, STDERR_KEPT - stderr.length));
      wroteStderr = true;
      if (bachfile.stderr === "fail") kill("wrote to stderr", OutcomeKind.stderr);
    };
    const attemptId = ++slot.runs;
    let exitCode = -1;
    const ended = new Promise<void>((resolve) => {
      let tail: Buffer = Buffer.alloc(0);
      slot.onStderr = (b: Buffer) => {
        tail = tail.length ? Buffer.concat([tail, b]) : b;
        const at = tail.indexOf(slot.marker);
        if (at < 0) {
          // Hold back what could be the start of the marker.
          const keep = Math.min(tail.length, slot.marker.length - 1);
          programStderr(tail.subarray(0, tail.length - keep));
          tail = tail.subarray(tail.length - keep);
          return;
        }
        programStderr(tail.subarray(0, at));
        const line = tail.subarray(at + slot.marker.length);
        const nl = line.indexOf(10);
        if (nl < 0) {
          tail = tail.subarray(at);
          return;
        }
        const [id, status] = line.subarray(0, nl).toString().split(" ");
        if (Number(id) === attemptId) {
          exitCode = Number(status);
          slot.onStderr = null;
          resolve();
        }
        tail = line.subarray(nl + 1);
      };
      slot.stopped.then(resolve, resolve);
    });
    const feeding = feed(r, path.join(slot.dir, "in"));
    setFeeder(feeding.process);
    slot.control.write(`${attemptId}\n`);
    const timer = bachfile.timeoutMs ? setTimeout(() => kill(`timeout after ${formatDuration(bachfile.timeoutMs ?? 0)}`, OutcomeKind.timeout), bachfile.timeoutMs) : null;
    await ended;
    slot.onStderr = null;
    if (timer) clearTimeout(timer);
    // The program has gone, so the pipe has no reader: a feeder still waiting to open it never will.
    feeding.process.kill("SIGKILL");
    const fed = await feeding.done;

    const oom = readOomKills(slot.oomFile) > oomBefore;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const limit = bachfile.hardware.memory.max;
    // The shell says so on stderr, which under "stderr": "fail" has already stopped the attempt.
    const notFound = /exec: .*: not found/.test(stderr) && (exitCode === 127 || killed().kind === OutcomeKind.stderr);
    let [kind, reason]: [OutcomeKind, string] = notFound
      ? [OutcomeKind.notFound, `program not found in image ${r.imageId.slice(0, 19)}: ${bachfile.binary} (bachfile field binary)${notFoundHint(bachfile.binary, fs.existsSync(path.join(r.cwd, bachfile.binary)))}`]
      : killed().reason ? [killed().kind, killed().reason] : [OutcomeKind.ok, ""];
    if (oom || (kind === OutcomeKind.ok && exitCode === 137 && slot.oomFile === null && limit !== null)) {
      [kind, reason] = [OutcomeKind.oom, oom ? `killed: out of memory (limit ${limit ?? "none"} MiB)` : `killed by SIGKILL, most likely out of memory (limit ${limit} MiB)`];
    } else if (kind === OutcomeKind.ok && bachfile.stderr === "fail" && wroteStderr) {
      [kind, reason] = [OutcomeKind.stderr, `stderr: ${firstLine(stderr)}`];
    } else if (kind === OutcomeKind.ok && exitCode !== 0) {
      [kind, reason] =
        exitCode === -1 ? [OutcomeKind.worker, "the container stopped before the program ended"]
        : exitCode > 128 ? [OutcomeKind.signal, `killed by signal ${exitCode - 128} (exit ${exitCode})`]
        : [OutcomeKind.exit, `exit ${exitCode}`];
    } else if (kind === OutcomeKind.ok && fed.error) {
      [kind, reason] = [OutcomeKind.input, `reading the chunk failed: ${fed.error}`];
    }
    if (exitCode !== 0) slot.broken ||= !(await this.running(slot));

    let bytesOut = 0;
    if (kind === OutcomeKind.ok) {
      bytesOut = fs.statSync(out, { throwIfNoEntry: false })?.size ?? 0;
      await moveFile(out, r.outputFile);
    } else {
      fs.rmSync(out, { force: true });
    }
    return { ok: kind === OutcomeKind.ok, kind, retryable: retryableKind(kind), exitCode, signal: "", reason, stderr, bytesIn: fed.bytes, bytesOut, seconds };
  }

  /** The task is over: its idle containers go now, busy ones when their attempt ends. */
  taskEnded(task: string): void {
    this.endedTasks.add(task);
    const idle = this.idle.get(task) ?? [];
    this.idle.delete(task);
    for (const s of idle) this.removeLater(s);
  }

  /** Removes every container this worker made. */
  async close(): Promise<void> {
    const all = [...this.busy, ...[...this.idle.values()].flat()];
    this.idle.clear();
    this.busy.clear();
    await Promise.all([...all.map((s) => this.remove(s.container.id, s.name)), ...this.removing]);
  }

  private removeLater(slot: SlotContainer): void {
    const p = this.remove(slot.container.id, slot.name).finally(() => this.removing.delete(p));
    this.removing.add(p);
  }

  private async takeSlot(r: ContainerRun): Promise<SlotContainer> {
    this.endedTasks.delete(r.taskId);
    const reuse = this.idle.get(r.taskId)?.pop();
    const slot = reuse ?? (await this.create(r));
    this.busy.add(slot);
    return slot;
  }

  private giveBack(slot: SlotContainer): void {
    this.busy.delete(slot);
    if (slot.broken || this.endedTasks.has(slot.task)) {
      this.removeLater(slot);
      return;
    }
    const list = this.idle.get(slot.task) ?? [];
    list.push(slot);
    this.idle.set(slot.task, list);
  }

  private async create(r: ContainerRun): Promise<SlotContainer> {
    const hw = r.bachfile.hardware;
    const name = `bach-${r.taskId}-${this.opts.key.slice(0, 8)}-${process.pid}-${++this.made}`;
    const dir = path.join(this.root, name);
    fs.mkdirSync(path.join(dir, "scratch"), { recursive: true });
    // The program runs as another user: it must be able to read the pipe and write the output here.
    fs.chmodSync(dir, 0o777);
    fs.chmodSync(path.join(dir, "scratch"), 0o1777);
    execFileSync("mkfifo", ["-m", "0666", path.join(dir, "in")]);
    const memory = hw.memory.max === null ? undefined : hw.memory.max * 2 ** 20;
    const binary = r.bachfile.binary.includes("/") ? path.posix.resolve("/task", r.bachfile.binary) : r.bachfile.binary;
    const token = randomBytes(12).toString("hex");
    const container = await this.docker.createContainer({
      name,
      Image: r.imageId,
      Cmd: ["sh", "-c", KEEPER, "sh", token, binary, ...r.bachfile.args],
      OpenStdin: true,
      StdinOnce: false,
      Env: Object.entries({ ...r.bachfile.env, TMPDIR: "/scratch", HOME: "/scratch" }).map(([k, v]) => `${k}=${v}`),
      User: CONTAINER_USER,
      WorkingDir: "/task",
      Labels: { [LABEL]: this.opts.key, [PID_LABEL]: String(process.pid), [TASK_LABEL]: r.taskId },
      HostConfig: {
        Binds: [`${r.cwd}:/task:ro`, `${dir}:/bach`, `${path.join(dir, "scratch")}:/scratch`],
        NetworkMode: hw.network === "none" ? "none" : "default",
        NanoCpus: hw.cpu.max === null ? undefined : Math.round(hw.cpu.max * 1e9),
        Memory: memory,
        MemorySwap: memory, // the same as Memory: no swap beyond the limit
        PidsLimit: 512,
        SecurityOpt: ["no-new-privileges"],
        CapDrop: ["ALL"],
        DeviceRequests: hw.graphics ? [{ Driver: "", Count: hw.graphics.count, Capabilities: [["gpu"]] }] : undefined,
      },
    });
    // Attached before it starts, so nothing the keeper says is missed.
    const attached = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as NodeJS.ReadWriteStream;
    const slot: SlotContainer = {
      name,
      task: r.taskId,
      container,
      dir,
      oomFile: null,
      broken: false,
      control: attached,
      marker: Buffer.from(`\x1e${token} `),
      onStderr: null,
      runs: 0,
      stopped: new Promise<void>((resolve) => {
        attached.on("end", resolve);
        attached.on("close", resolve);
        // A broken attachment means the container is gone: the attempt ends as if it stopped.
        attached.on("error", resolve);
      }),
    };
    const stderrSink = new Writable({
      write: (b: Buffer, _enc, cb) => {
        slot.onStderr?.(b);
        cb();
      },
    });
    this.docker.modem.demuxStream(attached, new Writable({ write: (_b, _enc, cb) => cb() }), stderrSink);
    await container.start();
    const info = await container.inspect();
    if (!info.State.Running) {
      const logs = (await container.logs({ stdout: true, stderr: true, tail: 5 })).toString().replace(/[\x00-\x08]/g, "").trim();
      await this.remove(container.id, name);
      throw new Error(`its keeper process (sh) exited at once${logs ? `: ${logs}` : ""}; Bach needs /bin/sh in the image`);
    }
    slot.oomFile = oomCounterFile(info.State.Pid);
    return slot;
  }

  private async running(slot: SlotContainer): Promise<boolean> {
    const info = await slot.container.inspect().catch(() => null);
    return info?.State.Running === true;
  }

  private async remove(id: string, name: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      if (statusCode(err) !== 404 && statusCode(err) !== 409) this.opts.log.warn({ container: name, err: dockerMessage(err) }, "could not remove a container");
    }
    if (name) fs.rmSync(path.join(this.root, name), { recursive: true, force: true });
  }

  /** Loads the image from the coordinator when this engine lacks it; once per image at a time. */
  private ensureImage(id: string): Promise<void> {
    let p = this.images.get(id);
    if (!p) {
      p = (async () => {
        if (await imageId(this.docker, id)) return;
        this.opts.log.info({ image: id }, "loading the task's image from the coordinator");
        await loadImage(this.docker, this.opts.fetchImage(id));
        if (!(await imageId(this.docker, id))) throw new Error(`the engine loaded the coordinator's copy but has no ${id}`);
      })();
      this.images.set(id, p);
      p.catch(() => this.images.delete(id));
    }
    return p;
  }
}

/** Feeds the chunk into the named pipe from a dd process: a file range as it is, or a stream through dd's stdin. */
function feed(r: ContainerRun, fifo: string): { process: ChildProcess; done: Promise<{ bytes: number; error: string }> } {
  const input = r.input;
  const args =
    input.kind === "range"
      ? [`if=${input.path}`, "iflag=skip_bytes,count_bytes", `skip=${input.offset}`, `count=${input.length}`]
      : [];
  const dd = spawn("dd", [...args, `of=${fifo}`, "bs=1M", "status=none"], { stdio: [input.kind === "stream" ? "pipe" : "ignore", "ignore", "pipe"] });
  let bytes = input.kind === "range" ? input.length : 0;
  let error = "";
  let ddStderr = "";
  dd.stderr?.on("data", (b: Buffer) => (ddStderr += b.toString()));
  if (input.kind === "stream" && dd.stdin) {
    feedFrames(input.frames, dd.stdin, (n) => (bytes += n)).catch((err: Error) => {
      error = err.message;
      dd.kill("SIGKILL");
    });
  }
  const done = new Promise<{ bytes: number; error: string }>((resolve) => {
    dd.on("error", (err) => {
      error ||= `could not start dd: ${err.message}`;
      resolve({ bytes, error });
    });
    dd.on("close", (code, signal) => {
      // SIGPIPE or EPIPE: the program stopped reading early, which is its right; SIGKILL: we stopped it.
      if (code !== 0 && signal === null && !/Broken pipe/.test(ddStderr)) error ||= `dd: ${ddStderr.trim() || `exit ${code}`}`;
      resolve({ bytes, error });
    });
  });
  return { process: dd, done };
}

/** The file that counts OOM kills in a container's memory cgroup (v1 or v2), found from its first process. */
function oomCounterFile(pid: number): string | null {
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
      const [, controllers, where] = line.split(":");
      if (controllers === undefined || where === undefined) continue;
      const candidates =
        controllers === "" ? [path.join("/sys/fs/cgroup", where, "memory.events")]
        : controllers.split(",").includes("memory") ? [path.join("/sys/fs/cgroup/memory", where, "memory.oom_control")]
        : [];
      for (const file of candidates) if (fs.existsSync(file)) return file;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return null;
}

function readOomKills(file: string | null): number {
  if (!file) return 0;
  const m = /^oom_kill (\d+)$/m.exec(fs.readFileSync(file, "utf8"));
  return m ? Number(m[1]) : 0;
}

/** One shell word holding `value` exactly (for the attempt's variables in /bach/env). */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`;
}

function emptyFolder(dir: string): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
}

/** Renames into place, or copies when the two paths are on different filesystems. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await fs.promises.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    await fs.promises.copyFile(from, to);
    await fs.promises.rm(from, { force: true });
  }
}

function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string };
  return (e.json?.message ?? e.message ?? String(err)).trim();
}
