// s3:// input is read by the workers straight from the store: with three worker hosts (network
// namespaces on a bridge, as the chaos test makes them) reading 1 GiB from a real S3 server, the
// coordinator moves under 1% of the input's bytes. And a coordinator SIGKILLed mid-task over s3:// input
// and restarted on its data dir carries the task on: the same output, each chunk committed once.
//
// How the coordinator's bytes are counted: every byte a worker host sends or receives crosses its link
// to the bridge, and this machine's end of the link counts them (Hosts.linkBytes: frames, headers and
// ACKs included). A host talks to two things only: the coordinator (gRPC and its data port) and the
// store, which it reaches through a pass-through proxy that counts the body bytes it sends to each
// client address. So link bytes minus body bytes from the store is an upper bound of what the
// coordinator moved to and from that host: it also holds the framing and HTTP headers of the store's
// traffic, and nothing of the coordinator's traffic is left out. The bound is asserted under 1%.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { gdeltFile, runBach, startCluster, taskFolder, waitFor, type Cluster } from "./harness";
import { hostsUnavailable, makeHosts, type Hosts } from "./hosts";
import { putObjects, s3Client, startS3, type S3Server } from "./s3";
import { startFaultProxy, type FaultProxy } from "./fault-proxy";

const GIB = 2 ** 30;
const HOSTS = 3;
/** The whole 1 GiB run, from the CLI's start to its exit. */
const RUN_DEADLINE_MS = 10 * 60_000;
const requireS3 = process.env.BACH_REQUIRE_S3 === "1";
/** The environment of a process that holds no AWS credentials at all. */
const noCredentials: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_PROFILE: "", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent", AWS_CONFIG_FILE: "/nonexistent", AWS_EC2_METADATA_DISABLED: "true", AWS_ENDPOINT_URL: "" };

/**
 * A record-wise mapper with a small output: the event id of each row whose EventRootCode (0-based
 * column 28) is 19, about 6% of the rows at 10 bytes each (~0.2% of the input), so what the
 * coordinator must carry (the outputs) stays far below what it must not (the input).
 */
const ids = taskFolder(
  { "logical-name": "ids-of-code-19", binary: "node", args: ["ids.js"] },
  {
    "ids.js": `"use strict";
const pick = (line) => { const f = line.split("\\t", 29); return f[28] === "19" ? f[0] + "\\n" : ""; };
let rest = "";
process.stdin.setEncoding("latin1");
process.stdin.on("data", (d) => { const lines = (rest + d).split("\\n"); rest = lines.pop(); let out = ""; for (const l of lines) out += pick(l); if (out) process.stdout.write(out); });
process.stdin.on("end", () => { if (rest) process.stdout.write(pick(rest)); });
`,
  },
);

let s3: S3Server | null = null;
before(async () => {
  s3 = await startS3();
});
after(() => s3?.stop());

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
const mib = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
const say = (line: string) => console.log(line);

/** The mapper run once over the whole file, its stdin the file itself (1 GiB is not read into memory). */
function mapOnce(task: string, file: string): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    const r = spawnSync(process.execPath, ["ids.js"], { cwd: task, stdio: [fd, "pipe", "pipe"], maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`the reference run failed: ${r.stderr.toString()}`);
    return r.stdout;
  } finally {
    fs.closeSync(fd);
  }
}

/** Streams the file up as one object (a single PutObject: Ceph takes up to 5 GiB in one). */
async function upload(server: S3Server, bucket: string, key: string, file: string): Promise<void> {
  await putObjects(server, bucket, {});
  const client = s3Client(server);
  try {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: fs.createReadStream(file), ContentLength: fs.statSync(file).size }));
  } finally {
    client.destroy();
  }
}

async function remove(server: S3Server, bucket: string, key: string): Promise<void> {
  const client = s3Client(server);
  try {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } finally {
    client.destroy();
  }
}

