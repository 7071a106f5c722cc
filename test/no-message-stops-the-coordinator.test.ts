// No message stops the coordinator: for a bounded time (BACH_FUZZ_SECONDS, default 120) seeded random,
// truncated and mutated messages go to every gRPC method and to the data port, most with the token;
// afterwards the coordinator is still up, logged no bug, answered no call INTERNAL (hostile input is
// the caller's mistake, an InputError), a normal task gives output identical to its input, and the
// ledger passes SQLite's integrity check. The seed is printed (`fuzz seed: N`) and taken from
// BACH_FUZZ_SEED: it replays the same choices in the same order (the real ids they name, and what is
// drawn once the coordinator answers, depend on timing, so a replay may need a run or two);
// BACH_FUZZ_LOG=FILE keeps the coordinator's log and ledger. The focused tests before it are what the
// fuzz found.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomInt } from "node:crypto";
import Database from "better-sqlite3";
import { ChannelCredentials, Client, Metadata, status, type ClientReadableStream, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import { CoordinatorMessage, CoordinatorService, WorkerMessage } from "../core/generated/bach";
import { connect, TOKEN_HEADER } from "../core/rpc";
import type { CoordinatorClient } from "../core/generated/bach";
import { fileSample } from "../core/file-sample";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";
import { edgeInt, mutate, requestFrames, Rng, someAttempt, someTask, workerMessage, type Known } from "./hostile-messages";

const SECONDS = Number(process.env.BACH_FUZZ_SECONDS || 120);
const SEED = process.env.BACH_FUZZ_SEED !== undefined ? Number(process.env.BACH_FUZZ_SEED) >>> 0 : randomInt(2 ** 31);
/** At most this many calls and connections at once, and a pause between starts: the CI machine has 2 cores. */
const IN_FLIGHT = 6;
const PAUSE_MS = 4;

type MethodName = keyof typeof CoordinatorService;
const METHODS = Object.keys(CoordinatorService) as MethodName[];
/** Bytes go out and come back as they are: mutated encodings reach the server's decoder. */
const same = (b: Buffer): Buffer => b;

function ledger(c: Cluster): Database.Database {
  return new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true, fileMustExist: true });
}

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

function dataPortOf(c: Cluster): number {
  return Number(/"dataPort":(\d+)/.exec(c.coordinator.stderr())?.[1]);
}

/** What the ledger names right now, for messages that reach past the lookups. */
function refresh(c: Cluster, k: Known): void {
  const db = ledger(c);
  try {
    k.tasks = (db.prepare("SELECT id FROM tasks ORDER BY rowid DESC LIMIT 20").all() as { id: string }[]).map((t) => t.id);
    k.attempts = (db.prepare("SELECT id FROM attempts ORDER BY id DESC LIMIT 20").all() as { id: number }[]).map((a) => a.id);
    k.workers = (db.prepare("SELECT id FROM workers").all() as { id: string }[]).map((w) => w.id);
  } finally {
    db.close();
  }
}

