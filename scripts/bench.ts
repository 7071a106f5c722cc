// The benchmark: 1 GiB of GDELT-like rows through a light mapper, side by side in one run: one mapper
// process, GNU parallel, and Bach embedded (file and stdin) and on a loopback cluster (stdin). Prints
// wall time, MB/s, the ratio to one process, and peak RSS of the CLI and the coordinator. With a Docker
// Engine it adds the same task in containers, and the per-chunk cost of a container attempt. The
// `mapreduce` rows count the same rows per country and year with examples/gdelt-per-country-year,
// against its pipeline (map | sort | reduce) run once. The `s3` rows read the same rows from a local S3
// server (scripts/s3-server): one object, and 1,000 small objects by prefix, Bach against curl.
// Usage: npm run bench -- [--bytes N] [--runs N] [--only name,...|mapreduce|recovery|s3] [--network-workers]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { createHash } from "node:crypto";
import net from "node:net";
import Database from "better-sqlite3";
import { BASE_IMAGE, connectDocker, dockerAnswers, imageId } from "../core/docker";
import { S3Store } from "../core/s3";

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
  /** md5 of the output's lines in byte order, for outputs sorted only piecewise (map-reduce in hash order). */
  sortedMd5?: string;
  /** A map-reduce task's `reduce` object from `bach task-report --json`; null where there is none. */
  reduce?: ReduceReport | null;
  /** Bytes through the coordinator's ports, both ways (see portCounter); undefined where it is not a process of its own. */
  coordBytes?: number;
  /** CPU seconds the S3 server (radosgw) spent during the row. */
  storeCpu?: number;
  /** CPU seconds of Bach's own processes during the row (the CLI; the coordinator and workers on a cluster), not the programs they run. */
  bachCpu?: number;
  /** The task's chunks, from its report. */
  chunks?: number;
  /** The task's output bytes, from its report. */
  outBytes?: number;
}

