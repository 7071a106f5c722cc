// The benchmark: 1 GiB of GDELT-like rows through a light mapper, side by side in one run: one mapper
// process, GNU parallel, and Bach embedded (file and stdin) and on a loopback cluster (stdin). Prints
// wall time, MB/s, the ratio to one process, and peak RSS of the CLI and the coordinator. With a Docker
// Engine it adds the same task in containers, and the per-chunk cost of a container attempt.
// Usage: npm run bench -- [--bytes N] [--runs N] [--only name,...] [--network-workers]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import net from "node:net";
import Database from "better-sqlite3";
import { BASE_IMAGE, connectDocker, dockerAnswers, imageId } from "../core/docker";

const root = path.resolve(__dirname, "..", "..");
const shared = path.resolve(root, "..", "shared", "bench");
const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const BYTES = Number(flag("--bytes", String(1 << 30)));
const RUNS = Number(flag("--runs", "2"));
const ONLY = flag("--only", "").split(",").filter(Boolean);
/** --network-workers: the cluster's workers fetch chunks and send outputs over the network (the data port), as on other machines. */
const NETWORK_WORKERS = args.includes("--network-workers");

const gen = fs.existsSync(path.join(shared, "gen-gdelt.js")) ? path.join(shared, "gen-gdelt.js") : path.join(root, "examples", "data", "gen-gdelt.js");
const mapperFile = fs.existsSync(path.join(shared, "mapper-military.js")) ? path.join(shared, "mapper-military.js") : path.join(root, "examples", "gdelt-filter", "filter.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "bach-bench-"));
const data = path.join(work, "gdelt.tsv");
const taskDir = path.join(work, "task");
const bach = path.join(root, "dist", "cli", "main.js");

interface Row {
  name: string;
  wall: number;
  /** Busy CPU seconds of the whole machine while the row ran (see busyCpuSeconds); NaN where unknown. */
  cpu: number;
  md5: string;
  cliRss: number;
  coordRss: number;
}

function peakRss(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
  } catch {
    return 0; // it has exited; the last poll stands
  }
}

/**
 * The machine's busy CPU time so far, from /proc/stat (user, nice, system, irq, softirq; not idle,
 * iowait or steal), in seconds. Read around a row, it counts every process the row keeps busy: cat,
 * the CLI, coordinator and workers, the mappers, md5sum, dockerd. No schedule of that work on N cores
 * can take less wall time than that CPU time over N. NaN off Linux.
 */
