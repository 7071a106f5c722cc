// Containers, with a real Docker Engine: a task with an image or a Dockerfile runs each chunk in a
// container under the bachfile's limits, with the same output as one run of the program; an engine that
// lacks the image gets it from the coordinator; a killed worker's containers are removed when it restarts.
// These skip when no engine answers, unless BACH_REQUIRE_DOCKER=1 (as in CI).
import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { BASE_IMAGE, connectDocker, LABEL } from "../core/docker";
import type { TaskReport } from "../core/report";
import { dockerOrSkip, ensureBaseImage, startSecondEngine } from "./engines";
import { exampleDir, gdeltFile, root, runBach, runOnce, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

/** A copy of an example folder whose bachfile runs in the base image, with `more` merged in. */
function inImage(example: string, more: object = {}): string {
  const dir = tempDir("bach-task-");
  fs.cpSync(exampleDir(example), dir, { recursive: true });
  const file = path.join(dir, "bachfile.json");
  const bachfile = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  fs.writeFileSync(file, JSON.stringify({ ...bachfile, image: BASE_IMAGE, ...more }, null, 2));
  return dir;
}

function bachfileOf(dir: string): { binary: string; args: string[]; env?: Record<string, string> } {
  return JSON.parse(fs.readFileSync(path.join(dir, "bachfile.json"), "utf8")) as { binary: string; args: string[] };
}

/** Containers any Bach worker with this pid made, still on the main engine. */
async function containersOf(pid: number): Promise<number> {
  return (await connectDocker().listContainers({ all: true, filters: { label: [`org.bach.pid=${pid}`] } })).length;
}

async function ready(t: TestContext): Promise<boolean> {
  if (!(await dockerOrSkip(t))) return false;
  await ensureBaseImage();
  return true;
}

let gdelt = "";
let geojson = "";
before(() => {
  gdelt = gdeltFile(6 * 1024 * 1024);
  geojson = path.join(tempDir("bach-data-"), "features.dat");
  execFileSync(process.execPath, [path.join(root, "examples", "data", "gen-geojson.js"), "20000", geojson]);
});

describe("embedded", () => {
  for (const [example, data] of [["gdelt-filter", () => gdelt], ["awk-filter", () => gdelt], ["json-searcher", () => geojson]] as const) {
    test(`${example} gives the same output in containers as one run, and leaves no container behind`, async (t) => {
      if (!(await ready(t))) return;
      const task = inImage(example, { hardware: { memory: { max: 256 }, cpu: { max: 1 }, network: null } });
      const b = bachfileOf(task);
      const expected = spawnSync(b.binary, b.args, { cwd: task, input: fs.readFileSync(data()), env: { ...process.env, ...b.env }, maxBuffer: 1 << 30 }).stdout;
      assert.ok(expected.length > 0, "the mapper keeps some records");
      let pid = 0;
      const fromFile = await runBach(["task-run", "--data", data(), "-p", "2", "--chunk-size", "256k"], { cwd: task, onStart: (p) => (pid = p.pid ?? 0) });
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.ok(fromFile.stdout.equals(expected), "output from a file differs from one run");
      assert.equal(await containersOf(pid), 0, "the task's containers are removed when it ends");
      const fromPipe = await runBach(["task-run", "-p", "2", "--chunk-size", "256k"], { cwd: task, pipeFile: data() });
      assert.equal(fromPipe.code, 0, fromPipe.stderr);
      assert.ok(fromPipe.stdout.equals(expected), "output from stdin differs from one run");
    });
  }

  test("a map-reduce task runs its map, combiner and reduce programs in containers, with the pipeline's output", async (t) => {
    if (!(await ready(t))) return;
    const plain = exampleDir("gdelt-per-country-year");
    const reduce = (JSON.parse(fs.readFileSync(path.join(plain, "bachfile.json"), "utf8")) as { reduce: object }).reduce;
    const task = inImage("gdelt-per-country-year", { reduce: { ...reduce, order: "total", partitions: 2 }, hardware: { memory: { max: 256 }, network: null } });
    const mapped = spawnSync("node", ["map.js"], { cwd: task, input: fs.readFileSync(gdelt), maxBuffer: 1 << 30 }).stdout;
    const sorted = spawnSync("sort", ["-s", "-t", "\t", "-k1,2"], { input: mapped, env: { ...process.env, LC_ALL: "C" }, maxBuffer: 1 << 30 }).stdout;
    const expected = spawnSync("node", ["reduce.js"], { cwd: task, input: sorted }).stdout;
    assert.ok(expected.length > 0);
    const r = await runBach(["task-run", "--data", gdelt, "-p", "2", "--chunk-size", "1m"], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected), "output differs from the pipeline's");
  });

  test("task-build builds a Dockerfile and records the image digest in the bundle", async (t) => {
    if (!(await ready(t))) return;
    const task = taskFolder(
      { "logical-name": "upper", binary: "node", args: ["/opt/upper.js"], dockerfile: "Dockerfile", hardware: { network: null } },
      {
        Dockerfile: `FROM ${BASE_IMAGE}\nCOPY upper.js /opt/upper.js\n`,
        "upper.js": 'process.stdin.on("data", (d) => process.stdout.write(d.toString().toUpperCase()));\n',
      },
    );
    const home = tempDir("bach-home-");
    const build = await runBach(["task-build", "--quiet"], { cwd: task, env: { BACH_HOME: home } });
    assert.equal(build.code, 0, build.stderr);
    const m = /bundle ([0-9a-f]{16}).*image bach-task\/upper:latest (sha256:[0-9a-f]{12})/.exec(build.stdout.toString());
    assert.ok(m, build.stdout.toString());
    const bundle = fs.readdirSync(path.join(home, "bundles")).find((f) => f.startsWith(m[1]));
    assert.ok(bundle);
    const recorded = JSON.parse(execFileSync("tar", ["-xOf", path.join(home, "bundles", bundle), ".bach/image.json"], { encoding: "utf8" })) as { id: string };
    assert.ok(recorded.id.startsWith(m[2]));

    const input = path.join(tempDir(), "words.txt");
    fs.writeFileSync(input, Array.from({ length: 5000 }, (_, i) => `word ${i}\n`).join(""));
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "8k"], { cwd: task, pipeFile: input, env: { BACH_HOME: home } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8").toUpperCase());
  });

  test("a mapper past memory.max is killed, reported as out of memory, retried, then fails the task", async (t) => {
    if (!(await ready(t))) return;
    const task = taskFolder(
      { binary: "node", args: ["hog.js"], image: BASE_IMAGE, retries: 1, hardware: { memory: { max: 128 }, network: null } },
      { "hog.js": "const kept = []; for (let i = 0; i < 40; i++) kept.push(Buffer.alloc(10 << 20, 1));\nprocess.stdin.pipe(process.stdout);\n" },
    );
    const input = path.join(tempDir(), "few.txt");
    fs.writeFileSync(input, "a\nb\n");
    const r = await runBach(["task-run", "--data", input, "-p", "1"], { cwd: task });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^bach: task \S+ failed: chunk 0 \(bytes 0-4\) failed after 2 attempts: killed: out of memory \(limit 128 MiB\)$/m);
    assert.equal(r.stdout.length, 0);
  });

  test("a program missing from the image is named as such, and its chunk's env reaches it", async (t) => {
    if (!(await ready(t))) return;
    const input = path.join(tempDir(), "few.txt");
    fs.writeFileSync(input, "a\nb\n");
    const missing = taskFolder({ binary: "no-such-program", image: BASE_IMAGE, retries: 0, hardware: { network: null } });
    const r = await runBach(["task-run", "--data", input, "-p", "1"], { cwd: missing });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /failed after 1 attempt: program not found in image sha256:\S+: no-such-program \(bachfile field binary\)$/m);
    // The keeper passes each attempt its variables (with quotes intact) and the task's env.
    const env = taskFolder({ binary: "sh", args: ["-c", 'cat >/dev/null; echo "$BACH_CHUNK $GREETING $TMPDIR"'], image: BASE_IMAGE, env: { GREETING: "it's 'quoted'" }, hardware: { network: null } });
    const ok = await runBach(["task-run", "--data", input, "-p", "1"], { cwd: env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.toString(), "0 it's 'quoted' /scratch\n");
  });
});

