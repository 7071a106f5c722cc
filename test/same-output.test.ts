// Same output: for record-wise mappers, `bach task-run` prints byte for byte what one run of the mapper
// prints over the whole input: from stdin, a file and a URL, embedded and on a cluster, in two languages.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { exampleDir, gdeltFile, runBach, runOnce, startCluster, tempDir, waitFor, type Cluster } from "./harness";

const nodeTask = exampleDir("gdelt-filter");
const awkTask = exampleDir("awk-filter");

function awkArgs(): { binary: string; args: string[] } {
  return JSON.parse(fs.readFileSync(path.join(awkTask, "bachfile.json"), "utf8")) as { binary: string; args: string[] };
}

let input = "";
let server: http.Server;
let url = "";
let expectNode: Buffer;
let expectAwk: Buffer;

before(() => {
  input = gdeltFile(24 * 1024 * 1024);
  expectNode = runOnce(nodeTask, "node", ["filter.js"], input);
  expectAwk = runOnce(awkTask, awkArgs().binary, awkArgs().args, input);
  assert.ok(expectNode.length > 0 && expectAwk.length > 0, "the mappers keep some rows");
  server = http.createServer((_req, res) => fs.createReadStream(input).pipe(res));
  return new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => {
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events.tsv`;
    resolve();
  }));
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("embedded", () => {
  test("stdin through a pipe, node mapper, small chunks", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "1m"], { cwd: nodeTask, pipeFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectNode), "output identical to one run");
  });

  test("file, node mapper, auto chunk size", async () => {
    const r = await runBach(["task-run", "--data", input, "-p", "2"], { cwd: nodeTask });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectNode));
  });

  test("file, awk mapper, seed spelling `task run`", async () => {
    const r = await runBach(["task", "run", "--data", input, "-p", "3", "--chunk-size", "512k"], { cwd: awkTask });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectAwk));
  });

  test("stdin redirected from a file (read in place), awk mapper", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "1m"], { cwd: awkTask, stdinFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectAwk));
  });

  test("URL, awk mapper", async () => {
    const r = await runBach(["task-run", "--data", url, "-p", "2", "--chunk-size", "2m"], { cwd: awkTask });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectAwk));
  });

  test("--no-keep-order gives the same records, in some order", async () => {
    const r = await runBach(["task-run", "--data", input, "-p", "2", "--chunk-size", "1m", "--no-keep-order"], { cwd: nodeTask });
    assert.equal(r.code, 0, r.stderr);
    const sorted = (b: Buffer) => b.toString("latin1").split("\n").sort().join("\n");
    assert.equal(sorted(r.stdout), sorted(expectNode));
  });
});

describe("cluster on loopback", () => {
  let cluster: Cluster;
  before(async () => {
    // One worker as on another machine (chunks over gRPC), one that finds the spool on its disk.
    cluster = await startCluster({ slots: 2 });
    await cluster.addWorker();
    await cluster.addWorker({ localSpool: true });
    await waitFor("worker-2 to find the spool", () => cluster.coordinator.stderr().includes("shares the coordinator's filesystem"));
  });
  after(() => cluster.stop());

  const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

  test("stdin through a pipe, node mapper", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "1m"], { cwd: nodeTask, pipeFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectNode));
  });

  test("file, awk mapper, one data stream at a time (--lb 1)", async () => {
    const r = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "3m", "-p", "3", "--lb", "1"], { cwd: awkTask });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectAwk));
  });

  test("URL, node mapper, token from the environment", async () => {
    const r = await runBach(["task-run", "--data", url, "--chunk-size", "2m"], {
      cwd: nodeTask,
      env: { BACH_COORDINATOR: cluster.address, BACH_TOKEN: cluster.token },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expectNode));
  });

  test("--detach returns the task id; task-output prints the same output later", async () => {
    const r = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "2m", "--detach"], { cwd: awkTask });
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.toString().trim();
    assert.match(id, /^t-\S+$/);
    const out = await runBach(["task-output", id, ...on()], { cwd: awkTask });
    assert.equal(out.code, 0, out.stderr);
    assert.ok(out.stdout.equals(expectAwk));
    const missing = await runBach(["task-output", "t-no-such", ...on()], { cwd: awkTask });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^bach: no task t-no-such$/m);
  });

  test("stdin, output, chunks and outputs fall back to gRPC when the data port cannot be reached", async () => {
    // The data stream listens on 127.0.0.2 only, so the CLI's connection to 127.0.0.1 is refused.
    const other = await startCluster({ workers: 1, slots: 2, dataListen: "127.0.0.2:0" });
    try {
      const r = await runBach(["task-run", "--coordinator", other.address, "--token", other.token, "--chunk-size", "2m"], { cwd: nodeTask, pipeFile: input });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /sending the input over gRPC/);
      assert.ok(r.stdout.equals(expectNode));
      // The worker, told the same port, fetches its chunks and sends its outputs over gRPC.
      assert.match(other.workers[0]?.stderr() ?? "", /data port did not answer; fetching chunks over gRPC/);
    } finally {
      await other.stop();
    }
  });

  test("the report counts what ran, per worker", async () => {
    const r = await runBach(["task-report", ...on(), "--json"], { cwd: nodeTask });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.toString()) as { state: string; chunks: { planned: number; byState: Record<string, number> }; workers: { committed: number }[] };
    assert.equal(report.state, "succeeded");
    assert.equal(report.chunks.byState.committed, report.chunks.planned);
    assert.equal(report.workers.reduce((n, w) => n + w.committed, 0), report.chunks.planned);
    assert.equal(report.workers.filter((w) => w.committed > 0).length, 2, "both workers, network and local spool, committed chunks");
    const page = path.join(tempDir(), "report.html");
    const html = await runBach(["task-report", ...on(), "--html", page], { cwd: nodeTask });
    assert.equal(html.code, 0, html.stderr);
    const text = fs.readFileSync(page, "utf8");
    assert.match(text, /<svg [^>]*>/);
    const attempts = Object.values((JSON.parse(r.stdout.toString()) as { attempts: { byState: Record<string, number> } }).attempts.byState).reduce((a, b) => a + b, 0);
    assert.equal(text.match(/<rect /g)?.length, attempts, "one bar per attempt");
    const list = await runBach(["task-list", ...on()], { cwd: nodeTask });
    assert.match(list.stdout.toString(), /succeeded/);
    const workers = await runBach(["workers", ...on()], { cwd: nodeTask });
    assert.match(workers.stdout.toString(), /worker-1[\s\S]*worker-2/);
  });
});