/** Mostly the right token (the call reaches its handler), sometimes a wrong one or none. */
function metadata(r: Rng, token: string): Metadata {
  const md = new Metadata();
  const p = r.next();
  if (p < 0.88) md.set(TOKEN_HEADER, token);
  else if (p < 0.96) md.set(TOKEN_HEADER, r.pick(["", "wrong", token.slice(1), `${token} `]));
  return md;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Statuses that say the coordinator failed rather than refused (INTERNAL, UNKNOWN), by method and
 * details: hostile input must get a status that names the caller's mistake. grpc-js's own answer to
 * bytes that do not decode is one of these too; it never reaches a handler.
 */
type Failures = Map<string, number>;
const BUG_CODES = new Set([status.INTERNAL, status.UNKNOWN]);

function noteStatus(failures: Failures, method: string, s: { code: number; details: string } | null | undefined): void {
  if (!s || !BUG_CODES.has(s.code) || s.details.startsWith("Error deserializing request")) return;
  const key = `${method}: ${s.details.replace(/[0-9a-f]{12,}/g, "HEX").replace(/\d{3,}/g, "N").slice(0, 48)}`;
  // Whole, the first time: the ids and paths in it are what a replay starts from.
  if (!failures.has(key)) console.log(`fuzz: ${method} answered ${status[s.code]}: ${s.details}`);
  failures.set(key, (failures.get(key) ?? 0) + 1);
}

/** One gRPC call of `method` with seeded frames; resolves when the call is over, however it ended. */
async function fuzzCall(client: Client, method: MethodName, r: Rng, k: Known, token: string, failures: Failures): Promise<void> {
  const def = CoordinatorService[method];
  // About one call in three carries a damaged frame, however many frames it has.
  const whole = requestFrames(method, r, k);
  const frames = whole.map((f) => mutate(r, f, 0.3 / whole.length));
  const md = metadata(r, token);
  const options = { deadline: Date.now() + 500 + r.int(method === "work" ? 4000 : 2000) };
  if (!def.requestStream && !def.responseStream) {
    await new Promise<void>((resolve) =>
      client.makeUnaryRequest(def.path, same, same, frames[0] ?? Buffer.alloc(0), md, options, (err) => {
        noteStatus(failures, method, err);
        resolve();
      }),
    );
    return;
  }
  if (def.requestStream && !def.responseStream) {
    await new Promise<void>((resolve) => {
      const call = client.makeClientStreamRequest(def.path, same, same, md, options, (err) => {
        noteStatus(failures, method, err);
        resolve();
      });
      const stopAt = r.chance(0.2) ? r.int(frames.length + 1) : -1;
      frames.forEach((f, i) => {
        if (i === stopAt) call.cancel();
        else if (stopAt < 0 || i < stopAt) call.write(f);
      });
      if (stopAt < 0 && r.chance(0.9)) call.end();
    });
    return;
  }
  if (!def.requestStream) {
    await new Promise<void>((resolve) => {
      const call = client.makeServerStreamRequest(def.path, same, same, frames[0] ?? Buffer.alloc(0), md, options);
      call.on("data", () => undefined);
      call.on("error", () => undefined);
      call.on("status", (st: StatusObject) => {
        noteStatus(failures, method, st);
        resolve();
      });
      if (r.chance(0.3)) setTimeout(() => call.cancel(), r.int(300));
    });
    return;
  }
  await fuzzWorker(client, def.path, frames, r, k, md, options, failures);
}

/** The Work stream: frames spread over up to a second, later ones built from what came back (assignments and their keys). */
async function fuzzWorker(client: Client, method: string, frames: Buffer[], r: Rng, k: Known, md: Metadata, options: { deadline: number }, failures: Failures): Promise<void> {
  const call = client.makeBidiStreamRequest(method, same, same, md, options);
  let open = true;
  const done = new Promise<void>((resolve) =>
    call.on("status", (st: StatusObject) => {
      open = false;
      noteStatus(failures, "work", st);
      resolve();
    }),
  );
  call.on("error", () => undefined);
  call.on("data", (b: Buffer) => {
    const m = CoordinatorMessage.decode(b);
    if (m.kind?.$case !== "assign") return;
    const attempt = m.kind.value.attemptId;
    k.owned = [...k.owned.slice(-30), { attempt, key: m.kind.value.key }];
    k.assigned++;
    // Half the assignments get a result at once, as a real worker's would come: ok or not, any size.
    if (open && r.chance(0.5)) {
      const result = workerMessage(r, k);
      if (result.kind?.$case === "result") call.write(Buffer.from(WorkerMessage.encode({ kind: { $case: "result", value: { ...result.kind.value, attemptId: attempt } } }).finish()));
    }
  });
  for (const f of frames) {
    if (r.chance(0.3)) await sleep(r.int(200));
    call.write(f);
  }
  // Some built after the assignments came: heartbeats and results that name attempts it really holds.
  for (let n = r.int(4); n > 0; n--) {
    await sleep(r.int(300));
    call.write(mutate(r, Buffer.from(WorkerMessage.encode(workerMessage(r, k)).finish()), 0.1));
  }
  const how = r.int(3);
  if (how === 0) call.end();
  else if (how === 1) call.cancel();
  await done;
}

/** A JSON value of any type: what a header field holds when its sender got the type wrong. */
function anyValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 1 ? 6 : 8)) {
    case 0:
      return edgeInt(r);
    case 1:
      return r.text();
    case 2:
      return null;
    case 3:
      return r.chance(0.5);
    case 4:
      return r.pick([1.5, -0.0, 1e300, -1e300]);
    case 5:
      return "";
    case 6:
      return Array.from({ length: r.int(3) }, () => anyValue(r, depth + 1));
    default:
      return { fromChunk: anyValue(r, depth + 1), keepOrder: anyValue(r, depth + 1), skipBytes: anyValue(r, depth + 1) };
  }
}

