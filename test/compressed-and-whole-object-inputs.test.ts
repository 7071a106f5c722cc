// Compressed input (.gz, .bz2, .xz, .zst) is decompressed where it is read: each compressed file or
// object is one chunk, read whole (a compressed stream cannot be entered in the middle), and the
// output is one run of the program over the decompressed bytes. `"input": "objects"` runs the program
// once per object, its bytes as they are on stdin and its name in BACH_OBJECT. A corrupt .gz fails
// with one line naming it, never exit 0 with the compressed bytes mapped.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";
import { startRangeServer, type RangeServer } from "./range-server";

const dir = tempDir("bach-compressed-");
const files: Record<string, string> = {};
function write(name: string, data: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  files[name] = file;
  return file;
}
function compressed(name: string, data: Buffer, program: string): string {
  const r = spawnSync(program, ["-c"], { input: data, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `${program}: ${r.stderr?.toString()}`);
  return write(name, r.stdout);
}
const lines = (seed: string, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `${seed}\t${i}\t${"é".repeat(i % 40)}\n`).join(""));
const plainA = lines("a", 20000);
const plainB = lines("b", 15000);
const plainC = lines("c", 10000);
const plainD = lines("d", 5000);
const gz = compressed("a.tsv.gz", plainA, "gzip");
const bz2 = compressed("b.tsv.bz2", plainB, "bzip2");
const xz = compressed("c.tsv.xz", plainC, "xz");
const zst = compressed("d.tsv.zst", plainD, "zstd");
const plain = write("e.tsv", lines("e", 3000));
const unended = write("unended.tsv", Buffer.from("u\t1\nu\t2 without a newline"));
const corrupt = write("bad.tsv.gz", Buffer.concat([fs.readFileSync(gz).subarray(0, 2000), randomBytes(3000)]));
const all = Buffer.concat([plainA, plainB, plainC, plainD, fs.readFileSync(plain)]);
const binary = [write("blob1.bin", randomBytes(70000)), write("blob2.bin", Buffer.from("no\nrecords\nhere")), write("blob3.bin", randomBytes(3))];

const cat = taskFolder({ "logical-name": "cat", binary: "cat" });
// One run per object: its name, its size, and a digest of its bytes.
const perObject = taskFolder({ "logical-name": "per-object", binary: "sh", args: ["-c", 'printf "%s\\t%s\\t" "$(basename "$BACH_OBJECT")" "$(wc -c | tr -d " ")"; echo'], input: "objects" });
const expectPerObject = binary.map((f) => `${path.basename(f)}\t${fs.statSync(f).size}\t\n`).join("");

let server: RangeServer;
before(async () => {
  server = await startRangeServer(files);
});
after(() => server.close());

const inputs = (f: (file: string) => string) => [gz, bz2, xz, zst, plain].flatMap((file) => ["--data", f(file)]);

describe("embedded", () => {
  test("gzip, bzip2, xz and zstd files and a plain one, in order: the decompressed records", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", ...inputs((f) => f)], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(all));
  });

  test("the same as http objects that workers read whole and decompress", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", ...inputs((f) => server.url(path.basename(f)))], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /goes through/);
    assert.ok(r.stdout.equals(all));
  });

  test("a file without a final newline before a compressed one: the newline is added between them, whichever chunk ends it", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", "--data", unended, "--data", gz, "--data", unended], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `${fs.readFileSync(unended)}\n${plainA}${fs.readFileSync(unended)}`);
    const http = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", ...[unended, gz, unended].flatMap((f) => ["--data", server.url(path.basename(f))])], { cwd: cat });
    assert.equal(http.code, 0, http.stderr);
    assert.equal(http.stdout.toString(), r.stdout.toString());
  });

  test("a corrupt .gz fails the task with one line naming it", async () => {
    const r = await runBach(["task-run", "--data", corrupt], { cwd: cat });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /bad\.tsv\.gz: not valid gzip data/);
    assert.doesNotMatch(r.stderr, /retr(y|ied)/i, "the same bytes fail every retry: none is made");
  });

  test('"input": "objects": one run per object, its bytes whole, its name in BACH_OBJECT', async () => {
    const r = await runBach(["task-run", "-p", "2", ...binary.flatMap((f) => ["--data", f])], { cwd: perObject });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), expectPerObject);
    const http = await runBach(["task-run", "-p", "2", ...binary.flatMap((f) => ["--data", server.url(path.basename(f))])], { cwd: perObject });
    assert.equal(http.code, 0, http.stderr);
    assert.equal(http.stdout.toString(), expectPerObject);
  });

  test('"input": "objects" from stdin is refused with one line', async () => {
    const r = await runBach(["task-run"], { cwd: perObject, pipeFile: plain });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^bach: "input": "objects" runs the program once per object: name them with --data/);
  });
});

describe("cluster on loopback", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ workers: 2, slots: 2 });
  });
  after(() => cluster.stop());
  const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

  test("local compressed files: decompressed by the CLI, streamed", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "64k", ...inputs((f) => f)], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(all));
  });

  test("a corrupt local .gz: one line, exit 2", async () => {
    const r = await runBach(["task-run", ...on(), "--data", corrupt], { cwd: cat });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^bach: --data \S*bad\.tsv\.gz: not valid gzip data/);
  });

  test("compressed http objects and whole objects, read by the workers", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "64k", ...inputs((f) => server.url(path.basename(f)))], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(all));
    const objects = await runBach(["task-run", ...on(), ...binary.flatMap((f) => ["--data", server.url(path.basename(f))])], { cwd: perObject });
    assert.equal(objects.code, 0, objects.stderr);
    assert.equal(objects.stdout.toString(), expectPerObject);
  });

  test('"input": "objects" with local files and a remote coordinator is refused with one line', async () => {
    const r = await runBach(["task-run", ...on(), "--data", binary[0]], { cwd: perObject });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^bach: "input": "objects" with local files needs them on the workers' machine/);
  });
});
