// Several inputs as one: --data given more than once, a glob, --data-list, and http(s) URLs that workers
// read by ranges themselves. The output is byte for byte what one run of the program gives over the
// inputs concatenated, a record never spanning two inputs (the delimiter is added after an input that
// lacks one), however the chunks cut them; input a server cannot give by ranges goes through the CLI.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";
import { startRangeServer, type RangeServer } from "./range-server";
import { hostsUnavailable, makeHosts } from "./hosts";

/** Records of many lengths (a few far longer than a chunk), bytes above 0x7f, `delimiter`-ended. */
function records(seed: number, count: number, delimiter: string, trailing = true): Buffer {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  const parts: string[] = [];
  for (let i = 0; i < count; i++) {
    const long = next() % 97 === 0;
    const n = long ? 9000 + (next() % 4000) : next() % 200;
    parts.push(`${seed}:${i}:` + "é§abc".repeat(n / 5 + 1).slice(0, n));
  }
  return Buffer.from(parts.join(delimiter) + (trailing ? delimiter : ""));
}

const dir = tempDir("bach-inputs-");
const files: Record<string, string> = {};
function write(name: string, data: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  files[name] = file;
  return file;
}
const a = write("a.tsv", records(1, 400, "\n"));
const b = write("b.tsv", records(2, 300, "\n", false));
const c = write("c.tsv", records(3, 500, "\n"));
write("empty.tsv", Buffer.alloc(0));
const crlf = write("crlf.txt", records(4, 600, "\r\n"));
const nl = Buffer.from("\n");
/** What one run of `cat` prints over a, b and c concatenated, b's last record ended. */
const abc = Buffer.concat([fs.readFileSync(a), fs.readFileSync(b), nl, fs.readFileSync(c)]);
const cat = taskFolder({ "logical-name": "cat", binary: "cat" });
const catCrlf = taskFolder({ "logical-name": "cat-crlf", binary: "cat", delimiter: "\r\n" });
const catParagraphs = taskFolder({ "logical-name": "cat-paragraphs", binary: "cat", delimiter: "\n\n" });

let server: RangeServer;
let plain: RangeServer;
before(async () => {
  server = await startRangeServer(files);
  plain = await startRangeServer(files, { ranges: false });
});
after(async () => {
  await server.close();
  await plain.close();
});

describe("embedded", () => {
  test("--data twice, a glob and --data-list read in order as one input", async () => {
    const list = path.join(dir, "list.txt");
    fs.writeFileSync(list, "# the second half\nc.tsv\n");
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "4k", "--data", a, "--data", path.join(dir, "[b]*.tsv"), "--data", path.join(dir, "empty.tsv"), "--data-list", list], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(abc), "the inputs' records, in order, each once");
  });

  test("http URLs that honour Range: workers read their own ranges, cut at any byte", async () => {
    for (const size of ["1000", "4k", "64k"]) {
      const before = server.bytesSent();
      const r = await runBach(["task-run", "-p", "3", "--chunk-size", size, "--data", server.url("a.tsv"), "--data", server.url("b.tsv"), "--data", server.url("empty.tsv"), "--data", server.url("c.tsv")], { cwd: cat });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /goes through/, "read by ranges, not streamed");
      assert.ok(r.stdout.equals(abc), `chunks of ${size}: the same bytes`);
      // With chunks far bigger than a record, each byte is read about once: a range, plus at most as
      // much again to finish its last record. (Ranges inside a 13 KB record, as with 1000-byte chunks,
      // each read on to the record's end to find that no record starts in them.)
      const read = server.bytesSent() - before;
      if (size === "64k") assert.ok(read >= abc.length && read < abc.length * 1.5, `read ${read} bytes for ${abc.length}`);
    }
  });

  test("a two-byte delimiter is found across range edges", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "3000", "--data", server.url("crlf.txt")], { cwd: catCrlf });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(fs.readFileSync(crlf)));
  });

  test("a server that ignores Range, or a delimiter that can overlap itself: the input goes through this process, and it says why", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "4k", "--data", plain.url("a.tsv"), "--data", plain.url("b.tsv"), "--data", plain.url("c.tsv")], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^bach: http:\/\/127\.0\.0\.1:\d+\/a\.tsv does not answer Range requests: the input goes through this process$/m);
    assert.ok(r.stdout.equals(abc));
    const p = await runBach(["task-run", "-p", "2", "--chunk-size", "4k", "--data", server.url("a.tsv")], { cwd: catParagraphs });
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /^bach: the delimiter "\\n\\n" can overlap itself, so a worker cannot find where a record starts from the middle of an object: the input goes through this process$/m);
    assert.ok(p.stdout.equals(fs.readFileSync(a)));
  });
});

