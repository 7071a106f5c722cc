// The one small harness integration tests share: start real coordinators and workers on loopback with
// temp data dirs, run `bach` as a user would, make data, and wait on conditions with deadlines.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { once } from "node:events";

export const root = path.resolve(__dirname, "..", "..");
export const bin = {
  bach: path.join(root, "dist", "cli", "main.js"),
  coordinator: path.join(root, "dist", "coordinator", "main.js"),
  worker: path.join(root, "dist", "worker", "main.js"),
};

const cleanups: (() => void)[] = [];
process.on("exit", () => {
  for (const c of cleanups.reverse()) c();
});

/** Runs `cleanup` (synchronous) when the test process exits; the last registered runs first. */
export function atExit(cleanup: () => void): void {
  cleanups.push(cleanup);
}

export function tempDir(prefix = "bach-test-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A loopback port nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  const net = await import("node:net");
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as import("node:net").AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/** Polls `check` until it returns a value, or fails after `deadlineMs` naming what it waited for. */
export async function waitFor<T>(what: string, check: () => T | null | undefined | false | Promise<T | null | undefined | false>, deadlineMs = 20_000): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Daemon {
  proc: ChildProcess;
  stderr(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A node program of ours; `wrap` runs it through a command first (say, ip netns exec HOST). */
function daemon(args: string[], env: NodeJS.ProcessEnv = {}, wrap: string[] = []): Daemon & { stdout(): string } {
  const [command, ...prefix] = [...wrap, process.execPath];
  const proc = spawn(command, [...prefix, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  const kill = () => proc.exitCode === null && proc.signalCode === null && proc.kill("SIGKILL");
  cleanups.push(kill);
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, "exit");
      proc.kill(signal);
      await exited;
    },
  };
}

export interface Cluster {
  address: string;
  token: string;
  dataDir: string;
  coordinator: Daemon;
  workers: Daemon[];
  /**
   * A worker; by default it fetches chunks over gRPC as a worker on another machine would. `dataDir`
   * reuses a worker's folder (a restart), `env` sets e.g. DOCKER_HOST, `args` adds flags; `name: null`
   * gives no --name (the worker's default name).
   */
  addWorker(opts?: { slots?: number; name?: string | null; localSpool?: boolean; dataDir?: string; env?: NodeJS.ProcessEnv; args?: string[]; wrap?: string[] }): Promise<Daemon>;
  /** SIGKILLs the coordinator and starts a new one on the same ports and data dir. */
  restartCoordinator(pauseMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startCluster(
  opts: { workers?: number; slots?: number; heartbeat?: string; lostAfter?: string; dataListen?: string; host?: string; port?: number; token?: string; coordinatorArgs?: string[]; coordinatorEnv?: NodeJS.ProcessEnv; dataDir?: string } = {},
): Promise<Cluster> {
  const dataDir = opts.dataDir ?? tempDir("bach-coord-");
  const token = opts.token ?? randomBytes(8).toString("hex");
  const start = (listen: string, dataListen: string | undefined) =>
    daemon([bin.coordinator, "start", "--listen", listen, "--data-dir", dataDir, "--token", token,
      "--heartbeat", opts.heartbeat ?? "200ms", "--lost-after", opts.lostAfter ?? "2s", ...(dataListen ? ["--data-listen", dataListen] : []), ...(opts.coordinatorArgs ?? [])], { BACH_LOG_LEVEL: "info", ...opts.coordinatorEnv });
  const host = opts.host ?? "127.0.0.1";
  const coordinator = start(`${host}:${opts.port ?? 0}`, opts.dataListen);
  // A coordinator that exits or hangs before it listens says why in the error, not only "timed out".
  const address = await waitFor("the coordinator to listen", () => /listening on (\S+)/.exec(coordinator.stdout())?.[1] ?? (coordinator.proc.exitCode !== null && "exited")).catch((err: Error) => {
    throw new Error(`${err.message}; its stderr:\n${coordinator.stderr().slice(-2000)}`);
  });
  if (address === "exited") throw new Error(`the coordinator exited (${coordinator.proc.exitCode}) before it listened:\n${coordinator.stderr().slice(-2000)}`);
  const workers: Daemon[] = [];
  const cluster: Cluster = {
    address,
    token,
    dataDir,
    coordinator,
    workers,
    async addWorker(w = {}) {
      const name = w.name === null ? null : (w.name ?? `worker-${workers.length + 1}`);
      const d = daemon([bin.worker, "join", address, "--token", token, "--slots", String(w.slots ?? opts.slots ?? 1), ...(name === null ? [] : ["--name", name]),
        "--data-dir", w.dataDir ?? tempDir("bach-worker-"), ...(w.localSpool ? [] : ["--no-local-spool"]), ...(w.args ?? [])], { BACH_LOG_LEVEL: "info", ...w.env }, w.wrap);
      await waitFor(`worker ${name ?? "(unnamed)"} to join`, () => d.stderr().includes('"msg":"joined"'));
      workers.push(d);
      return d;
    },
    async restartCoordinator(pauseMs = 500) {
      const dataPort = /"dataPort":(\d+)/.exec(cluster.coordinator.stderr())?.[1];
      await cluster.coordinator.stop("SIGKILL");
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      const next = start(address, dataPort ? `${host}:${dataPort}` : undefined);
      await waitFor("the restarted coordinator to listen", () => /listening on/.test(next.stdout()) || next.proc.exitCode !== null);
      if (next.proc.exitCode !== null) throw new Error(`the restarted coordinator exited: ${next.stderr()}`);
      cluster.coordinator = next;
    },
    async stop() {
      await Promise.all(workers.map((w) => w.stop("SIGKILL")));
      await cluster.coordinator.stop();
    },
  };
  for (let i = 0; i < (opts.workers ?? 0); i++) await cluster.addWorker();
  return cluster;
}

export interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs `bach` with args in `cwd` and collects what it printed. Its stdin: `pipeFile` through a pipe
 * (as `cat f | bach`), or `stdinFile` redirected (as `bach < f`, which bach reads in place), or none.
 */
export async function runBach(
  args: string[],
  o: { cwd: string; stdinFile?: string; pipeFile?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; onStart?(p: ChildProcess): void; wrap?: string[] },
): Promise<Run> {
  const stdin = o.pipeFile ? "pipe" : o.stdinFile ? fs.openSync(o.stdinFile, "r") : "ignore";
  // `wrap` runs it through a command first (say, unshare -m sh -c ...).
  const [command, ...prefix] = [...(o.wrap ?? []), process.execPath];
  const proc = spawn(command, [...prefix, bin.bach, ...args], {
    cwd: o.cwd,
    env: { ...process.env, BACH_HOME: tempDir("bach-home-"), ...o.env },
    stdio: [stdin, "pipe", "pipe"],
  });
  if (typeof stdin === "number") fs.closeSync(stdin);
  if (o.pipeFile && proc.stdin) {
    // bach may stop reading early (a failed task): that is not the test's error.
    proc.stdin.on("error", () => undefined);
    fs.createReadStream(o.pipeFile).pipe(proc.stdin);
  }
  cleanups.push(() => proc.exitCode === null && proc.kill("SIGKILL"));
  o.onStart?.(proc);
  const out: Buffer[] = [];
  let err = "";
  proc.stdout?.on("data", (b: Buffer) => out.push(b));
  proc.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  // A hung run fails its test instead of holding CI until its limit.
  const limit = setTimeout(() => {
    err += `\n(test harness: bach still running after ${o.timeoutMs ?? 180_000} ms; killed)`;
    proc.kill("SIGKILL");
  }, o.timeoutMs ?? 180_000);
  const [code] = (await once(proc, "close")) as [number | null];
  clearTimeout(limit);
  return { code, stdout: Buffer.concat(out), stderr: err };
}

/** The reference: the program run once over the whole input. */
export function runOnce(cwd: string, binary: string, args: string[], inputFile: string): Buffer {
  const r = spawnSync(binary, args, { cwd, input: fs.readFileSync(inputFile), maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`reference run of ${binary} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A task folder with a bachfile and files, in a temp dir. */
export function taskFolder(bachfile: object, files: Record<string, string> = {}): string {
  const dir = tempDir("bach-task-");
  fs.writeFileSync(path.join(dir, "bachfile.json"), JSON.stringify(bachfile, null, 2));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o755 });
  return dir;
}

/** GDELT-like rows from the project's own example generator. */
export function gdeltFile(bytes: number): string {
  const file = path.join(tempDir("bach-data-"), "events.tsv");
  const r = spawnSync(process.execPath, [path.join(root, "examples", "data", "gen-gdelt.js"), String(bytes), file]);
  if (r.status !== 0) throw new Error(`gen-gdelt failed: ${r.stderr.toString()}`);
  return file;
}

export const exampleDir = (name: string) => path.join(root, "examples", name);

/** One entry of a hand-made tar: any name, type and mode, as a hostile uploader could write them. */
export interface TarEntrySpec {
  name: string;
  type?: import("tar-stream").Header["type"];
  mode?: number;
  body?: string;
  linkname?: string;
}

/** Writes a tar of exactly these entries (tar-stream, no checks) into a temp dir; returns its path. */
export async function craftTar(entries: TarEntrySpec[]): Promise<string> {
  const tar = await import("tar-stream");
  const { pipeline } = await import("node:stream/promises");
  const file = path.join(tempDir("bach-tar-"), "bundle.tar");
  const pack = tar.pack();
  const writing = pipeline(pack, fs.createWriteStream(file));
  for (const e of entries) {
    const type = e.type ?? "file";
    const header = { name: e.name, type, mode: e.mode ?? 0o644, linkname: e.linkname, mtime: new Date(0), devmajor: 1, devminor: 3 };
    await new Promise<void>((resolve, reject) => {
      const written = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === "file") pack.entry(header, e.body ?? "", written);
      else pack.entry(header, written);
    });
  }
  pack.finalize();
  await writing;
  return file;
}
