// The Docker runtime: a task with an image runs each chunk in a container under the bachfile's limits.
//
// One long-lived container per slot and task, and a fresh program process per chunk, started by the
// keeper (worker/keeper.c, a static binary mounted read-only at /.bach-keeper, so an image needs no
// shell; worker/keeper.ts speaks its protocol): it reads an attempt's line on its stdin (attached from here), runs the program once, kills
// whatever the program left running, empties /scratch, and reports the exit status on its stderr after
// the program's own stderr, so the two arrive in order. Measured here: a new container ~0.55 s, a
// `docker exec` per chunk ~0.15 s, the keeper a few ms. The chunk reaches the program's stdin through
// a named pipe fed on this side by dd, and its stdout goes to a file that is copied (in the kernel)
// to the attempt's output file once every process of the attempt has gone: no chunk byte passes
// through dockerd. The container's memory limit holds one program at a time, so an out-of-memory
// kill is read from the container's memory cgroup.
//
// The worker is root here and the program is hostile until shown otherwise: nothing the program can
// write is ever a path this file opens. The pipe and the stdout file live in a root-owned 0755 folder
// mounted read-only at /bach (a FIFO opens for writing on a read-only mount; the stdout file is bound
// over its own entry, writable but not replaceable), the output file is a path only the worker knows,
// and /scratch is emptied from inside the container.
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
import { feedFailureKind, notFoundHint, OutcomeKind, retryableKind } from "../core/outcome";
import { controlLine, errnoName, KEEPER, KEEPER_IN_CONTAINER, type KeeperReport, keeperMissing, reportMarker, reportReader, tokenLine } from "./keeper";
import { rangeFed } from "./fed-bytes";
import { feedFrames, type AttemptOutcome, type AttemptRun, type RunningAttempt } from "./process-runtime";
import { AttemptSupervisor } from "./attempt-supervisor";

const PID_LABEL = "org.bach.pid";
const TASK_LABEL = "org.bach.task";

export interface ContainerRun extends AttemptRun {
  taskId: string;
  imageId: string;
}

interface SlotContainer {
  name: string;
  task: string;
  container: Docker.Container;
  /** On this machine, root's: `bach/` (the stdin pipe and the stdout file, at /bach) and `scratch/`. */
  dir: string;
  /** The container's memory cgroup file that counts OOM kills, when this machine can read it. */
  oomFile: string | null;
  /** Killed or dead: removed instead of reused. */
  broken: boolean;
  /** The keeper's stdin: one line per attempt to run. */
  control: NodeJS.WritableStream;
  /** Marks the end of an attempt in the keeper's stderr: random and known only to the keeper, so a program cannot forge it. */
  marker: Buffer;
  /** Where the keeper's stderr goes: the current attempt's reader. */
  onStderr: ((b: Buffer) => void) | null;
  /** Settles when the container's attached streams end: it stopped. */
  stopped: Promise<void>;
  /** Attempts run in it so far: the number the keeper echoes back names the one that ended. */
  runs: number;
  /** The program it runs (its Cmd): a map-reduce task's map and reduce programs each have their own containers. */
  program: string;
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
  /** Why no container can run here (no keeper was built), or "". */
  private readonly unable: string;

  constructor(
    private readonly docker: Docker,
    private readonly opts: DockerRuntimeOptions,
  ) {
    this.root = path.join(opts.dataDir, "containers");
    fs.mkdirSync(this.root, { recursive: true });
    this.unable = keeperMissing();
    if (this.unable) opts.log.warn(this.unable);
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
    let slot: SlotContainer | null = null;
    let feeder: ChildProcess | null = null;
    let fed = (): number => 0;
    const supervisor = new AttemptSupervisor(r.bachfile, () => {
      feeder?.kill("SIGKILL");
      if (slot) {
        slot.broken = true;
        slot.container.kill().catch((err: Error) => this.opts.log.debug({ err: err.message }, "container already stopped"));
      }
    });
    /** An attempt that ended before its program started. */
    const before = (startFailure: [OutcomeKind, string] | null) => supervisor.verdict({ startFailure, exitCode: -1, exit: null }, { bytesIn: 0, bytesOut: 0 });

    const done = (async (): Promise<AttemptOutcome> => {
      if (this.unable) return before([OutcomeKind.worker, `worker ${r.workerName}: ${this.unable}`]);
      try {
        await this.ensureImage(r.imageId);
      } catch (err) {
        return before([OutcomeKind.badImage, `image missing and could not be loaded: ${(err as Error).message}`]);
      }
      if (supervisor.stoppedFor) return before(null);
      try {
        slot = await this.takeSlot(r);
      } catch (err) {
        return before([OutcomeKind.worker, `could not start a container of ${r.imageId.slice(0, 19)} on worker ${r.workerName}: ${dockerMessage(err)}`]);
      }
      if (supervisor.stoppedFor) {
        this.giveBack(slot);
        return before(null);
      }
      try {
        return await this.runIn(slot, r, supervisor, (f) => {
          feeder = f.process;
          fed = f.fed;
        });
      } finally {
        this.giveBack(slot);
      }
    })();
    return { done, kill: (reason, kind) => supervisor.kill(reason, kind), fed: () => fed() };
  }