describe("cluster", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster();
  });
  after(() => cluster.stop());
  const on = () => ["--coordinator", cluster.address, "--token", cluster.token];
  const report = async (cwd: string) => JSON.parse((await runBach(["task-report", ...on(), "--json"], { cwd })).stdout.toString()) as TaskReport;

  test("under network: null a mapper cannot reach the coordinator's port, which a plain process can", async (t) => {
    if (!(await ready(t))) return;
    if (cluster.workers.length === 0) await cluster.addWorker({ slots: 2 });
    const port = cluster.address.split(":").pop() ?? "";
    const probe = `
const net = require("net"), os = require("os");
process.stdin.resume();
process.stdin.on("end", () => {
  const nets = Object.keys(os.networkInterfaces()).sort().join(",");
  const s = net.connect(Number(process.env.PORT), "127.0.0.1");
  s.on("connect", () => { console.log("connected; interfaces " + nets); s.destroy(); });
  s.on("error", (e) => console.log(e.code + "; interfaces " + nets));
});
`;
    const contained = taskFolder({ binary: "node", args: ["probe.js"], image: BASE_IMAGE, env: { PORT: port }, hardware: { network: null } }, { "probe.js": probe });
    const plain = taskFolder({ binary: "node", args: ["probe.js"], env: { PORT: port } }, { "probe.js": probe });
    const input = path.join(tempDir(), "one.txt");
    fs.writeFileSync(input, "x\n");
    const inside = await runBach(["task-run", ...on(), "--data", input], { cwd: contained });
    assert.equal(inside.code, 0, inside.stderr);
    assert.equal(inside.stdout.toString(), "ECONNREFUSED; interfaces lo\n");
    const outside = await runBach(["task-run", ...on(), "--data", input], { cwd: plain });
    assert.equal(outside.code, 0, outside.stderr);
    assert.match(outside.stdout.toString(), /^connected; /);
  });

  test("cpu.max 0.5 holds a CPU-bound mapper to half a core: its loop takes twice its CPU time in wall time", async (t) => {
    if (!(await ready(t))) return;
    if (cluster.workers.length === 0) await cluster.addWorker({ slots: 2 });
    // It prints its loop's wall time and the CPU time it got. Under a quota of half a core the wall
    // time is at least about twice the CPU time, however busy the machine (other load only adds wall
    // time); comparing wall times of two runs instead failed whenever other work shared the cores.
    const busy =
      'process.stdin.resume(); process.stdin.on("end", () => { const t = Date.now(); const c = process.cpuUsage(); let x = 0; for (let i = 0; i < 2.5e8; i++) x = (x + i) % 1000003; const u = process.cpuUsage(c); console.log(Date.now() - t, (u.user + u.system) / 1000, x); });\n';
    const task = taskFolder({ binary: "node", args: ["busy.js"], image: BASE_IMAGE, hardware: { cpu: { max: 0.5 }, network: null } }, { "busy.js": busy });
    const input = path.join(tempDir(), "one.txt");
    fs.writeFileSync(input, "x\n");
    const r = await runBach(["task-run", ...on(), "--data", input], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    const [wallMs, cpuMs] = r.stdout.toString().split(" ").map(Number);
    const ratio = wallMs / cpuMs;
    t.diagnostic(`cpu.max 0.5: ${(wallMs / 1000).toFixed(2)} s of wall time for ${(cpuMs / 1000).toFixed(2)} s of CPU, ratio ${ratio.toFixed(2)}`);
    assert.ok(ratio > 1.7, `ratio ${ratio.toFixed(2)}: the quota did not hold it to half a core`);
  });

  test("a worker killed mid-chunk leaves its containers; restarted, it removes them", async (t) => {
    if (!(await ready(t))) return;
    const dataDir = tempDir("bach-worker-");
    const worker = await cluster.addWorker({ name: "restarting", dataDir, slots: 1 });
    const task = taskFolder({ binary: "sh", args: ["-c", "cat >/dev/null; sleep 120"], image: BASE_IMAGE, hardware: { network: null }, timeout: "5m" });
    const input = path.join(tempDir(), "one.txt");
    fs.writeFileSync(input, "x\n");
    // Only the restarting worker may take it: the others (if any) are stopped first.
    for (const w of cluster.workers.filter((w) => w !== worker)) await w.stop("SIGKILL");
    const running = runBach(["task-run", ...on(), "--data", input, "--no-progress"], { cwd: task, timeoutMs: 60_000 });
    const pid = worker.proc.pid ?? 0;
    const docker = connectDocker();
    await waitFor("the worker's container", async () => (await containersOf(pid)) > 0, 30_000);
    await worker.stop("SIGKILL");
    assert.ok((await containersOf(pid)) > 0, "SIGKILL leaves the container behind");
    const again = await cluster.addWorker({ name: "restarting", dataDir, slots: 1 });
    await waitFor("the leftover container to be removed", async () => (await containersOf(pid)) === 0, 30_000);
    const mine = await docker.listContainers({ all: true, filters: { label: [LABEL] } });
    assert.ok(mine.every((c) => c.Labels["org.bach.pid"] !== String(pid)));
    await runBach(["task-cancel", ...on(), (await report(task)).id], { cwd: task });
    const r = await running;
    assert.equal(r.code, 4, r.stderr); // cancelled by bach task-cancel
    await again.stop();
    assert.equal(await containersOf(again.proc.pid ?? 0), 0, "a worker that stops removes its containers");
  });
});

describe("a second engine", () => {
  test("a worker whose engine lacks the image receives it from the coordinator and runs chunks", async (t) => {
    if (!(await ready(t))) return;
    const engine = await startSecondEngine();
    const cluster = await startCluster();
    try {
      const worker = await cluster.addWorker({ slots: 2, env: { DOCKER_HOST: engine.host }, args: ["--runtime", "docker"] });
      const task = inImage("gdelt-filter", { hardware: { network: null } });
      const expected = runOnce(task, "node", ["filter.js"], gdelt);
      const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", gdelt, "--chunk-size", "512k"], { cwd: task });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(expected), "output differs from one run");
      assert.match(worker.stderr(), /loading the task's image from the coordinator/);
      const id = (await connectDocker().getImage(BASE_IMAGE).inspect()).Id;
      const there = spawnSync("docker", ["-H", engine.host, "image", "inspect", "--format", "{{.Id}}", id], { encoding: "utf8" });
      assert.equal(there.stdout.trim(), id, there.stderr);
    } finally {
      await cluster.stop();
      await engine.stop();
    }
  });
});