function busyCpuSeconds(): number {
  try {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq] = fields;
    return (user + nice + system + irq + softirq) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

/** Runs `cmd` with its stdout into md5sum; times the whole, polls the peak RSS of `cmd` itself. */
async function timed(cmd: string, cmdArgs: string[], opts: { stdinFile?: string; catFile?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<{ wall: number; cpu: number; md5: string; rss: number }> {
  const started = process.hrtime.bigint();
  const cpuBefore = busyCpuSeconds();
  // catFile: a real pipe from cat, as in `cat FILE | cmd`; stdinFile: a redirect, as in `cmd < FILE`.
  const cat = opts.catFile ? spawn("cat", [opts.catFile], { stdio: ["ignore", "pipe", "inherit"] }) : null;
  const stdin = cat?.stdout ?? (opts.stdinFile ? fs.openSync(opts.stdinFile, "r") : "ignore");
  const proc = spawn(cmd, cmdArgs, { stdio: [stdin, "pipe", "inherit"], env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? work });
  if (typeof stdin === "number") fs.closeSync(stdin);
  cat?.stdout?.destroy();
  const md5 = spawn("md5sum", [], { stdio: [proc.stdout ?? "ignore", "pipe", "inherit"] });
  let rss = 0;
  const poll = setInterval(() => (rss = Math.max(rss, peakRss(proc.pid))), 50);
  let sum = "";
  md5.stdout?.on("data", (b: Buffer) => (sum += b.toString()));
  const summed = once(md5, "close");
  const [code] = (await once(proc, "exit")) as [number];
  clearInterval(poll);
  await summed;
  if (code !== 0) throw new Error(`${cmd} ${cmdArgs.join(" ")} exited ${code}`);
  return { wall: Number(process.hrtime.bigint() - started) / 1e9, cpu: busyCpuSeconds() - cpuBefore, md5: sum.split(" ")[0], rss };
}

function sh(script: string) {
  return timed("bash", ["-c", script]);
}

interface BenchCluster {
  address: string;
  coordinator: ChildProcess;
  workers: ChildProcess[];
  dataDir: string;
  /** SIGKILLs the coordinator and starts it again on the same ports and data dir. */
  restartCoordinator(): Promise<void>;
  stop(): void;
}

async function startCoordinator(dataDir: string, listen: string, dataListen: string, extra: string[] = []): Promise<{ proc: ChildProcess; address: string }> {
  const proc = spawn(process.execPath, [path.join(root, "dist", "coordinator", "main.js"), "start", "--listen", listen, "--data-listen", dataListen, "--data-dir", dataDir, "--token", "bench", ...extra], {
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, BACH_LOG_LEVEL: "warn" },
  });
  let out = "";
  proc.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  while (!/listening on (\S+)/.test(out)) {
    if (proc.exitCode !== null) throw new Error("the coordinator did not start");
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, address: /listening on (\S+)/.exec(out)?.[1] ?? "" };
}

/**
 * `coordinatorArgs`: flags of the coordinator's (--durable, TLS), kept across restarts; `clientArgs`:
 * flags its workers (and the row's CLI) take to reach it (--tls-ca).
 */
async function startCluster(coordinatorArgs: string[] = [], clientArgs: string[] = []): Promise<BenchCluster> {
  const dataDir = path.join(work, `coord-${Date.now()}`);
  const ports = await freePorts(2);
  let { proc: coordinator, address } = await startCoordinator(dataDir, `127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`, coordinatorArgs);
  const workers = [1, 2].map((i) =>
    spawn(process.execPath, [path.join(root, "dist", "worker", "main.js"), "join", address, "--token", "bench", "--slots", "1", "--name", `bench-${i}`, "--data-dir", path.join(work, `w${i}`), ...clientArgs, ...(NETWORK_WORKERS ? ["--no-local-spool"] : [])], {
      stdio: "ignore",
      env: { ...process.env, BACH_LOG_LEVEL: "warn" },
    }),
  );
  await new Promise((r) => setTimeout(r, 1500));
  const cluster: BenchCluster = {
    address,
    coordinator,
    workers,
    dataDir,
    async restartCoordinator() {
      cluster.coordinator.kill("SIGKILL");
      await once(cluster.coordinator, "exit");
      ({ proc: coordinator, address } = await startCoordinator(dataDir, `127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`, coordinatorArgs));
      cluster.coordinator = coordinator;
    },
    stop() {
      for (const w of workers) w.kill("SIGKILL");
      cluster.coordinator.kill("SIGTERM");
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** A CA and a certificate for 127.0.0.1, made with openssl: the flags a TLS coordinator and its clients take. */
function tlsFlags(): { coordinator: string[]; client: string[] } | null {
  const dir = path.join(work, "tls");
  const f = (name: string) => path.join(dir, name);
  const ssl = (...a: string[]) => spawnSync("openssl", a, { cwd: dir, stdio: "ignore" }).status === 0;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(f("ext"), "subjectAltName=IP:127.0.0.1\n");
  const made =
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=bench CA") &&
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("c.key"), "-out", f("c.csr"), "-subj", "/CN=coordinator") &&
    ssl("x509", "-req", "-in", f("c.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("c.pem"), "-days", "2", "-extfile", f("ext"));
  return made ? { coordinator: ["--tls-cert", f("c.pem"), "--tls-key", f("c.key")], client: ["--tls-ca", f("ca.pem")] } : null;
}

function freePorts(n: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: n }, () => new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    })),
  );
}

/** The newest task's commits, read from the ledger while the coordinator runs (or is between lives). */
function commitsSoFar(dataDir: string): number {
  const file = path.join(dataDir, "ledger.sqlite");
  if (!fs.existsSync(file)) return 0;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT commits FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { commits: number } | undefined)?.commits ?? 0;
  } finally {
    db.close();
  }
}