test("three workers in namespaces read 1 GiB from the store; the coordinator moves under 1% of it", { timeout: RUN_DEADLINE_MS + 5 * 60_000 }, async (t) => {
  if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
  const why = hostsUnavailable();
  if (why) {
    if (requireS3) throw new Error(`BACH_REQUIRE_S3=1, but worker hosts cannot be made here: ${why}`);
    return t.skip(`no worker hosts here: ${why}`);
  }
  const began = Date.now();
  const file = gdeltFile(GIB);
  const size = fs.statSync(file).size;
  let hosts: Hosts | undefined;
  let proxy: FaultProxy | undefined;
  let cluster: Cluster | undefined;
  let uploaded = false;
  try {
    const expected = mapOnce(ids, file);
    await upload(s3, "bach-big", "events.tsv", file);
    uploaded = true;
    fs.rmSync(file);
    say(`${size} bytes generated, mapped once and uploaded in ${((Date.now() - began) / 1000).toFixed(1)} s`);

    hosts = makeHosts(HOSTS);
    // radosgw listens on loopback only, which a host cannot reach: the proxy listens on the bridge.
    proxy = await startFaultProxy(s3.endpoint, () => ({ kind: "pass" }), hosts.gateway);
    cluster = await startCluster({ host: hosts.gateway, coordinatorArgs: ["--s3-endpoint", proxy.endpoint], coordinatorEnv: { ...noCredentials, ...s3.env } });
    for (let i = 0; i < HOSTS; i++) {
      await cluster.addWorker({ name: `host-${i}`, slots: 1, wrap: hosts.exec(i), env: noCredentials, args: ["--runtime", "process"] });
    }
    const h = hosts;
    const linkBefore = Array.from({ length: HOSTS }, (_, i) => h.linkBytes(i));
    const storeBefore = Array.from({ length: HOSTS }, (_, i) => proxy?.sentTo(h.address(i)) ?? 0);
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const ran = Date.now();
    const r = await runBach(["task-run", ...on, "--chunk-size", "32m", "--no-progress", "--data", "s3://bach-big/events.tsv"], { cwd: ids, env: noCredentials, timeoutMs: RUN_DEADLINE_MS });
    const seconds = (Date.now() - ran) / 1000;
    const link = Array.from({ length: HOSTS }, (_, i) => h.linkBytes(i) - linkBefore[i]);
    const store = Array.from({ length: HOSTS }, (_, i) => (proxy?.sentTo(h.address(i)) ?? 0) - storeBefore[i]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /goes through/, "read by ranges, not streamed through the CLI");
    assert.equal(md5(r.stdout), md5(expected), `the output is one run of the mapper (${r.stdout.length} bytes, ${expected.length} expected)`);

    const report = JSON.parse((await runBach(["task-report", ...on, "--json"], { cwd: ids })).stdout.toString()) as { bytesOut: number; chunks: { planned: number } };
    const coordinator = link.map((l, i) => l - store[i]);
    const total = coordinator.reduce((a, b) => a + b, 0);
    const share = (100 * total) / size;
    say(`input: ${size} bytes (${mib(size)}) in s3://bach-big/events.tsv, ${report.chunks.planned} chunks of 32 MiB, read in ${seconds.toFixed(1)} s by ${HOSTS} workers`);
    for (let i = 0; i < HOSTS; i++) {
      say(`host-${i} (${h.address(i)}): ${link[i]} bytes over its link, ${store[i]} from the store, ${coordinator[i]} else (the coordinator's, at most)`);
    }
    say(`from the store: ${store.reduce((a, b) => a + b, 0)} bytes (${mib(store.reduce((a, b) => a + b, 0))}); the task's output: ${report.bytesOut} bytes (md5 ${md5(r.stdout)})`);
    say(`coordinator <-> workers: at most ${total} bytes (${mib(total)}), ${share.toFixed(3)}% of the input`);
    assert.ok(store.reduce((a, b) => a + b, 0) >= size, "the workers read every byte from the store");
    assert.ok(store.every((b) => b > 0), `every host read from the store: ${store.join(", ")}`);
    assert.ok(share < 1, `the coordinator moved at most ${total} bytes, ${share.toFixed(3)}% of the input: not under 1%`);
  } finally {
    await cluster?.stop();
    await proxy?.close();
    hosts?.remove();
    fs.rmSync(file, { force: true });
    if (uploaded) await remove(s3, "bach-big", "events.tsv");
  }
});

