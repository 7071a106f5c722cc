// A peer that holds the token but not an attempt cannot change what commits, and no message stops the
// coordinator: a second "worker" uploading or reporting another worker's attempt is refused, results
// for unknown attempts are refused, a hello that takes over a connected worker's id ends the old
// session's attempts (none stays running for ever), a partial bachfile is never stored, a second
// coordinator cannot open a data dir in use, and the token is not in the daemons' command lines.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { once } from "node:events";
import Database from "better-sqlite3";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { connect } from "../core/rpc";
import type { CoordinatorClient, CoordinatorMessage, WorkerMessage } from "../core/generated/bach";
import { bin, runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

function ledger(c: Cluster): Database.Database {
  return new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true, fileMustExist: true });
}

function runningAttempts(c: Cluster): { id: number; worker_id: string }[] {
  const db = ledger(c);
  try {
    return db.prepare("SELECT id, worker_id FROM attempts WHERE state='running'").all() as { id: number; worker_id: string }[];
  } finally {
    db.close();
  }
}

/** A raw worker stream: says hello (as `workerId` when given) and collects what the coordinator sends. */
async function rawWorker(client: CoordinatorClient, name: string, workerId = ""): Promise<{ stream: ClientDuplexStream<WorkerMessage, CoordinatorMessage>; got: CoordinatorMessage[]; ended: Promise<unknown> }> {
  const stream = client.work();
  const got: CoordinatorMessage[] = [];
  stream.on("data", (m: CoordinatorMessage) => got.push(m));
  const ended = new Promise((resolve) => {
    stream.on("error", resolve);
    stream.on("end", resolve);
  });
  stream.write({ kind: { $case: "hello", value: { name, host: "forger", slots: 1, cpus: 1, memoryMb: 1024, localFiles: false, version: "0.1.0", interruptible: false, workerId, diskMb: 1000, gpus: 0, docker: false } } });
  await waitFor("a welcome", () => got.some((m) => m.kind?.$case === "welcome"));
  return { stream, got, ended };
}

/** Sends bytes to the data port as an output upload of `attempt`; resolves with the answer line. */
async function uploadRaw(c: Cluster, port: number, header: object, data: Buffer): Promise<string> {
  const socket = net.connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  socket.end(Buffer.concat([Buffer.from(`${JSON.stringify({ token: c.token, ...header })}\n`), length, data, Buffer.alloc(4)]));
  let answer = "";
  socket.on("data", (b: Buffer) => (answer += b.toString()));
  await once(socket, "close");
  return answer;
}

function dataPortOf(c: Cluster): number {
  return Number(/"dataPort":(\d+)/.exec(c.coordinator.stderr())?.[1]);
}