/** A data port header line: mostly a JSON object with the right token, its fields of right or wrong types. */
function dataHeader(r: Rng, k: Known, token: string): Buffer {
  switch (r.int(10)) {
    case 0:
      return Buffer.from(`${r.text(60)}\n`);
    case 1:
      return Buffer.from(`${JSON.stringify(r.pick([null, 42, "text", [1, 2], true, []]))}\n`);
    case 2:
      // Longer than the coordinator reads before it gives up; sometimes with no newline at all.
      return Buffer.concat([Buffer.from(`{"token":${JSON.stringify(token)},"task":"`), Buffer.alloc(4000 + r.int(8000), 0x61), Buffer.from(r.chance(0.5) ? '"}\n' : "")]);
    case 3:
      return r.bytes(r.size(300));
    default: {
      const h: Record<string, unknown> = {};
      const p = r.next();
      if (p < 0.85) h.token = token;
      else if (p < 0.95) h.token = anyValue(r);
      h.task = r.chance(0.8) ? someTask(r, k) : anyValue(r);
      h.offset = r.chance(0.4) ? 0 : r.chance(0.5) ? edgeInt(r) : anyValue(r);
      const kind = r.int(4);
      const attempt = someAttempt(r, k);
      const own = k.owned.find((o) => o.attempt === attempt);
      if (kind === 1) h.output = r.chance(0.6) ? { fromChunk: r.chance(0.7) ? 0 : anyValue(r), keepOrder: r.chance(0.8) ? r.chance(0.5) : anyValue(r), skipBytes: r.chance(0.7) ? 0 : anyValue(r) } : anyValue(r);
      if (kind === 2) h.chunk = r.chance(0.8) ? attempt : anyValue(r);
      if (kind === 3) h.upload = r.chance(0.8) ? attempt : anyValue(r);
      if (kind >= 2) h.key = own && r.chance(0.7) ? own.key : anyValue(r);
      return Buffer.from(`${JSON.stringify(h)}\n`);
    }
  }
}

/** Blocks after the header: lengths that are true or lie, an end block or none, a length cut short. */
function dataBlocks(r: Rng): Buffer[] {
  const out: Buffer[] = [];
  for (let n = r.size(8); n > 0; n--) {
    const data = r.bytes(r.size(32 * 1024));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(r.chance(0.8) ? data.length : r.pick([data.length + 1 + r.int(100), 0xffffffff, r.int(2 ** 32)]));
    out.push(length, data);
  }
  const end = r.int(4);
  if (end < 2) out.push(Buffer.alloc(4));
  else if (end === 2) out.push(Buffer.alloc(1 + r.int(3)));
  return out;
}