  private async runIn(slot: SlotContainer, r: ContainerRun, supervisor: AttemptSupervisor, setFeeder: (f: Feeding) => void): Promise<AttemptOutcome> {
    const { bachfile } = r;
    const stdin = path.join(slot.dir, "bach", "in");
    const stdout = path.join(slot.dir, "bach", "out");
    const oomBefore = readOomKills(slot.oomFile);

    const attemptId = ++slot.runs;
    let report: KeeperReport | null = null;
    const ended = new Promise<void>((resolve) => {
      slot.onStderr = reportReader(slot.marker, attemptId, (b) => supervisor.stderr(b), (r) => {
        report = r;
        slot.onStderr = null;
        resolve();
      });
      slot.stopped.then(resolve, resolve);
    });
    const feeding = feed(r, stdin);
    setFeeder(feeding);
    slot.control.write(controlLine(attemptId, r.env));
    supervisor.arm();
    await ended;
    supervisor.ended();
    slot.onStderr = null;
    // The program has gone, so the pipe has no reader: a feeder still waiting to open it never will.
    feeding.process.kill("SIGKILL");
    const fed = await feeding.done;

    const done = report as KeeperReport | null;
    const exitCode = done?.status ?? -1;
    if (done && done.scratchErrno !== 0) {
      // The next attempt must not see this one's files: a fresh container instead.
      this.opts.log.warn({ container: slot.name, errno: done.scratchErrno }, "could not empty /scratch; the container will not be reused");
      slot.broken = true;
    }
    const oomAfter = readOomKills(slot.oomFile);
    let oom = oomAfter !== null && oomBefore !== null && oomAfter > oomBefore;
    if (exitCode !== 0) {
      const state = await this.state(slot);
      slot.broken ||= !state.running;
      // A dead container's cgroup is gone with its counter: the engine's own record says instead.
      if (oomAfter === null) oom ||= state.oomKilled;
    }
    const limit = bachfile.hardware.memory.max;
    // Without a counter to read, a SIGKILL nobody here sent, under a memory limit, is most likely the kernel's.
    const likelyOom = !oom && !supervisor.stoppedFor && exitCode === 137 && slot.oomFile === null && limit !== null;
    const verdict = supervisor.verdict(
      {
        startFailure: done && done.step !== "-" ? this.startFailure(r, done) : null,
        oom: oom ? `killed: out of memory (limit ${limit ?? "none"} MiB)` : likelyOom ? `killed by SIGKILL, most likely out of memory (limit ${limit} MiB)` : null,
        exitCode,
        exit:
          exitCode === 0 ? null
          : exitCode === -1 ? [OutcomeKind.worker, "the container stopped before the program ended"]
          : exitCode > 128 ? [OutcomeKind.signal, `killed by signal ${exitCode - 128} (exit ${exitCode})`]
          : [OutcomeKind.exit, `exit ${exitCode}`],
        feedError: fed.error,
        feedErrorKind: fed.errorKind,
      },
      { bytesIn: fed.bytes, bytesOut: 0 },
    );

    let outcome = verdict;
    if (verdict.ok) {
      // Every process that could write stdout has gone (the keeper saw to it before it reported), so
      // this copy is the output for good. A copy, not a rename: the container holds this file.
      try {
        await fs.promises.copyFile(stdout, r.outputFile, fs.constants.COPYFILE_FICLONE);
        outcome = { ...verdict, bytesOut: (await fs.promises.stat(r.outputFile)).size };
      } catch (err) {
        outcome = { ...verdict, ok: false, kind: OutcomeKind.worker, retryable: retryableKind(OutcomeKind.worker), reason: `writing the output failed: ${(err as Error).message}` };
        await fs.promises.rm(r.outputFile, { force: true });
      }
    }
    // Its disk space back now (the keeper truncates it again when the next attempt opens it). Gone
    // already when the worker is closing and has removed its containers.
    await fs.promises.truncate(stdout, 0).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    return outcome;
  }