/**
 * Recovery: the 1 GiB task on the loopback cluster (from a file) with one worker SIGKILLed halfway,
 * against the clean run; and, in another run, the coordinator SIGKILLed halfway and restarted: the
 * time from its restart to the first new commit.
 */
async function recovery(env: NodeJS.ProcessEnv, taskDir: string): Promise<string[]> {
  const run = async (disrupt: (c: BenchCluster) => Promise<number | null>, delayMs: number) => {
    const cluster = await startCluster();
    try {
      const running = timed(process.execPath, [bach, "task-run", "--coordinator", cluster.address, "--token", "bench", "--data", data, "--reconnect", "60s"], { env, cwd: taskDir });
      await new Promise((r) => setTimeout(r, delayMs));
      const measured = await disrupt(cluster);
      const r = await running;
      return { ...r, measured };
    } finally {
      cluster.stop();
    }
  };
  const clean = await run(async () => null, 0);
  const killWorker = await run(async (c) => {
    c.workers[0].kill("SIGKILL");
    return null;
  }, (clean.wall * 1000) / 2);
  const restart = await run(async (c) => {
    const before = commitsSoFar(c.dataDir);
    const t0 = process.hrtime.bigint();
    await c.restartCoordinator();
    while (commitsSoFar(c.dataDir) <= before) await new Promise((r) => setTimeout(r, 10));
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }, (clean.wall * 1000) / 2);
  const same = (m: string) => (m === clean.md5 ? "same md5" : "DIFFERENT md5");
  return [
    "",
    "recovery, cluster on loopback (coordinator + 2 workers, --data FILE, read in place by the coordinator):",
    `  clean run: ${clean.wall.toFixed(2)} s`,
    `  one worker SIGKILLed halfway: ${killWorker.wall.toFixed(2)} s (${(killWorker.wall / clean.wall).toFixed(2)}x the clean run, ${same(killWorker.md5)})`,
    `  coordinator SIGKILLed halfway and restarted: ${restart.wall.toFixed(2)} s (${(restart.wall / clean.wall).toFixed(2)}x, ${same(restart.md5)}); first new commit ${(restart.measured ?? 0).toFixed(0)} ms after the restart began`,
  ];
}

/** A Docker Engine answers and has (or can build) the base image. */
async function dockerReady(): Promise<boolean> {
  const docker = connectDocker();
  if (!(await dockerAnswers(docker))) {
    process.stderr.write("bench: no Docker Engine answers: no container rows\n");
    return false;
  }
  if (!(await imageId(docker, BASE_IMAGE))) spawnSync(process.execPath, [bach, "image", "base"], { stdio: "inherit" });
  return (await imageId(docker, BASE_IMAGE)) !== null;
}

/**
 * The fixed cost of one attempt, in containers and as plain processes: 200 chunks of 4 KiB through
 * `cat`, -p 2; the difference per chunk (times the 2 slots) is what a container adds to each chunk.
 */
async function perChunkCost(env: NodeJS.ProcessEnv): Promise<string> {
  const chunks = 200;
  const small = path.join(work, "small.txt");
  fs.writeFileSync(small, Array.from({ length: chunks * 64 }, (_, i) => `${String(i).padStart(63, "0")}\n`).join(""));
  const wallOf = async (bachfile: object) => {
    const dir = fs.mkdtempSync(path.join(work, "cat-"));
    fs.writeFileSync(path.join(dir, "bachfile.json"), JSON.stringify(bachfile));
    const r = await timed(process.execPath, [bach, "task-run", "-p", "2", "--data", small, "--chunk-size", "4k"], { env, cwd: dir });
    return r.wall;
  };
  const plain = await wallOf({ binary: "cat" });
  const contained = await wallOf({ binary: "cat", image: BASE_IMAGE, hardware: { network: null } });
  const perChunk = ((contained - plain) * 2 * 1000) / chunks;
  return `per-chunk cost, ${chunks} chunks of 4 KiB through cat, -p 2: plain processes ${((plain * 2 * 1000) / chunks).toFixed(0)} ms of slot time per chunk, containers ${((contained * 2 * 1000) / chunks).toFixed(0)} ms: a container adds ${perChunk.toFixed(0)} ms per chunk`;
}