/** One data port connection; it ends, hangs up midway, or is dropped after a while without an end. */
async function fuzzData(port: number, r: Rng, k: Known, token: string): Promise<void> {
  const pieces = [dataHeader(r, k, token), ...(r.chance(0.8) ? dataBlocks(r) : [])];
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.on("data", () => undefined);
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.on("error", () => undefined);
  const limit = setTimeout(() => socket.destroy(), 500 + r.int(2000));
  const hangUpAt = r.chance(0.2) ? r.int(pieces.length + 1) : -1;
  for (const [i, piece] of pieces.entries()) {
    if (socket.destroyed) break;
    if (i === hangUpAt) {
      socket.destroy();
      break;
    }
    // Some pieces split in two, with a pause between: the header or a length arriving in parts.
    if (r.chance(0.15) && piece.length > 1) {
      const at = 1 + r.int(piece.length - 1);
      socket.write(piece.subarray(0, at));
      await sleep(r.int(50));
      if (!socket.destroyed) socket.write(piece.subarray(at));
    } else {
      socket.write(piece);
    }
  }
  if (!socket.destroyed && hangUpAt < 0 && r.chance(0.85)) socket.end();
  await closed;
  clearTimeout(limit);
}

/**
 * Log records that say the coordinator hit a bug, not a caller's mistake: a crash's words, error
 * records, and the warnings its handlers log for an error that is not an InputError (a peer that went
 * away mid-write is the network, not a bug).
 */