describe("hostile peers", () => {
  let c: Cluster;
  let client: CoordinatorClient;
  before(async () => {
    c = await startCluster({ workers: 1 });
    client = connect(c.address, c.token);
  });
  after(async () => {
    client.close();
    await c.stop();
  });

  test("another connection holding the token can neither upload nor report a worker's attempt", async () => {
    const task = taskFolder({ binary: "sh", args: ["-c", "sleep 2; cat"] });
    const input = lines(1000);
    const run = runBach(["task-run", "--data", input, "--coordinator", c.address, "--token", c.token], { cwd: task });
    const [victim] = await waitFor("an attempt to run", () => runningAttempts(c).length > 0 && runningAttempts(c));
    const forger = await rawWorker(client, "forger");
    const forged = Buffer.from("FORGED\n");
    const noKey = await uploadRaw(c, dataPortOf(c), { upload: victim.id }, forged);
    assert.match(noKey, /wrong or missing attempt key/);
    const wrongKey = await uploadRaw(c, dataPortOf(c), { upload: victim.id, key: "0".repeat(64) }, forged);
    assert.match(wrongKey, /wrong or missing attempt key/);
    const grpcUpload = await new Promise<Error | null>((resolve) => {
      const call = client.putOutput((err) => resolve(err));
      call.write({ attemptId: victim.id, key: "", data: forged });
      call.end();
    });
    assert.match(String(grpcUpload?.message), /wrong or missing attempt key/);
    const result = (attemptId: number): WorkerMessage => ({
      kind: { $case: "result", value: { attemptId, ok: true, kind: "ok", retryable: true, exitCode: 0, signal: "", reason: "", stderr: "", bytesIn: 7, bytesOut: forged.length, seconds: 0.1, partitionEnds: [], marks: [] } },
    });
    forger.stream.write(result(victim.id));
    // An attempt the ledger never had: refused and logged, and the coordinator stays up.
    forger.stream.write(result(987654));
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"), "the real worker's output, not the forger's");
    await waitFor("the refusals in the log", () => c.coordinator.stderr().includes("no attempt 987654 in the ledger"));
    assert.match(c.coordinator.stderr(), new RegExp(`attempt ${victim.id} belongs to worker ${victim.worker_id}`));
    assert.equal(c.coordinator.proc.exitCode, null, "the coordinator is still running");
    const again = await runBach(["task-output", lastTask(c), "--coordinator", c.address, "--token", c.token], { cwd: task });
    assert.equal(again.stdout.toString(), fs.readFileSync(input, "utf8"));
    forger.stream.end();
  });

  test("a hello that takes a connected worker's id ends the old session's attempts; none stays running", async () => {
    const task = taskFolder({ binary: "sh", args: ["-c", "sleep 1; cat"] });
    const input = lines(500);
    const run = runBach(["task-run", "--data", input, "--coordinator", c.address, "--token", c.token], { cwd: task });
    const [victim] = await waitFor("an attempt to run", () => runningAttempts(c).length > 0 && runningAttempts(c));
    const impostor = await rawWorker(client, "impostor", victim.worker_id);
    await waitFor("the victim's attempt to end", () => !runningAttempts(c).some((a) => a.id === victim.id));
    impostor.stream.end();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
    await waitFor("no attempt left running", () => runningAttempts(c).length === 0);
  });

  test("a hello claiming impossible resources is refused naming the field", async () => {
    const w = client.work();
    const ended = new Promise((resolve) => w.on("error", resolve));
    w.write({ kind: { $case: "hello", value: { name: "greedy", host: "x", slots: 2 ** 31 - 1, cpus: 1, memoryMb: 1, localFiles: false, version: "", interruptible: false, workerId: "", diskMb: 0, gpus: 0, docker: false } } });
    assert.match(String(await ended), /hello: slots 2147483647: expected a whole number from 1 to 4096/);
    assert.equal(c.coordinator.proc.exitCode, null);
  });

  test("a second hello on one stream, and a message before hello, end that stream only", async () => {
    const w = await rawWorker(client, "twice");
    w.stream.write({ kind: { $case: "hello", value: { name: "twice", host: "x", slots: 1, cpus: 1, memoryMb: 1, localFiles: false, version: "", interruptible: false, workerId: "", diskMb: 0, gpus: 0, docker: false } } });
    assert.match(String(await w.ended), /hello once per stream/);
    const early = client.work();
    const ended = new Promise((resolve) => early.on("error", resolve));
    early.write({ kind: { $case: "result", value: { attemptId: 1, ok: true, kind: "ok", retryable: true, exitCode: 0, signal: "", reason: "", stderr: "", bytesIn: 0, bytesOut: 0, seconds: 0, partitionEnds: [], marks: [] } } });
    assert.match(String(await ended), /must say hello first/);
    assert.equal(c.coordinator.proc.exitCode, null);
  });

  test("a CreateTask with a partial bachfile is refused with its field and never stored", async () => {
    const bundle = Buffer.from("not even a tar");
    const hash = createHash("sha256").update(bundle).digest("hex");
    await new Promise<void>((resolve, reject) => {
      const call = client.putBundle((err) => (err ? reject(err) : resolve()));
      call.write({ hash, data: bundle });
      call.end();
    });
    const before = taskCount(c);
    const err = await new Promise<Error | null>((resolve) =>
      client.createTask(
        { bachfileJson: JSON.stringify({ binary: "cat" }), bundleHash: hash, imageId: "", parallelism: 0, chunkSize: 0, inputKind: "stream", inputPath: "", dataStreams: 0, name: "x", inputSample: "", inputSources: [] },
        (e) => resolve(e),
      ),
    );
    assert.match(String(err?.message), /bachfile_json: logicalName: is required/);
    assert.equal(taskCount(c), before, "nothing was stored");
    // And a restart on this data dir starts.
    await c.restartCoordinator();
    client.close();
    client = connect(c.address, c.token);
    await waitFor("the worker to rejoin", () => /worker joined/.test(c.coordinator.stderr()));
  });

  test("a second coordinator on a data dir in use is refused, naming the pid that holds it", async () => {
    const second = spawn(process.execPath, [bin.coordinator, "start", "--listen", "127.0.0.1:0", "--data-dir", c.dataDir, "--token", c.token], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    second.stderr.on("data", (b: Buffer) => (err += b.toString()));
    // One that starts (what happened before the lock) is stopped, and fails the test rather than hang it.
    const limit = setTimeout(() => second.kill("SIGKILL"), 15_000);
    const [code] = (await once(second, "exit")) as [number];
    clearTimeout(limit);
    assert.equal(code, 2, err);
    assert.match(err, new RegExp(`^bach-coordinator: data dir ${escape(c.dataDir)} is in use by another coordinator \\(pid ${c.coordinator.proc.pid}\\)`, "m"));
    assert.equal(c.coordinator.proc.exitCode, null);
  });

  test("the token is not in the daemons' command lines", () => {
    for (const pid of [c.coordinator.proc.pid, c.workers[0].proc.pid]) {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      assert.ok(!cmdline.includes(c.token), `pid ${pid} shows its token: ${cmdline}`);
    }
  });
});

function taskCount(c: Cluster): number {
  const db = ledger(c);
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM tasks").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

function lastTask(c: Cluster): string {
  const db = ledger(c);
  try {
    return (db.prepare("SELECT id FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT 1").get() as { id: string }).id;
  } finally {
    db.close();
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