interface ReduceReport {
  partitions: number;
  bytesShuffled: number;
  mapAttempts: number;
  reduceAttempts: number;
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
 * CPU seconds a process has used itself (user and system, not its children's), from /proc; 0 once it
 * has exited. Polled, it misses at most the last poll interval.
 */
function ownCpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
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

/**
 * Runs `cmd` with its stdout into md5sum; times the whole, polls the peak RSS of `cmd` itself. With
 * `outFile` its stdout goes to that file instead (a small output, such as a reduce's), and md5 and
 * sortedMd5 are of the file, read after the clock stops.
 */
async function timed(cmd: string, cmdArgs: string[], opts: { stdinFile?: string; catFile?: string; env?: NodeJS.ProcessEnv; cwd?: string; outFile?: string } = {}): Promise<{ wall: number; cpu: number; md5: string; sortedMd5?: string; rss: number; ownCpu: number }> {
  const started = process.hrtime.bigint();
  const cpuBefore = busyCpuSeconds();
  // catFile: a real pipe from cat, as in `cat FILE | cmd`; stdinFile: a redirect, as in `cmd < FILE`.
  const cat = opts.catFile ? spawn("cat", [opts.catFile], { stdio: ["ignore", "pipe", "inherit"] }) : null;
  const stdin = cat?.stdout ?? (opts.stdinFile ? fs.openSync(opts.stdinFile, "r") : "ignore");
  const stdout = opts.outFile ? fs.openSync(opts.outFile, "w") : "pipe";
  const proc = spawn(cmd, cmdArgs, { stdio: [stdin, stdout, "inherit"], env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? work });
  if (typeof stdin === "number") fs.closeSync(stdin);
  if (typeof stdout === "number") fs.closeSync(stdout);
  cat?.stdout?.destroy();
  const md5 = proc.stdout ? spawn("md5sum", [], { stdio: [proc.stdout, "pipe", "inherit"] }) : null;
  let rss = 0;
  let own = 0;
  const poll = setInterval(() => {
    rss = Math.max(rss, peakRss(proc.pid));
    own = Math.max(own, ownCpuSeconds(proc.pid));
  }, 50);
  let sum = "";
  md5?.stdout?.on("data", (b: Buffer) => (sum += b.toString()));
  const summed = md5 ? once(md5, "close") : null;
  const [code] = (await once(proc, "exit")) as [number];
  clearInterval(poll);
  await summed;
  if (code !== 0) throw new Error(`${cmd} ${cmdArgs.join(" ")} exited ${code}`);
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = busyCpuSeconds() - cpuBefore;
  if (!opts.outFile) return { wall, cpu, md5: sum.split(" ")[0], rss, ownCpu: own };
  const out = fs.readFileSync(opts.outFile);
  return { wall, cpu, md5: md5Of(out), sortedMd5: md5Of(sortedLines(out)), rss, ownCpu: own };
}

const md5Of = (b: Buffer) => createHash("md5").update(b).digest("hex");

/** The lines in byte order, as `LC_ALL=C sort` prints them (latin1 maps bytes to characters below 256, which sort as the bytes do). */
function sortedLines(b: Buffer): Buffer {
  const text = b.toString("latin1");
  const lines = (text.endsWith("\n") ? text.slice(0, -1) : text).split("\n").sort();
  return Buffer.from(text ? `${lines.join("\n")}\n` : "", "latin1");
}

function sh(script: string) {
  return timed("bash", ["-c", script]);
}

interface BenchCluster {
  address: string;
  /** The coordinator's gRPC and data ports. */
  ports: number[];
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
async function startCluster(coordinatorArgs: string[] = [], clientArgs: string[] = [], workerEnv: NodeJS.ProcessEnv = {}): Promise<BenchCluster> {
  const dataDir = path.join(work, `coord-${Date.now()}`);
  const ports = await freePorts(2);
  let { proc: coordinator, address } = await startCoordinator(dataDir, `127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`, coordinatorArgs);
  const workers = [1, 2].map((i) =>
    spawn(process.execPath, [path.join(root, "dist", "worker", "main.js"), "join", address, "--token", "bench", "--slots", "1", "--name", `bench-${i}`, "--data-dir", path.join(work, `w${i}`), ...clientArgs, ...(NETWORK_WORKERS ? ["--no-local-spool"] : [])], {
      stdio: "ignore",
      env: { ...process.env, BACH_LOG_LEVEL: "warn", ...workerEnv },
    }),
  );
  await new Promise((r) => setTimeout(r, 1500));
  const cluster: BenchCluster = {
    address,
    ports,
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

/** The newest task's report (`bach task-report --json`), or null when it cannot be had. */
function taskReport(cwd: string, env: NodeJS.ProcessEnv, extra: string[] = []): { reduce?: ReduceReport | null; bytesOut: number; chunks: { planned: number } } | null {
  const r = spawnSync(process.execPath, [bach, "task-report", "--json", ...extra], { cwd, env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
  if (r.status !== 0) {
    process.stderr.write(`bench: bach task-report --json failed: ${r.stderr.toString().trim()}\n`);
    return null;
  }
  return JSON.parse(r.stdout.toString()) as { reduce?: ReduceReport | null; bytesOut: number; chunks: { planned: number } };
}

/** The `reduce` object of the newest task's report, or null where it has none. */
const reduceReport = (cwd: string, env: NodeJS.ProcessEnv, extra: string[] = []): ReduceReport | null => taskReport(cwd, env, extra)?.reduce ?? null;

/**
 * Map-reduce: the events of the file counted per country and year with examples/gdelt-per-country-year
 * (key: the first 2 tab-separated fields), against its pipeline run once: `map | LC_ALL=C sort -s |
 * reduce`. Bach embedded in hash and total order, with and without the combiner, and in hash order with
 * it on a loopback cluster. A total-order output must be the pipeline's bytes; a hash-order output is
 * sorted only within each partition, so its lines are compared sorted.
 */
async function mapReduce(env: NodeJS.ProcessEnv, hasParallel: boolean): Promise<string[]> {
  const example = path.join(root, "examples", "gdelt-per-country-year");
  const bachfile = JSON.parse(fs.readFileSync(path.join(example, "bachfile.json"), "utf8")) as { reduce: object };
  const variant = (name: string, reduce: { order: "hash" | "total"; combine: boolean }) => {
    const dir = path.join(work, `mapreduce-${name}`);
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ["map.js", "reduce.js"]) fs.copyFileSync(path.join(example, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, "bachfile.json"), JSON.stringify({ ...bachfile, "logical-name": `bench-${name}`, reduce: { ...bachfile.reduce, ...reduce } }));
    return { dir, order: reduce.order };
  };
  const out = path.join(work, "mapreduce.out");
  const reduceStage = `LC_ALL=C sort -s -S 1G -t $'\\t' -k1,2 | node ${example}/reduce.js`;
  const shell = (script: string) => async () => ({ ...(await timed("bash", ["-c", `set -o pipefail; ${script}`], { outFile: out })), cliRss: 0, coordRss: 0 });
  const embedded = (task: { dir: string }) => async () => {
    const r = await timed(process.execPath, [bach, "task-run", "-p", "2", "--data", data], { env, cwd: task.dir, outFile: out });
    return { ...r, cliRss: r.rss, coordRss: r.rss, reduce: reduceReport(task.dir, env) };
  };
  const tasks = {
    "hash, combine": variant("hash-combine", { order: "hash", combine: true }),
    hash: variant("hash", { order: "hash", combine: false }),
    "total, combine": variant("total-combine", { order: "total", combine: true }),
    total: variant("total", { order: "total", combine: false }),
  };
  const rows: (BenchRow & { order: "hash" | "total" })[] = [
    { name: "pipeline: node map.js < FILE | LC_ALL=C sort -s -S 1G -t TAB -k1,2 | node reduce.js", order: "total", run: shell(`node ${example}/map.js < ${data} | ${reduceStage}`) },
    ...(hasParallel
      ? [{ name: "parallel --pipepart -a FILE --block -1 -j2 -k node map.js | sort ... | node reduce.js", order: "total" as const, run: shell(`parallel --pipepart -a ${data} --block -1 -j2 -k node ${example}/map.js | ${reduceStage}`) }]
      : []),
    ...Object.entries(tasks).map(([how, task]) => ({ name: `bach task-run -p 2 --data FILE (embedded; ${how})`, order: task.order, run: embedded(task) })),
    {
      name: "bach task-run --data FILE (cluster: coordinator + 2 workers on loopback; hash, combine)",
      order: "hash",
      run: async () => {
        const cluster = await startCluster();
        const on = ["--coordinator", cluster.address, "--token", "bench"];
        try {
          const r = await timed(process.execPath, [bach, "task-run", ...on, "--data", data], { env, cwd: tasks["hash, combine"].dir, outFile: out });
          return { ...r, cliRss: r.rss, coordRss: peakRss(cluster.coordinator.pid), reduce: reduceReport(tasks["hash, combine"].dir, env, on) };
        } finally {
          cluster.stop();
        }
      },
    },
  ];
  const { results } = await inRounds(rows);
  const base = results[0];
  const keys = fs.existsSync(out) ? sortedLines(fs.readFileSync(out)).toString("latin1").split("\n").length - 1 : 0;
  const cores = os.availableParallelism();
  const same = (r: Result, order: "hash" | "total") =>
    order === "total" ? (r.md5 === base.md5 ? "yes, byte for byte" : "NO") : r.sortedMd5 === base.sortedMd5 ? "yes, lines sorted" : "NO";
  const shuffled = (r: Result) => (!r.reduce ? "-" : r.reduce.bytesShuffled < 2 ** 20 ? `${(r.reduce.bytesShuffled / 1024).toFixed(1)} KiB` : `${mb(r.reduce.bytesShuffled)} MiB`);
  return [
    "",
    `map-reduce: events per country and year of the same ${(BYTES / 2 ** 30).toFixed(2)} GiB (examples/gdelt-per-country-year, ${keys} keys in its output); ${RUNS} rounds; ratio: the pipeline's wall over the row's, median within a round; ${cores} cores`,
    "same output: a total-order output (and parallel -k's) must be the pipeline's bytes; a hash-order output is sorted per partition only, so its lines are compared sorted",
    ...(hasParallel ? [] : ["(GNU parallel is not installed here: no parallel row)"]),
    "",
    "| run | wall s | ratio to the pipeline | CPU s | floor s | best ratio | shuffled | partitions | attempts (map + reduce) | same output | CLI peak RSS MiB | coordinator peak RSS MiB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map((r, i) =>
      `| ${r.name.replace(/\|/g, "\\|")} | ${r.wall.toFixed(2)} | ${r.ratio.toFixed(2)} | ${r.cpu.toFixed(1)} | ${(r.cpu / cores).toFixed(2)} | ${(results[0].wall / (r.cpu / cores)).toFixed(2)} | ${shuffled(r)} | ${r.reduce?.partitions ?? "-"} | ${r.reduce ? `${r.reduce.mapAttempts} + ${r.reduce.reduceAttempts}` : "-"} | ${i === 0 ? "(reference)" : same(r, rows[i].order)} | ${mb(r.cliRss)} | ${mb(r.coordRss)} |`,
    ),
    "",
    "floor: the row's CPU s over the cores, the least wall time any schedule of that work could take here; best ratio: the pipeline's wall over that floor, the most the row could reach without doing less work",
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

/**
 * Bytes through the coordinator's ports (gRPC and data port), both ways, from nftables counters on the
 * output hook: on loopback every packet passes there once, from whichever process sent it, so a packet
 * from or to one of those ports is counted once, IP and TCP headers included. It counts all the
 * coordinator serves: workers and the CLI (the task's output reaches the CLI through it). Null where
 * nftables cannot be used (not root, no nft): the rows then say n/a.
 */
function portCounter(ports: number[]): { bytes(): number; remove(): void } | null {
  const table = `bach_bench_${process.pid}_${ports[0]}`;
  const set = ports.join(", ");
  const rules = [`table inet ${table} {`, "chain out {", "type filter hook output priority 0; policy accept;", `tcp sport { ${set} } counter`, `tcp dport { ${set} } counter`, "}", "}"];
  const made = spawnSync("nft", ["-f", "-"], { input: `${rules.join("\n")}\n` });
  if (made.status !== 0) return null;
  const remove = () => spawnSync("nft", ["delete", "table", "inet", table], { stdio: "ignore" });
  process.on("exit", remove);
  return {
    bytes: () => {
      const listed = spawnSync("nft", ["list", "table", "inet", table], { encoding: "utf8" }).stdout ?? "";
      return [...listed.matchAll(/counter packets \d+ bytes (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    },
    remove: () => {
      remove();
      process.off("exit", remove);
    },
  };
}

interface BenchS3 {
  endpoint: string;
  /** The AWS variables of the server's user. */
  env: NodeJS.ProcessEnv;
  /** CPU seconds radosgw has used so far. */
  cpu(): number;
  stop(): void;
}

/** A local S3 server (scripts/s3-server) on free ports, its OSD's RAM room for `bytes`; null without radosgw. */
async function startS3(bytes: number): Promise<BenchS3 | null> {
  if (spawnSync("sh", ["-c", "command -v radosgw"]).status !== 0) return null;
  const script = path.join(root, "scripts", "s3-server");
  const dir = path.join(work, "s3");
  const [s3Port, monPort] = await freePorts(2);
  const memory = String(Math.max(4 * 2 ** 30, Math.ceil(bytes * 1.5)));
  const started = spawnSync("bash", [script, "start", dir], { env: { ...process.env, S3_PORT: String(s3Port), MON_PORT: String(monPort), S3_MEMORY_BYTES: memory }, encoding: "utf8", timeout: 120_000 });
  const stop = () => spawnSync("bash", [script, "stop", dir], { stdio: "ignore" });
  if (started.status !== 0) {
    stop();
    throw new Error(`scripts/s3-server start failed: ${started.stderr}`);
  }
  process.on("exit", stop);
  const env: NodeJS.ProcessEnv = {};
  for (const m of fs.readFileSync(path.join(dir, "env"), "utf8").matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]] = m[2];
  const rgw = Number(fs.readFileSync(path.join(dir, "run", "client.rgw.pid"), "utf8"));
  return {
    endpoint: env.S3_ENDPOINT ?? "",
    env: { AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY, AWS_REGION: env.AWS_REGION, AWS_ENDPOINT_URL: env.S3_ENDPOINT },
    cpu: () => ownCpuSeconds(rgw),
    stop: () => {
      stop();
      process.off("exit", stop);
    },
  };
}

/** Puts the file's first `count` pieces of about `bytes`, each of whole lines, as PREFIX0000.tsv...; returns their total size. */
async function putPieces(store: S3Store, bucket: string, prefix: string, file: string, count: number, bytes: number): Promise<number> {
  const fd = fs.openSync(file, "r");
  let at = 0;
  try {
    for (let i = 0; i < count; i += 16) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(count, i + 16); j++) {
        const buf = Buffer.alloc(bytes);
        const read = fs.readSync(fd, buf, 0, bytes, at);
        const end = buf.lastIndexOf(10, read - 1) + 1;
        if (end === 0) throw new Error(`${file} holds fewer than ${count} pieces of ${bytes} bytes`);
        at += end;
        batch.push(store.put(bucket, `${prefix}${String(j).padStart(4, "0")}.tsv`, buf.subarray(0, end)));
      }
      await Promise.all(batch);
    }
  } finally {
    fs.closeSync(fd);
  }
  return at;
}

/** The environment of a process that holds no AWS credentials (the cluster's workers and its CLI). */
const noCredentials: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_ENDPOINT_URL: "", AWS_PROFILE: "", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent", AWS_CONFIG_FILE: "/nonexistent", AWS_EC2_METADATA_DISABLED: "true" };

/**
 * S3 input: the same rows as one object, and as 1,000 objects of about 1 MiB under a prefix, in a local
 * S3 server. Bach reads them by ranges (embedded, and on a loopback cluster whose workers hold no
 * credentials and read presigned URLs), against one process reading the object with curl, and against
 * GNU parallel running `curl | mapper` once per small object.
 */
async function s3Tables(env: NodeJS.ProcessEnv, hasParallel: boolean): Promise<string[]> {
  const size = fs.statSync(data).size;
  // 1,000 objects of about 1 MiB from 1 GiB of rows; fewer from a smaller --bytes.
  const SMALL = Math.max(1, Math.min(1000, Math.floor(size / 2 ** 20) - 2));
  const s3 = await startS3(size * 2);
  if (!s3) return ["", "s3: radosgw is not installed (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl): no s3 rows"];
  // The bench's own process, the embedded rows and the coordinator hold the credentials; a cluster's
  // workers and CLI hold none.
  const saved = Object.fromEntries(Object.keys(s3.env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, s3.env);
  try {
    const store = await S3Store.open({ endpoint: s3.endpoint });
    // S3Store makes no buckets: the SDK's own client does (after S3Store.open, which quiets its Node 20 warning).
    const sdk = await import("@aws-sdk/client-s3");
    const admin = new sdk.S3Client({ endpoint: s3.endpoint, region: s3.env.AWS_REGION, forcePathStyle: true });
    await admin.send(new sdk.CreateBucketCommand({ Bucket: "bench" }));
    admin.destroy();
    process.stderr.write(`bench: putting ${size} bytes as one object and ${SMALL} objects of about 1 MiB into ${s3.endpoint}\n`);
    await store.put("bench", "gdelt.tsv", fs.createReadStream(data), size);
    const smallBytes = await putPieces(store, "bench", "small/", data, SMALL, 2 ** 20);
    const urls = path.join(work, "small-urls.txt");
    const signed: string[] = [];
    for (let i = 0; i < SMALL; i++) signed.push(await store.presignGet("bench", `small/${String(i).padStart(4, "0")}.tsv`, 6 * 3600));
    fs.writeFileSync(urls, `${signed.join("\n")}\n`);
    const oneUrl = await store.presignGet("bench", "gdelt.tsv", 6 * 3600);
    const mapper = path.join(taskDir, "mapper.js");

    /** The row's measures, with radosgw's CPU time during it. */
    const storeCpu = (run: () => Promise<Omit<Row, "name">>) => async () => {
      const before = s3.cpu();
      const r = await run();
      return { ...r, storeCpu: s3.cpu() - before };
    };
    const shell = (script: string, vars: NodeJS.ProcessEnv = {}) =>
      storeCpu(async () => ({ ...(await timed("bash", ["-c", `set -o pipefail; ${script}`], { env: vars })), cliRss: 0, coordRss: 0 }));
    // The same mapper with "input": "objects": one run per object, each given whole.
    const objectsDir = path.join(work, "task-objects");
    fs.mkdirSync(objectsDir, { recursive: true });
    fs.copyFileSync(path.join(taskDir, "mapper.js"), path.join(objectsDir, "mapper.js"));
    fs.writeFileSync(path.join(objectsDir, "bachfile.json"), JSON.stringify({ "logical-name": "bench-military-objects", binary: "node", args: ["mapper.js"], input: "objects" }));
    const embedded = (source: string, dir = taskDir) =>
      storeCpu(async () => {
        const r = await timed(process.execPath, [bach, "task-run", "-p", "2", "--data", source], { env, cwd: dir });
        const report = taskReport(dir, env);
        return { ...r, cliRss: r.rss, coordRss: r.rss, bachCpu: r.ownCpu, outBytes: report?.bytesOut, chunks: report?.chunks.planned };
      });
    const cluster = (source: string) =>
      storeCpu(async () => {
        const c = await startCluster(["--s3-endpoint", s3.endpoint], [], noCredentials);
        const counter = portCounter(c.ports);
        const on = ["--coordinator", c.address, "--token", "bench"];
        const daemonsCpu = () => [c.coordinator, ...c.workers].reduce((n, p) => n + ownCpuSeconds(p.pid), 0);
        try {
          const before = daemonsCpu();
          const r = await timed(process.execPath, [bach, "task-run", ...on, "--data", source], { env: { ...env, ...noCredentials }, cwd: taskDir });
          const bachCpu = r.ownCpu + daemonsCpu() - before;
          const coordBytes = counter?.bytes();
          const report = taskReport(taskDir, { ...env, ...noCredentials }, on);
          return { ...r, cliRss: r.rss, coordRss: peakRss(c.coordinator.pid), bachCpu, coordBytes, outBytes: report?.bytesOut, chunks: report?.chunks.planned };
        } finally {
          counter?.remove();
          c.stop();
        }
      });
    const clusterName = `cluster: coordinator + 2 workers on loopback, workers without credentials${NETWORK_WORKERS ? ", outputs over the network" : ""}`;
    const objectRows: BenchRow[] = [
      { name: "one process: curl -s URL | node mapper (a presigned URL)", run: shell(`curl -fsS "$URL" | node ${mapper}`, { URL: oneUrl }) },
      { name: "bach task-run -p 2 --data s3://bench/gdelt.tsv (embedded)", run: embedded("s3://bench/gdelt.tsv") },
      { name: `bach task-run --data s3://bench/gdelt.tsv (${clusterName})`, run: cluster("s3://bench/gdelt.tsv") },
    ];
    const prefixRows: BenchRow[] = [
      ...(hasParallel ? [{ name: `parallel -j2 -k 'curl -s {} | node mapper' :::: ${SMALL} presigned URLs`, run: shell(`parallel -j2 -k --halt now,fail=1 'curl -fsS {} | node ${mapper}' :::: ${urls}`) }] : []),
      { name: "bach task-run -p 2 --data s3://bench/small/ (embedded)", run: embedded("s3://bench/small/") },
      { name: `bach task-run --data s3://bench/small/ (${clusterName})`, run: cluster("s3://bench/small/") },
      { name: 'bach task-run -p 2 --data s3://bench/small/ with "input": "objects" (embedded: one run per object)', run: embedded("s3://bench/small/", objectsDir) },
    ];
    const one = await inRounds(objectRows);
    const prefix = await inRounds(prefixRows);
    const cores = os.availableParallelism();
    const miB = (n: number | undefined) => (n === undefined ? "n/a" : (n / 2 ** 20).toFixed(1));
    const table = (results: Result[], bytes: number) => [
      "| run | wall s | MB/s | ratio to the first row | chunks | CPU s | radosgw | Bach | the rest | floor s | best ratio | same md5 | coordinator MiB moved | output MiB | CLI peak RSS MiB | coordinator peak RSS MiB |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      ...results.map((r) => {
        const coordinator = r.name.includes("(embedded)") ? "- (in the CLI)" : r.name.includes("cluster") ? miB(r.coordBytes) : "-";
        const rest = r.cpu - (r.storeCpu ?? 0) - (r.bachCpu ?? 0);
        return `| ${r.name.replace(/\|/g, "\\|")} | ${r.wall.toFixed(2)} | ${(bytes / 1e6 / r.wall).toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.chunks ?? "-"} | ${r.cpu.toFixed(1)} | ${r.storeCpu?.toFixed(1) ?? "-"} | ${r.bachCpu?.toFixed(1) ?? "-"} | ${rest.toFixed(1)} | ${(r.cpu / cores).toFixed(2)} | ${(results[0].wall / (r.cpu / cores)).toFixed(2)} | ${r.md5 === results[0].md5 ? "yes" : "NO"} | ${coordinator} | ${miB(r.outBytes)} | ${mb(r.cliRss)} | ${mb(r.coordRss)} |`;
      }),
    ];
    /** What the row could reach at best on this machine were Bach's own CPU time zero: the store's and the mappers' alone, spread over every core. */
    const ceiling = (results: Result[], row: string) => {
      const r = results.find((q) => q.name.startsWith(row));
      if (!r) return `ceiling: no row ${row}`;
      const floor = (r.cpu - (r.bachCpu ?? 0)) / cores;
      return `ceiling here: in that row radosgw and the mappers alone took ${(r.cpu - (r.bachCpu ?? 0)).toFixed(1)} CPU-s; on ${cores} cores no run can end before ${floor.toFixed(2)} s even if Bach's own CPU were zero: at most ${(results[0].wall / floor).toFixed(2)}x the one-process read`;
    };
    const target = (results: Result[], row: string, x: number, against: string) => {
      const r = results.find((q) => q.name.startsWith(row));
      return r ? `target: ${row} at least ${x}x ${against}: ${r.ratio.toFixed(2)}x (${r.ratio >= x ? "met" : "NOT met"})` : `target: ${row} against ${against}: no such row`;
    };
    return [
      "",
      `s3: ${path.basename(mapperFile)} over the same rows in a local S3 server (scripts/s3-server: one-node Ceph, radosgw on loopback, OSD in RAM); ${RUNS} rounds (every row once a round); wall: median; ratio: median of the ratios within a round; ${cores} cores`,
      "CPU s: busy CPU time of the whole machine during the row (median), split from /proc into radosgw's own, Bach's own processes' (the CLI; on a cluster also the coordinator and workers: reading ranges, feeding programs, moving outputs) and the rest (the mappers, curl, parallel, md5sum, and anything else running on the machine); floor: CPU s / cores, the least wall time any schedule of that work could take here; best ratio: the first row's wall over that floor",
      "coordinator MiB moved: bytes through the coordinator's gRPC and data ports, both ways, counted by nftables on loopback's output hook (each packet once, headers included) from the CLI's start to its exit: to and from the workers and the CLI, the task's output included (it reaches the CLI through the coordinator); not its own HEAD/LIST requests to the store. Embedded, the coordinator is inside the CLI, which also reads the ranges as a worker does.",
      "",
      `one object of ${(size / 2 ** 30).toFixed(2)} GiB (s3://bench/gdelt.tsv):`,
      "",
      ...table(one.results, size),
      "",
      target(one.results, "bach task-run -p 2 --data s3://bench/gdelt.tsv (embedded)", 1.6, "the one-process read"),
      target(one.results, "bach task-run --data s3://bench/gdelt.tsv (cluster", 1.6, "the one-process read"),
      ceiling(one.results, "bach task-run -p 2 --data s3://bench/gdelt.tsv (embedded)"),
      "",
      `${SMALL} objects of about 1 MiB, ${(smallBytes / 2 ** 20).toFixed(0)} MiB in all (s3://bench/small/, chunks cut across objects):`,
      ...(hasParallel ? [] : ["(GNU parallel is not installed here: no parallel row; ratios are to the embedded row)"]),
      "",
      ...table(prefix.results, smallBytes),
      "",
      ...(hasParallel
        ? [
            target(prefix.results, "bach task-run -p 2 --data s3://bench/small/ (embedded)", 1.5, "parallel -j2"),
            target(prefix.results, "bach task-run --data s3://bench/small/ (cluster", 1.5, "parallel -j2"),
            target(prefix.results, 'bach task-run -p 2 --data s3://bench/small/ with "input": "objects"', 1.5, "parallel -j2"),
          ]
        : []),
    ];
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    s3.stop();
  }
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
  const rows: BenchRow[] = [
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

  // Each table is printed as soon as it is done, so a later one that fails takes nothing with it.
  const print = (lines: string[]) => process.stdout.write(`${lines.join("\n")}\n`);
  // `--only mapreduce` or `--only s3` alone runs that table only; any other name selects rows of this one.
  if (!ONLY.length || ONLY.some((o) => o !== "mapreduce" && o !== "s3")) print(await mapOnly(rows, env, docker));
  if (!ONLY.length || ONLY.includes("mapreduce")) print(await mapReduce(env, hasParallel));
  if (!ONLY.length || ONLY.some((o) => "recovery".includes(o))) print(await recovery(env, taskDir));
  if (!ONLY.length || ONLY.includes("s3")) print(await s3Tables(env, hasParallel));
  fs.rmSync(work, { recursive: true, force: true });
}

type BenchRow = { name: string; run: () => Promise<Omit<Row, "name">> };
type Result = Row & { ratio: number };

/**
 * Rounds, not one row after another: this VM's speed drifts by tens of percent over minutes, so each
 * round runs every row once and a row's ratio (to the first row) is the median of its ratios within a
 * round. Returns the medians and every round's measures.
 */
async function inRounds(selected: BenchRow[]): Promise<{ results: Result[]; runs: Omit<Row, "name">[][] }> {
  const runs = selected.map(() => [] as Omit<Row, "name">[]);
  for (let round = 0; round < RUNS; round++) {
    for (const [i, row] of selected.entries()) {
      const r = await row.run();
      runs[i].push(r);
      process.stderr.write(`bench: round ${round + 1}: ${row.name}: ${r.wall.toFixed(2)} s, ${r.cpu.toFixed(1)} CPU-s, md5 ${r.md5.slice(0, 8)}, CLI ${(r.cliRss / 2 ** 20).toFixed(0)} MiB\n`);
    }
  }
  const same = (values: (string | undefined)[]) => (values.every((v) => v === values[0]) ? values[0] : "differs between runs");
  const results: Result[] = selected.map((row, i) => ({
    name: row.name,
    wall: middle(runs[i].map((r) => r.wall)),
    cpu: middle(runs[i].map((r) => r.cpu)),
    ratio: middle(runs[i].map((r, round) => runs[0][round].wall / r.wall)),
    md5: same(runs[i].map((r) => r.md5)) ?? "",
    sortedMd5: same(runs[i].map((r) => r.sortedMd5)),
    cliRss: Math.max(...runs[i].map((r) => r.cliRss)),
    coordRss: Math.max(...runs[i].map((r) => r.coordRss)),
    reduce: runs[i].at(-1)?.reduce,
    coordBytes: middleOf(runs[i].map((r) => r.coordBytes)),
    storeCpu: middleOf(runs[i].map((r) => r.storeCpu)),
    bachCpu: middleOf(runs[i].map((r) => r.bachCpu)),
    chunks: middleOf(runs[i].map((r) => r.chunks)),
    outBytes: middleOf(runs[i].map((r) => r.outBytes)),
  }));
  return { results, runs };
}

const middle = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
/** The median of measures a row may lack: undefined when any round lacks it. */
const middleOf = (values: (number | undefined)[]) => (values.every((v): v is number => v !== undefined) ? middle(values) : undefined);
const mb = (n: number) => (n ? `${(n / 2 ** 20).toFixed(0)}` : "-");

/** The map-only table: mapper-military over the file, one process against parallel and Bach. */
async function mapOnly(rows: BenchRow[], env: NodeJS.ProcessEnv, docker: boolean): Promise<string[]> {
  const { results, runs } = await inRounds(rows.filter((row, i) => i === 0 || !ONLY.length || ONLY.some((o) => row.name.includes(o))));
  const base = results[0];
  const cores = os.availableParallelism();
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
  return lines;
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.message}\n`);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(1);
});