function bugsIn(log: string): string[] {
  return log
    .split("\n")
    .filter((l) => /internal error|uncaught|unhandled|triggerUncaughtException|"level":[56]0|"msg":"(a call failed|data stream failed|a worker message failed)"/i.test(l))
    .filter((l) => !/"err":"(write EPIPE|read ECONNRESET|write ECONNRESET|This socket has been ended by the other party)/.test(l));
}

describe("no message stops the coordinator", () => {
  let c: Cluster;
  let client: CoordinatorClient;
  let task: string;
  /** A task that ran to its end: its bachfile and bundle are what valid-shaped messages name. */
  let warm: { id: string; bachfile: string; bundleHash: string };
  before(async () => {
    c = await startCluster({ workers: 1 });
    client = connect(c.address, c.token);
    task = taskFolder({ binary: "cat" });
    const run = await runBach(["task-run", "--data", lines(200), "--coordinator", c.address, "--token", c.token], { cwd: task });
    assert.equal(run.code, 0, run.stderr);
    const db = ledger(c);
    const row = db.prepare("SELECT id, bachfile, bundle_hash FROM tasks LIMIT 1").get() as { id: string; bachfile: string; bundle_hash: string };
    db.close();
    warm = { id: row.id, bachfile: row.bachfile, bundleHash: row.bundle_hash };
  });
  after(async () => {
    client.close();
    // For a replay: the coordinator's whole log and its ledger, to read what the seed's messages did.
    const keep = process.env.BACH_FUZZ_LOG;
    if (keep) {
      fs.writeFileSync(keep, c.coordinator.stderr());
      for (const suffix of ["", "-wal"]) fs.copyFileSync(path.join(c.dataDir, `ledger.sqlite${suffix}`), `${keep}.ledger.sqlite${suffix}`);
    }
    await c.stop();
  });

  test("a malformed or unknown bundle hash or image digest is refused as the caller's mistake, not failed as a bug", async () => {
    const missing = "0".repeat(64);
    assert.equal((await answer((cb) => client.hasBundle({ hash: "../../ledger.sqlite" }, cb))).code, status.INVALID_ARGUMENT);
    assert.equal((await answer((cb) => client.hasImage({ id: "sha256:../../x" }, cb))).code, status.INVALID_ARGUMENT);
    assert.deepEqual(await streamed(client.fetchBundle({ hash: missing })), { code: status.INVALID_ARGUMENT, details: `the coordinator has no bundle ${missing}` });
    assert.equal((await streamed(client.fetchBundle({ hash: "" }))).code, status.INVALID_ARGUMENT);
    assert.equal((await streamed(client.fetchImage({ id: "" }))).code, status.INVALID_ARGUMENT);
    const image = await answer((cb) => {
      const call = client.putImage(cb);
      call.write({ id: "sha256:../../x", data: Buffer.from("tar") });
      call.end();
    });
    assert.equal(image.code, status.INVALID_ARGUMENT, image.details);
    const bundle = await answer((cb) => {
      const call = client.putBundle(cb);
      call.write({ hash: missing, data: Buffer.from("not what the hash says") });
      call.end();
    });
    assert.equal(bundle.code, status.INVALID_ARGUMENT, bundle.details);
    assert.match(bundle.details, /bundle arrived damaged/);
    assert.doesNotMatch(c.coordinator.stderr(), /"msg":"a call failed"/);
  });

  test("an output request from a negative byte or chunk is refused, over gRPC and the data port", async () => {
    const skip = await streamed(client.streamOutput({ taskId: warm.id, fromChunk: 0, keepOrder: true, skipBytes: -5, partial: false }));
    assert.equal(skip.code, status.INVALID_ARGUMENT, skip.details);
    assert.match(skip.details, /skipBytes/);
    const chunk = await streamed(client.streamOutput({ taskId: warm.id, fromChunk: -1, keepOrder: true, skipBytes: 0, partial: false }));
    assert.equal(chunk.code, status.INVALID_ARGUMENT, chunk.details);
    const viaPort = await dataPortAnswer(c, `${JSON.stringify({ token: c.token, task: warm.id, output: { fromChunk: 0, keepOrder: true, skipBytes: -5 } })}\n`);
    assert.match(viaPort.toString("latin1"), /skipBytes/);
    assert.doesNotMatch(c.coordinator.stderr(), /"msg":"data stream failed"/);
  });

  test("a data port header that is not a JSON object of the right types gets one error line naming the fault", async () => {
    const cases: [string, RegExp][] = [
      ["not json\n", /not JSON/],
      ["null\n", /not a JSON object/],
      ["[1,2]\n", /not a JSON object/],
      [`${JSON.stringify({ token: c.token })}\n`, /task: expected a string/],
      [`${JSON.stringify({ token: c.token, task: { a: 1 }, offset: 0 })}\n`, /task: expected a string/],
      [`${JSON.stringify({ token: c.token, task: warm.id, offset: "12" })}\n`, /offset: expected a whole number/],
      [`${JSON.stringify({ token: c.token, task: warm.id, offset: 0, chunk: "x" })}\n`, /chunk: expected a whole number/],
      [`${JSON.stringify({ token: c.token, task: warm.id, offset: 0, upload: 1.5 })}\n`, /upload: expected a whole number/],
      [`${JSON.stringify({ token: c.token, task: warm.id, offset: 0, upload: 1, key: 7 })}\n`, /key: expected a string/],
      [`${JSON.stringify({ token: c.token, task: warm.id, offset: 0, output: "all" })}\n`, /output: expected an object/],
    ];
    for (const [header, expected] of cases) {
      const got = (await dataPortAnswer(c, header)).toString("latin1");
      assert.match(got, expected, `for ${header.trim()}`);
    }
    assert.doesNotMatch(c.coordinator.stderr(), /"msg":"data stream failed"/);
    assert.equal(c.coordinator.proc.exitCode, null);
  });

  test("a CreateTask naming a file the coordinator can open but not read takes streamed input instead of failing", async () => {
    const reply = await new Promise<{ err: ServiceError | null; inputKind: string; taskId: string }>((resolve) =>
      client.createTask(
        { bachfileJson: warm.bachfile, bundleHash: warm.bundleHash, imageId: "", parallelism: 0, chunkSize: 0, inputKind: "path", inputPath: "/proc/self/mem", dataStreams: 0, name: "unreadable", inputSample: "x", inputSources: [] },
        (err, r) => resolve({ err, inputKind: r?.inputKind ?? "", taskId: r?.taskId ?? "" }),
      ),
    );
    assert.equal(reply.err, null, reply.err?.details);
    assert.equal(reply.inputKind, "stream");
    await answer((cb) => client.cancelTask({ taskId: reply.taskId }, cb));
  });

  test("a CreateTask with a negative parallelism or data stream cap is refused, not stored as a task that never runs", async () => {
    const create = (parallelism: number, dataStreams: number) =>
      answer((cb) =>
        client.createTask({ bachfileJson: warm.bachfile, bundleHash: warm.bundleHash, imageId: "", parallelism, chunkSize: 0, inputKind: "stream", inputPath: "", dataStreams, name: "negative", inputSample: "", inputSources: [] }, cb),
      );
    const before = taskCount(c);
    const p = await create(-5, 0);
    assert.equal(p.code, status.INVALID_ARGUMENT, p.details);
    assert.match(p.details, /parallelism -5/);
    const d = await create(0, -1);
    assert.equal(d.code, status.INVALID_ARGUMENT, d.details);
    assert.match(d.details, /data streams -1/);
    assert.equal(taskCount(c), before, "nothing was stored");
  });

  test("a result that is not ok never commits its chunk, even when it names the kind ok", async () => {
    const file = lines(20_000);
    const created = await new Promise<{ taskId: string }>((resolve, reject) =>
      client.createTask(
        { bachfileJson: warm.bachfile, bundleHash: warm.bundleHash, imageId: "", parallelism: 0, chunkSize: 4096, inputKind: "path", inputPath: file, dataStreams: 0, name: "not-ok", inputSample: fileSample(file) ?? "", inputSources: [] },
        (err, r) => (err ? reject(err) : resolve(r)),
      ),
    );
    // A worker that shares the spool takes chunks at once (no probe), beside the real one.
    const stream = client.work();
    const assigned: number[] = [];
    stream.on("data", (m: CoordinatorMessage) => m.kind?.$case === "assign" && assigned.push(m.kind.value.attemptId));
    stream.on("error", () => undefined);
    stream.write({ kind: { $case: "hello", value: { name: "liar", host: "x", slots: 4, cpus: 8, memoryMb: 8192, localFiles: true, version: "0.1.0", interruptible: false, workerId: "", diskMb: 100_000, gpus: 0, docker: false } } });
    const [attempt] = await waitFor("an attempt for the lying worker", () => assigned.length > 0 && assigned);
    // No output was written for it: a commit would point the chunk at a file that does not exist.
    stream.write({ kind: { $case: "result", value: { attemptId: attempt, ok: false, kind: "ok", retryable: true, exitCode: 0, signal: "", reason: "", stderr: "", bytesIn: 10, bytesOut: 0, seconds: 0.1, partitionEnds: [], marks: [] } } });
    const state = await waitFor("the attempt to end", () => {
      const db = ledger(c);
      try {
        const a = db.prepare("SELECT state FROM attempts WHERE id=?").get(attempt) as { state: string };
        return a.state !== "running" && a.state;
      } finally {
        db.close();
      }
    });
    assert.equal(state, "failed");
    stream.end();
    await answer((cb) => client.cancelTask({ taskId: created.taskId }, cb));
  });

  test(`seeded random, truncated and mutated messages to every method and the data port (fuzz seed ${SEED}, ${SECONDS} s)`, async () => {
    console.log(`fuzz seed: ${SEED}`);
    const r = new Rng(SEED);
    const inputFile = lines(20_000);
    const k: Known = { tasks: [], attempts: [], workers: [], bundleHash: warm.bundleHash, bachfileJson: warm.bachfile, owned: [], assigned: 0, inputFile, inputSample: fileSample(inputFile) ?? "" };
    refresh(c, k);
    const raw = new Client(c.address, ChannelCredentials.createInsecure());
    const port = dataPortOf(c);
    const running = new Set<Promise<void>>();
    const surprises: string[] = [];
    const failures: Failures = new Map();
    const counts: Record<string, number> = {};
    const until = Date.now() + SECONDS * 1000;
    let refreshed = Date.now();
    while (Date.now() < until && c.coordinator.proc.exitCode === null) {
      if (Date.now() - refreshed > 1000) {
        refresh(c, k);
        refreshed = Date.now();
      }
      if (running.size >= IN_FLIGHT) {
        await Promise.race(running);
        continue;
      }
      const target = r.chance(0.3) ? "data port" : r.pick(METHODS);
      counts[target] = (counts[target] ?? 0) + 1;
      const one = (target === "data port" ? fuzzData(port, r, k, c.token) : fuzzCall(raw, target, r, k, c.token, failures)).catch((err: Error) => {
        surprises.push(`${target}: ${err.stack ?? err.message}`);
      });
      const tracked = one.finally(() => running.delete(tracked));
      running.add(tracked);
      await sleep(PAUSE_MS);
    }
    await Promise.all(running);
    raw.close();
    console.log(`fuzz sent: ${JSON.stringify(counts)}; its workers were given ${k.assigned} attempts`);
    assert.deepEqual(surprises, [], "the fuzz's own code failed");
    assert.deepEqual([...failures], [], `calls failed inside the coordinator instead of being refused (fuzz seed ${SEED})`);
    assert.equal(c.coordinator.proc.exitCode, null, `the coordinator exited (fuzz seed ${SEED}):\n${c.coordinator.stderr().slice(-4000)}`);
    assert.deepEqual(bugsIn(c.coordinator.stderr()), [], `the coordinator logged a bug (fuzz seed ${SEED})`);

    // The tasks the fuzz made may hold thousands of tiny chunks: cancelled (a normal call) so that the
    // check below does not wait behind them.
    for (const id of runningTasks(c)) await new Promise<void>((resolve) => client.cancelTask({ taskId: id }, () => resolve()));
    await waitFor("the real worker to be connected", () => connectedWorkerNamed(c, "worker-1"), 30_000);
    const input = lines(5000);
    const run = await runBach(["task-run", "--data", input, "--coordinator", c.address, "--token", c.token], { cwd: task, timeoutMs: 120_000 });
    assert.equal(run.code, 0, `fuzz seed ${SEED}: ${run.stderr}`);
    assert.ok(run.stdout.equals(fs.readFileSync(input)), `fuzz seed ${SEED}: the output differs from the input`);
    assert.equal(c.coordinator.proc.exitCode, null);
    const check = ledger(c);
    try {
      assert.deepEqual(check.pragma("integrity_check"), [{ integrity_check: "ok" }]);
    } finally {
      check.close();
    }
  });
});

/** The status a unary or client-streaming call ended with. */
function answer(start: (cb: (err: ServiceError | null) => void) => void): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => start((err) => resolve({ code: err?.code ?? status.OK, details: err?.details ?? "" })));
}