/** `count` short tab-separated records of several lengths. */
function records(seed: number, count: number): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`${seed}\t${i}\t${"abcdefgh".repeat((seed * 7 + i * 13) % 40)}`);
  return Buffer.from(`${lines.join("\n")}\n`);
}

/** The newest task's planned and committed chunks, read from the ledger while the coordinator runs. */
function progress(dataDir: string): { planned: number; commits: number } | null {
  const file = path.join(dataDir, "ledger.sqlite");
  if (!fs.existsSync(file)) return null;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT chunks_planned AS planned, commits FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { planned: number; commits: number } | undefined;
    return row ?? null;
  } finally {
    db.close();
  }
}

test("the coordinator SIGKILLed mid-task over s3:// input and restarted carries the task on: the same output, each chunk committed once", async (t) => {
  if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
  const objects = { "in/a.tsv": records(1, 6000), "in/b.tsv": records(2, 5000), "in/c.tsv": records(3, 7000) };
  await putObjects(s3, "bach-restart", objects);
  const whole = Buffer.concat(Object.values(objects));
  // The coordinator holds the credentials, before and after its restart (startCluster starts it again
  // with the same flags and environment); the workers and the CLI hold none.
  const cluster = await startCluster({ slots: 2, coordinatorArgs: ["--s3-endpoint", s3.endpoint], coordinatorEnv: { ...noCredentials, ...s3.env } });
  try {
    await cluster.addWorker({ env: noCredentials, args: ["--runtime", "process"] });
    await cluster.addWorker({ env: noCredentials, args: ["--runtime", "process"] });
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const slow = taskFolder({ "logical-name": "slow-cat", binary: "sh", args: ["-c", "sleep 0.2; cat"] });
    const run = runBach(["task-run", ...on, "--chunk-size", "16k", "--no-progress", "--reconnect", "60s", "--data", "s3://bach-restart/in/"], { cwd: slow, env: noCredentials });
    // The objects make 180 chunks: the kill lands after 20 (planning goes on as chunks are handed out).
    const at = await waitFor("20 chunks to commit", () => {
      const p = progress(cluster.dataDir);
      return p && p.commits >= 20 && p;
    });
    await cluster.restartCoordinator();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(whole), `the objects' records in key order, each once (${r.stdout.length} bytes, ${whole.length} expected)`);
    const report = JSON.parse((await runBach(["task-report", ...on, "--json"], { cwd: slow })).stdout.toString()) as {
      chunks: { planned: number; byState: Record<string, number> };
      timeline: { chunk: number; state: string }[];
    };
    const planned = report.chunks.planned;
    assert.ok(at.commits < planned, `the kill landed mid-task (${at.commits} of ${planned} chunks committed)`);
    assert.deepEqual(report.chunks.byState, { committed: planned }, "every chunk committed");
    const succeeded = new Map<number, number>();
    for (const a of report.timeline) if (a.state === "succeeded") succeeded.set(a.chunk, (succeeded.get(a.chunk) ?? 0) + 1);
    assert.equal(succeeded.size, planned, "every chunk has a succeeded attempt");
    assert.deepEqual([...succeeded].filter(([, n]) => n !== 1), [], "no chunk committed twice");
    assert.match(cluster.coordinator.stderr(), /carrying on a task the last run left open/);
    say(`killed at ${at.commits} of ${planned} chunks committed; the restarted coordinator carried the task on`);
  } finally {
    await cluster.stop();
  }
});