async function main(): Promise<void> {
  process.stderr.write(`bench: generating ${BYTES} bytes with ${path.relative(root, gen)}\n`);
  spawnSync(process.execPath, [gen, String(BYTES), data], { stdio: "inherit" });
  fs.mkdirSync(taskDir);
  fs.copyFileSync(mapperFile, path.join(taskDir, "mapper.js"));
  fs.writeFileSync(path.join(taskDir, "bachfile.json"), JSON.stringify({ "logical-name": "bench-military", binary: "node", args: ["mapper.js"] }));
  const home = path.join(work, "home");
  const env = { BACH_HOME: home };
  const hasParallel = spawnSync("parallel", ["--version"]).status === 0;
  const docker = await dockerReady();
  const dockerTask = path.join(work, "task-docker");
  fs.mkdirSync(dockerTask);
  fs.copyFileSync(mapperFile, path.join(dockerTask, "mapper.js"));
  fs.writeFileSync(path.join(dockerTask, "bachfile.json"), JSON.stringify({ "logical-name": "bench-military-docker", binary: "node", args: ["mapper.js"], image: BASE_IMAGE, hardware: { network: null } }));
  const embedded = (task: string, extra: string[], o: { catFile?: string; stdinFile?: string } = {}) => async () => {
    const r = await timed(process.execPath, [bach, "task-run", "-p", "2", ...extra], { env, cwd: task, ...o });
    return { wall: r.wall, cpu: r.cpu, md5: r.md5, cliRss: r.rss, coordRss: r.rss };
  };

  const tls = tlsFlags();
  const rows: { name: string; run: () => Promise<Omit<Row, "name">> }[] = [
    { name: "one process: node mapper < file", run: async () => ({ ...(await sh(`node ${taskDir}/mapper.js < ${data}`)), cliRss: 0, coordRss: 0 }) },
    ...(hasParallel
      ? [
          { name: "parallel --pipepart -a FILE --block -1 -j2 -k", run: async () => ({ ...(await sh(`parallel --pipepart -a ${data} --block -1 -j2 -k node ${taskDir}/mapper.js`)), cliRss: 0, coordRss: 0 }) },
          { name: "cat FILE | parallel --pipe --block 64M -j2 -k", run: async () => ({ ...(await sh(`cat ${data} | parallel --pipe --block 64M -j2 -k node ${taskDir}/mapper.js`)), cliRss: 0, coordRss: 0 }) },
        ]
      : []),
    { name: "bach task-run -p 2 --data FILE (embedded)", run: embedded(taskDir, ["--data", data]) },
    { name: "bach task-run -p 2 < FILE (embedded; a redirect is read in place)", run: embedded(taskDir, [], { stdinFile: data }) },
    { name: "cat FILE | bach task-run -p 2 (embedded)", run: embedded(taskDir, [], { catFile: data }) },
    ...(docker
      ? [
          { name: "bach task-run -p 2 --data FILE (embedded, in containers of bach/base)", run: embedded(dockerTask, ["--data", data]) },
          { name: "cat FILE | bach task-run -p 2 (embedded, in containers of bach/base)", run: embedded(dockerTask, [], { catFile: data }) },
        ]
      : []),
    ...[
      { how: "", coordinatorArgs: [] as string[], clientArgs: [] as string[] },
      { how: " --durable", coordinatorArgs: ["--durable"], clientArgs: [] },
      ...(tls ? [{ how: " with TLS", coordinatorArgs: tls.coordinator, clientArgs: tls.client }] : []),
    ].map(({ how, coordinatorArgs, clientArgs }) => ({
      name: `cat FILE | bach task-run (cluster: coordinator${how} + 2 workers on loopback${NETWORK_WORKERS ? ", chunks over the network as from other machines" : ""})`,
      run: async () => {
        const cluster = await startCluster(coordinatorArgs, clientArgs);
        try {
          const r = await timed(process.execPath, [bach, "task-run", "--coordinator", cluster.address, "--token", "bench", ...clientArgs], { env, cwd: taskDir, catFile: data });
          return { wall: r.wall, cpu: r.cpu, md5: r.md5, cliRss: r.rss, coordRss: peakRss(cluster.coordinator.pid) };
        } finally {
          cluster.stop();
        }
      },
    })),
  ];

  // Rounds, not one row after another: this VM's speed drifts by tens of percent over minutes, so each
  // round runs every row once and a row's ratio is the median of its ratios within a round.
  const selected = rows.filter((row, i) => i === 0 || !ONLY.length || ONLY.some((o) => row.name.includes(o)));
  const runs = selected.map(() => [] as Omit<Row, "name">[]);
  for (let round = 0; round < RUNS; round++) {
    for (const [i, row] of selected.entries()) {
      const r = await row.run();
      runs[i].push(r);
      process.stderr.write(`bench: round ${round + 1}: ${row.name}: ${r.wall.toFixed(2)} s, ${r.cpu.toFixed(1)} CPU-s, md5 ${r.md5.slice(0, 8)}, CLI ${(r.cliRss / 2 ** 20).toFixed(0)} MiB\n`);
    }
  }
  const middle = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
  const results: (Row & { ratio: number })[] = selected.map((row, i) => ({
    name: row.name,
    wall: middle(runs[i].map((r) => r.wall)),
    cpu: middle(runs[i].map((r) => r.cpu)),
    ratio: middle(runs[i].map((r, round) => runs[0][round].wall / r.wall)),
    md5: runs[i].every((r) => r.md5 === runs[i][0].md5) ? runs[i][0].md5 : "differs between runs",
    cliRss: Math.max(...runs[i].map((r) => r.cliRss)),
    coordRss: Math.max(...runs[i].map((r) => r.coordRss)),
  }));

  const base = results[0];
  const cores = os.availableParallelism();
  const mb = (n: number) => (n ? `${(n / 2 ** 20).toFixed(0)}` : "-");
  const lines = [
    `${(BYTES / 2 ** 30).toFixed(2)} GiB, ${path.basename(mapperFile)}, output to md5sum; ${RUNS} rounds (every row once a round); wall: median; ratio: median of the ratios within a round; ${cores} cores`,
    `CPU s: busy CPU time of the whole machine during the row (median); floor: CPU s / ${cores} cores, the least wall time any schedule of that work could take here; best ratio: one process's wall over that floor`,
    "",
    "| run | wall s | MB/s | ratio to one process | CPU s | floor s | best ratio | same md5 | CLI peak RSS MiB | coordinator peak RSS MiB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map((r) =>
      `| ${r.name} | ${r.wall.toFixed(2)} | ${(BYTES / 1e6 / r.wall).toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.cpu.toFixed(1)} | ${(r.cpu / cores).toFixed(2)} | ${(base.wall / (r.cpu / cores)).toFixed(2)} | ${r.md5 === base.md5 ? "yes" : "NO"} | ${mb(r.cliRss)} | ${mb(r.coordRss)} |`,
    ),
  ];
  const processRow = results.findIndex((r) => r.name.startsWith("bach task-run -p 2 --data FILE (embedded)"));
  const dockerRow = results.findIndex((r) => r.name.startsWith("bach task-run -p 2 --data FILE (embedded, in containers"));
  if (processRow >= 0 && dockerRow >= 0) {
    const within = middle(runs[dockerRow].map((r, round) => r.wall / runs[processRow][round].wall));
    lines.push("", `containers against plain processes, --data FILE -p 2: ${within.toFixed(2)}x the wall time (median within a round; target: at most 1.3x)`);
  }
  if (docker) lines.push(await perChunkCost(env));
  if (!ONLY.length || ONLY.some((o) => "recovery".includes(o))) lines.push(...(await recovery(env, taskDir)));
  process.stdout.write(`${lines.join("\n")}\n`);
  fs.rmSync(work, { recursive: true, force: true });
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.message}\n`);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(1);
});