/** The status a server stream ended with, its messages read and dropped. */
function streamed(call: ClientReadableStream<unknown>): Promise<{ code: number; details: string }> {
  call.on("data", () => undefined);
  call.on("error", () => undefined);
  return new Promise((resolve) => call.on("status", (s: StatusObject) => resolve({ code: s.code, details: s.details })));
}

/** Sends `header` (and nothing more) to the data port; resolves with everything the coordinator answered. */
async function dataPortAnswer(c: Cluster, header: string): Promise<Buffer> {
  const socket = net.connect({ host: "127.0.0.1", port: dataPortOf(c) });
  const got: Buffer[] = [];
  socket.on("data", (b: Buffer) => got.push(b));
  const closed = new Promise<void>((resolve, reject) => {
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
  socket.end(header);
  await closed;
  return Buffer.concat(got);
}

function taskCount(c: Cluster): number {
  const db = ledger(c);
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM tasks").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

function runningTasks(c: Cluster): string[] {
  const db = ledger(c);
  try {
    return (db.prepare("SELECT id FROM tasks WHERE state='running'").all() as { id: string }[]).map((t) => t.id);
  } finally {
    db.close();
  }
}

function connectedWorkerNamed(c: Cluster, name: string): boolean {
  const db = ledger(c);
  try {
    return db.prepare("SELECT 1 FROM workers WHERE name=? AND state='connected'").get(name) !== undefined;
  } finally {
    db.close();
  }
}
