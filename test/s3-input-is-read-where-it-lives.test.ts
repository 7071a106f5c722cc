// s3:// input against a real S3 server (Ceph radosgw, started by scripts/s3-server): one object, a prefix
// of many, embedded and on a cluster whose workers hold no credentials (they get presigned URLs). The
// output is byte for byte `cat` over the objects in key order. Faults come from a proxy between the
// workers and the store: 503s and connections cut mid-GET are read on; a URL that expired before its
// read fails that attempt and its retry gets a fresh one; an object replaced during the task fails the
// task naming it. Bad input (no credentials, no bucket, a wrong secret, an empty prefix) is one line.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";
import { putObjects, startS3, type S3Server } from "./s3";
import { startFaultProxy, type Fault } from "./fault-proxy";

function records(seed: number, count: number): Buffer {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`${seed}\t${i}\t${"xyzé".repeat(next() % 60)}${next() % 50 === 0 ? "w".repeat(20000) : ""}`);
  return Buffer.from(lines.join("\n") + "\n");
}

let s3: S3Server | null = null;
const objects: Record<string, Buffer> = {
  "logs/2024/a.tsv": records(1, 3000),
  "logs/2024/b.tsv": records(2, 2000),
  "logs/2025/c.tsv": records(3, 4000),
  "one.tsv": records(4, 5000),
};
const logs = Buffer.concat([objects["logs/2024/a.tsv"], objects["logs/2024/b.tsv"], objects["logs/2025/c.tsv"]]);
const cat = taskFolder({ "logical-name": "cat", binary: "cat" });
/** The environment of a process that holds no AWS credentials at all. */
const noCredentials: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_PROFILE: "", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent", AWS_CONFIG_FILE: "/nonexistent", AWS_EC2_METADATA_DISABLED: "true" };

before(async () => {
  s3 = await startS3();
  if (!s3) return;
  await putObjects(s3, "bach-in", objects);
  await putObjects(s3, "bach-empty", {});
});
after(() => s3?.stop());

const env = (): NodeJS.ProcessEnv => ({ ...noCredentials, ...s3?.env, AWS_EC2_METADATA_DISABLED: "true" });

describe("embedded", () => {
  test("one object, and every object under a prefix in key order", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    const one = await runBach(["task-run", "-p", "2", "--chunk-size", "16k", "--data", "s3://bach-in/one.tsv"], { cwd: cat, env: env() });
    assert.equal(one.code, 0, one.stderr);
    assert.ok(one.stdout.equals(objects["one.tsv"]));
    const prefix = await runBach(["task-run", "-p", "3", "--chunk-size", "10000", "--data", "s3://bach-in/logs/"], { cwd: cat, env: env() });
    assert.equal(prefix.code, 0, prefix.stderr);
    assert.doesNotMatch(prefix.stderr, /goes through/);
    assert.ok(prefix.stdout.equals(logs), "the prefix's objects in key order, each record once");
  });

  const bad: [string, string[], () => NodeJS.ProcessEnv, RegExp][] = [
    ["no credentials", ["--data", "s3://bach-in/one.tsv"], () => ({ ...noCredentials, AWS_ENDPOINT_URL: s3?.endpoint }), /^bach: .*s3:\/\/bach-in\/one\.tsv.*no AWS credentials/],
    ["a bucket that does not exist", ["--data", "s3://no-such-bucket/x.tsv"], env, /^bach: .*s3:\/\/no-such-bucket\/x\.tsv.*(bucket|NoSuchBucket)/i],
    ["a wrong secret", ["--data", "s3://bach-in/one.tsv"], () => ({ ...env(), AWS_SECRET_ACCESS_KEY: "wrong" }), /^bach: .*s3:\/\/bach-in\/one\.tsv.*access denied/i],
    ["an empty prefix", ["--data", "s3://bach-empty/nothing/"], env, /^bach: .*no objects under s3:\/\/bach-empty\/nothing\//],
    ["a key that is not there", ["--data", "s3://bach-in/missing.tsv"], env, /^bach: .*s3:\/\/bach-in\/missing\.tsv/],
  ];
  test('compressed objects are read whole and decompressed; "input": "objects" runs once per object with BACH_OBJECT', async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    await putObjects(s3, "bach-in", { "gz/1.tsv.gz": gzipSync(objects["one.tsv"]), "gz/2.tsv": objects["logs/2024/a.tsv"] });
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "16k", "--data", "s3://bach-in/gz/"], { cwd: cat, env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(Buffer.concat([objects["one.tsv"], objects["logs/2024/a.tsv"]])));
    const perObject = taskFolder({ "logical-name": "per-object", binary: "sh", args: ["-c", 'printf "%s %s\\n" "$BACH_OBJECT" "$(wc -c | tr -d " ")"'], input: "objects" });
    const o = await runBach(["task-run", "-p", "2", "--data", "s3://bach-in/logs/"], { cwd: perObject, env: env() });
    assert.equal(o.code, 0, o.stderr);
    assert.equal(o.stdout.toString(), ["logs/2024/a.tsv", "logs/2024/b.tsv", "logs/2025/c.tsv"].map((k) => `s3://bach-in/${k} ${objects[k].length}\n`).join(""));
  });

  test("an object replaced during the task fails it, naming the object: never a mix of versions", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    await putObjects(s3, "bach-in", { "changing.tsv": records(5, 4000) });
    const started = path.join(tempDir(), "started");
    // One chunk at a time, each a second long: the object is replaced while the first runs.
    const slow = taskFolder({ "logical-name": "slow-cat", binary: "sh", args: ["-c", `touch ${started}; sleep 1; cat`] });
    const run = runBach(["task-run", "-p", "1", "--chunk-size", "32k", "--data", "s3://bach-in/changing.tsv"], { cwd: slow, env: env() });
    await waitFor("the first chunk to start", () => fs.existsSync(started));
    await putObjects(s3, "bach-in", { "changing.tsv": records(6, 4000) });
    const r = await run;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /s3:\/\/bach-in\/changing\.tsv.*the object changed during the task/);
    assert.doesNotMatch(r.stderr, /retr(y|ied)/i, "no retry: another version cannot be the one planned");
  });

  for (const [what, args, e, line] of bad) {
    test(`${what}: one line, exit 2`, async (t) => {
      if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
      const r = await runBach(["task-run", ...args], { cwd: cat, env: e() });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, line);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  }
});