  /** The keeper could not start the program: named as the user can act on it. */
  private startFailure(r: ContainerRun, report: KeeperReport): [OutcomeKind, string] {
    const { binary } = r.bachfile;
    const code = errnoName(report.errno);
    if (report.step !== "exec") return [OutcomeKind.worker, `the keeper could not set up the program's ${report.step} in the container: ${code}`];
    if (code !== "ENOENT") return [OutcomeKind.worker, `could not start ${binary} in image ${r.imageId.slice(0, 19)}: ${code}`];
    const inTaskFolder = fs.existsSync(path.join(r.cwd, binary));
    // A script that is there but will not start names an interpreter (its #! line) the image lacks.
    const why = binary.includes("/") && inTaskFolder ? "; it is in the task folder, so the interpreter on its #! line is not in the image" : notFoundHint(binary, inTaskFolder);
    return [OutcomeKind.notFound, `program not found in image ${r.imageId.slice(0, 19)}: ${binary} (bachfile field binary)${why}`];
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
    const idle = this.idle.get(r.taskId) ?? [];
    const same = idle.findIndex((s) => s.program === programOf(r));
    const reuse = same >= 0 ? idle.splice(same, 1)[0] : undefined;
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
    // Root's, 0755, and mounted read-only: the program (another user, no capabilities) can open the
    // pipe and write the stdout file in bach/ but never replace them. Its own files go in scratch/,
    // which this side never opens while the container lives (the keeper empties it from inside,
    // where a link leads nowhere of ours).
    fs.mkdirSync(path.join(dir, "bach"), { recursive: true, mode: 0o755 });
    fs.mkdirSync(path.join(dir, "scratch"), { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(path.join(dir, "bach"), 0o755);
    fs.chmodSync(path.join(dir, "scratch"), 0o1777);
    execFileSync("mkfifo", ["-m", "0666", path.join(dir, "bach", "in")]);
    fs.writeFileSync(path.join(dir, "bach", "out"), "");
    fs.chmodSync(path.join(dir, "bach", "out"), 0o666);
    const memory = hw.memory.max === null ? undefined : hw.memory.max * 2 ** 20;
    const binary = r.bachfile.binary.includes("/") ? path.posix.resolve("/task", r.bachfile.binary) : r.bachfile.binary;
    const token = randomBytes(12).toString("hex");
    const container = await this.docker.createContainer({
      name,
      Image: r.imageId,
      // The keeper, whatever the image's own entrypoint: Bach runs the bachfile's binary, nothing else.
      Entrypoint: [KEEPER_IN_CONTAINER],
      Cmd: [binary, ...r.bachfile.args],
      OpenStdin: true,
      StdinOnce: false,
      Env: Object.entries({ ...r.bachfile.env, TMPDIR: "/scratch", HOME: "/scratch" }).map(([k, v]) => `${k}=${v}`),
      User: CONTAINER_USER,
      WorkingDir: "/task",
      Labels: { [LABEL]: this.opts.key, [PID_LABEL]: String(process.pid), [TASK_LABEL]: r.taskId },
      HostConfig: {
        Binds: [
          `${r.cwd}:/task:ro`,
          `${path.join(dir, "bach")}:/bach:ro`,
          // Over its own entry in the read-only /bach: its bytes are the program's, its name is not.
          `${path.join(dir, "bach", "out")}:/bach/out`,
          `${path.join(dir, "scratch")}:/scratch`,
          `${KEEPER}:${KEEPER_IN_CONTAINER}:ro`,
        ],
        NetworkMode: hw.network === "none" ? "none" : "default",
        NanoCpus: hw.cpu.max === null ? undefined : Math.round(hw.cpu.max * 1e9),
        Memory: memory,
        MemorySwap: memory, // the same as Memory: no swap beyond the limit
        PidsLimit: 512,
        // The keeper must be PID 1 whatever the engine's default (dockerd --init): then kill(-1) and
        // reaping every orphan prove that nothing of an attempt runs when it reports.
        Init: false,
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
      marker: reportMarker(token),
      onStderr: null,
      runs: 0,
      program: programOf(r),
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
    try {
      await container.start();
    } catch (err) {
      // Created but never started: removed here, or it stays until this worker restarts.
      await this.remove(container.id, name);
      throw err;
    }
    // The keeper's first line: the word that marks its reports, never in its argv (see keeper.c).
    attached.write(tokenLine(token));
    const info = await container.inspect();
    if (!info.State.Running) {
      const logs = (await container.logs({ stdout: true, stderr: true, tail: 5 })).toString().replace(/[\x00-\x08]/g, "").trim();
      await this.remove(container.id, name);
      throw new Error(`its keeper (${KEEPER_IN_CONTAINER}) exited at once${logs ? `: ${logs}` : ""}`);
    }
    slot.oomFile = oomCounterFile(info.State.Pid);
    return slot;
  }

  private async state(slot: SlotContainer): Promise<{ running: boolean; oomKilled: boolean }> {
    const info = await slot.container.inspect().catch(() => null);
    return { running: info?.State.Running === true, oomKilled: info?.State.OOMKilled === true };
  }

  private async remove(id: string, name: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      // 409: another call is removing it, and removes its folder after.
      if (statusCode(err) === 409) return;
      if (statusCode(err) !== 404) {
        // Its processes may live on: scratch/ stays, since walking it now could follow a link they swap in.
        this.opts.log.warn({ container: name, err: dockerMessage(err) }, "could not remove a container; its folder stays");
        return;
      }
    }
    // Nothing of the program runs any more, so nothing swaps an entry while rm walks (it never follows links).
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

interface Feeding {
  process: ChildProcess;
  done: Promise<{ bytes: number; error: string; errorKind: OutcomeKind }>;
  /** Bytes fed so far (heartbeats report it). */
  fed(): number;
}

/** Feeds the chunk into the named pipe from a dd process: a file range as it is, or a stream through dd's stdin. */
function feed(r: ContainerRun, fifo: string): Feeding {
  const input = r.input;
  const args =
    input.kind === "range"
      ? [`if=${input.path}`, "iflag=skip_bytes,count_bytes", `skip=${input.offset}`, `count=${input.length}`]
      : [];
  const dd = spawn("dd", [...args, `of=${fifo}`, "bs=1M", "status=none"], { stdio: [input.kind === "stream" ? "pipe" : "ignore", "ignore", "pipe"] });
  let bytes = input.kind === "range" ? input.length : 0;
  let error = "";
  let errorKind: OutcomeKind = OutcomeKind.input;
  let ddStderr = "";
  dd.stderr?.on("data", (b: Buffer) => (ddStderr += b.toString()));
  if (input.kind === "stream" && dd.stdin) {
    feedFrames(input.frames, dd.stdin, (n) => (bytes += n)).catch((err: Error) => {
      error = err.message;
      errorKind = feedFailureKind(err);
      dd.kill("SIGKILL");
    });
  }
  const done = new Promise<{ bytes: number; error: string; errorKind: OutcomeKind }>((resolve) => {
    dd.on("error", (err) => {
      error ||= `could not start dd: ${err.message}`;
      resolve({ bytes, error, errorKind });
    });
    dd.on("close", (code, signal) => {
      // SIGPIPE or EPIPE: the program stopped reading early, which is its right; SIGKILL: we stopped it.
      if (code !== 0 && signal === null && !/Broken pipe/.test(ddStderr)) error ||= `dd: ${ddStderr.trim() || `exit ${code}`}`;
      resolve({ bytes, error, errorKind });
    });
  });
  let soFar = 0;
  let ended = false;
  const fed = (): number => {
    if (input.kind === "stream" || ended) return bytes;
    soFar = rangeFed(dd.pid, input.offset, input.length, soFar);
    return soFar;
  };
  void done.then(() => (ended = true));
  return { process: dd, done, fed };
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

/** The count, or null once the container has died (its cgroup goes with it). */
function readOomKills(file: string | null): number | null {
  if (!file) return 0;
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string };
  return (e.json?.message ?? e.message ?? String(err)).trim();
}

/** What a container runs, for reuse: only an attempt of the same task and the same program may take it. */
function programOf(r: ContainerRun): string {
  return JSON.stringify([r.bachfile.binary, ...r.bachfile.args]);
}