describe("cluster on loopback", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ slots: 2 });
    await cluster.addWorker();
    await cluster.addWorker({ localSpool: true });
    await waitFor("worker-2 to find the spool", () => cluster.coordinator.stderr().includes("shares the coordinator's filesystem"));
  });
  after(() => cluster.stop());
  const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

  test("URLs: the workers read them, the coordinator only plans", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "8k", "--data", server.url("a.tsv"), "--data", server.url("b.tsv"), "--data", server.url("c.tsv")], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(abc));
    const report = await runBach(["task-report", ...on(), "--json"], { cwd: cat });
    const byWorker = (JSON.parse(report.stdout.toString()) as { workers: { worker: string; committed: number }[] }).workers;
    assert.ok(byWorker.filter((w) => w.committed > 0).length === 2, `both workers read ranges: ${JSON.stringify(byWorker)}`);
  });

  test("local files the coordinator cannot see go through the CLI as one stream", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "8k", "--data", path.join(dir, "{a,b,c}.tsv")], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(abc));
  });
});

describe("bad input gets one line and exit 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["a glob that matches nothing", ["--data", path.join(dir, "*.nothing")], /^bach: --data \S+\*\.nothing: the glob matches no file$/],
    ["a --data-list that is not there", ["--data-list", path.join(dir, "nope.txt")], /^bach: --data-list \S+nope\.txt: no such file$/],
    ["stdin among other inputs", ["--data", "-", "--data", a], /^bach: --data -: stdin cannot be one of several inputs/],
    ["a scheme Bach does not read", ["--data", "ftp://example.org/x"], /^bach: --data ftp:\/\/example\.org\/x: Bach reads files, s3:\/\/ and http\(s\):\/\/ URLs, not ftp:\/\/$/],
  ];
  for (const [what, args, line] of cases) {
    test(what, async () => {
      const r = await runBach(["task-run", ...args], { cwd: cat });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), line);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  }

  test("a URL that is not there is named without its query string", async () => {
    const r = await runBach(["task-run", "--data", `${server.url("missing.tsv")}?X-Amz-Signature=s3cr3t`], { cwd: cat });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /missing\.tsv/);
    assert.doesNotMatch(r.stderr, /s3cr3t/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  });
});

describe("a worker that cannot reach the objects", () => {
  test("reads them through the coordinator instead, and says so once", async (t) => {
    const why = hostsUnavailable();
    if (why) {
      if (process.env.BACH_REQUIRE_DOCKER === "1") throw new Error(`in CI this test must run: ${why}`);
      return t.skip(why);
    }
    // The server listens on this machine's loopback: the coordinator reaches it, a worker on a host
    // of its own (a network namespace) does not.
    const hosts = makeHosts(1);
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster({ host: hosts.gateway });
      const worker = await cluster.addWorker({ name: "far", slots: 2, wrap: hosts.exec(0), args: ["--runtime", "process"] });
      const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--chunk-size", "16k", "--data", server.url("a.tsv"), "--data", server.url("b.tsv"), "--data", server.url("c.tsv")], { cwd: cat });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(abc));
      assert.equal(worker.stderr().split("cannot reach the task's objects: reading them through the coordinator").length - 1, 1, worker.stderr().slice(-3000));
    } finally {
      await cluster?.stop();
      hosts.remove();
    }
  });
});