describe("cluster: workers without credentials", () => {
  let cluster: Cluster | null = null;
  const faults: Fault[] = [];
  let proxy: Awaited<ReturnType<typeof startFaultProxy>> | null = null;
  before(async () => {
    if (!s3) return;
    // Workers reach the store through the proxy: the coordinator presigns for its address.
    proxy = await startFaultProxy(s3.endpoint, (req) => (req.method === "GET" && /\.tsv/.test(req.url ?? "") ? (faults.shift() ?? { kind: "pass" }) : { kind: "pass" }));
    // The coordinator holds the credentials; the workers, and the CLI, hold none.
    cluster = await startCluster({ slots: 2, coordinatorArgs: ["--s3-endpoint", proxy.endpoint], coordinatorEnv: env() });
    await cluster.addWorker({ env: noCredentials });
    await cluster.addWorker({ env: noCredentials });
  });
  after(async () => {
    await cluster?.stop();
    await proxy?.close();
  });
  const on = () => ["--coordinator", cluster?.address ?? "", "--token", cluster?.token ?? ""];

  test("a prefix read by workers through presigned URLs, with 503s and cut connections read on", async (t) => {
    if (!s3 || !cluster) return t.skip("no S3 server here (radosgw is not installed)");
    faults.push({ kind: "503" }, { kind: "cut", afterBytes: 5000 }, { kind: "pass" }, { kind: "503" }, { kind: "cut", afterBytes: 100 });
    const r = await runBach(["task-run", ...on(), "--chunk-size", "20000", "--data", "s3://bach-in/logs/"], { cwd: cat, env: noCredentials });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(logs));
    assert.equal(faults.length, 0, "every fault was met");
    assert.match(cluster.workers.map((w) => w.stderr()).join(""), /a read of the input was cut: reading on/);
  });

  test("a worker SIGKILLed mid-range: its chunks are read again by another, nothing lost or doubled", async (t) => {
    if (!s3 || !cluster) return t.skip("no S3 server here (radosgw is not installed)");
    const victim = await cluster.addWorker({ env: noCredentials, name: "victim" });
    const slow = taskFolder({ "logical-name": "slow-cat", binary: "sh", args: ["-c", "sleep 0.3; cat"] });
    const run = runBach(["task-run", ...on(), "--chunk-size", "8k", "--data", "s3://bach-in/logs/"], { cwd: slow, env: noCredentials });
    const pid = victim.proc.pid ?? 0;
    await waitFor("the victim to run a program", () => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim() !== "");
    await victim.stop("SIGKILL");
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(logs));
  });
});

describe("presigned URLs expire", () => {
  test("a URL that expired before its read fails that attempt; the retry gets a fresh one", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    let first = true;
    const proxy = await startFaultProxy(s3.endpoint, (req) => {
      if (req.method !== "GET" || !/one\.tsv/.test(req.url ?? "") || !first) return { kind: "pass" };
      first = false;
      return { kind: "delay", ms: 6500 };
    });
    const cluster = await startCluster({ slots: 1, coordinatorArgs: ["--s3-endpoint", proxy.endpoint], coordinatorEnv: { ...env(), BACH_PRESIGN_SECONDS: "4" } });
    try {
      await cluster.addWorker({ env: noCredentials });
      const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--chunk-size", "64k", "--data", "s3://bach-in/one.tsv"], { cwd: cat, env: noCredentials });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(objects["one.tsv"]));
      const report = await runBach(["task-report", "--coordinator", cluster.address, "--token", cluster.token, "--json"], { cwd: cat });
      const attempts = (JSON.parse(report.stdout.toString()) as { failures: { reason: string }[] }).failures;
      assert.ok(attempts.some((a) => /access denied \(a presigned URL may have expired\)/.test(a.reason)), JSON.stringify(attempts));
    } finally {
      await cluster.stop();
      await proxy.close();
    }
  });
});
