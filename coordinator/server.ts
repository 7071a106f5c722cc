// The coordinator's gRPC adapter: thin handlers that check the token, decode, call the domain, encode.
// No scheduling or SQL lives here.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { Server, status, type Metadata, type ServerErrorResponse, type ServerWritableStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { BachError, InputError } from "../core/errors";
import { checkBachfileJson } from "../core/bachfile";
import { sameSecret } from "../core/secrets";
import { serverCredentials, type ServerTls } from "../core/tls";
import type { CoordinatorServer, WorkerMessage } from "../core/generated/bach";
import { CoordinatorWire, outputFrameOf } from "../core/wire";
import { channelOptions, FRAME_BYTES, statusFor, tokenOf } from "../core/rpc";
import type { Coordinator, WorkerSession } from "./coordinator";
import { taskList, taskReport, workerList } from "./report";
import { isRemoteSource } from "./input-sources";
import { filePieces } from "../core/file-pieces";

function refusal(metadata: Metadata, token: string): ServerErrorResponse | null {
  if (sameSecret(tokenOf(metadata), token)) return null;
  const details = tokenOf(metadata) ? "wrong token (give the coordinator's token: --token-file FILE, BACH_TOKEN_FILE or BACH_TOKEN)" : "a token is required (--token-file FILE, BACH_TOKEN_FILE or BACH_TOKEN)";
  return Object.assign(new Error(details), { code: status.UNAUTHENTICATED, details });
}

function failure(err: unknown): ServerErrorResponse {
  const s = statusFor(err);
  return Object.assign(new Error(s.details), s);
}

/** Any grpc-js handler: a call, and for unary and client-streaming calls an answer callback. */
type AnyHandler = (call: { metadata: Metadata; emit(event: "error", err: ServerErrorResponse): boolean }, cb?: (err: ServerErrorResponse | null) => void) => void;

/**
 * Every method, in one place: the token is checked before the handler runs, and nothing the handler
 * throws leaves it: the call fails with a status (logged when it is a bug, not a caller's mistake)
 * and the coordinator stays up.
 */
function guarded(handlers: CoordinatorServer, token: string, log: Logger): CoordinatorServer {
  const out: Record<string, AnyHandler> = {};
  for (const [name, handler] of Object.entries(handlers as unknown as Record<string, AnyHandler>)) {
    out[name] = (call, cb) => {
      const fail = (err: ServerErrorResponse) => (cb ? cb(err) : call.emit("error", err));
      const refused = refusal(call.metadata, token);
      if (refused) return fail(refused);
      try {
        handler(call, cb);
      } catch (err) {
        if (!(err instanceof BachError)) log.warn({ method: name, err: (err as Error).message }, "a call failed");
        fail(failure(err));
      }
    };
  }
  return out as unknown as CoordinatorServer;
}

export function coordinatorHandlers(c: Coordinator, token: string, log: Logger, dataPort: () => number): CoordinatorServer {
  return guarded(handlers(c, log, dataPort), token, log);
}

/** What a peer sends as an objects task's sources: a few thousand URLs at most, each a sane length. */
function checkSources(sources: string[]): string[] {
  if (sources.length === 0 || sources.length > 100_000) throw new InputError(`input sources: expected 1 to 100000 URLs, got ${sources.length}`, { field: "inputSources" });
  const bad = sources.find((s) => s.length > 8192 || !isRemoteSource(s));
  if (bad !== undefined) throw new InputError(`input sources: ${JSON.stringify(bad.slice(0, 80))} is not an s3:// or http(s):// URL`, { field: "inputSources" });
  return sources;
}

function handlers(c: Coordinator, log: Logger, dataPort: () => number): CoordinatorServer {
  // A server stream ends with an error status through emit("error"); destroy() would drop the status.

  /** Unary handlers share one shape: run, answer or fail (a handler may answer later, with a promise). */
  const unary =
    <Req, Res>(fn: (req: Req) => Res | Promise<Res>) =>
    (call: { request: Req }, cb: (e: ServerErrorResponse | null, r?: Res) => void) => {
      new Promise<Res>((resolve) => resolve(fn(call.request))).then(
        (r) => cb(null, r),
        (err: unknown) => {
          if (!(err instanceof BachError)) log.warn({ err: (err as Error).message }, "a call failed");
          cb(failure(err));
        },
      );
    };

  return {
    createTask: unary(async (req) => {
      const task = await c.createTask({
        // Checked whole before anything is stored: a partial bachfile never becomes a running task.
        bachfile: checkBachfileJson(req.bachfileJson),
        bundleHash: req.bundleHash,
        imageId: req.imageId,
        parallelism: req.parallelism,
        chunkSize: req.chunkSize > 0 ? req.chunkSize : null,
        // A path is read in place only for a CLI that proves it sees the same file.
        input:
          req.inputKind === "path" ? { kind: "path", path: req.inputPath, sample: req.inputSample } : req.inputKind === "objects" ? { kind: "objects", sources: checkSources(req.inputSources) } : { kind: "stream" },
        dataStreams: req.dataStreams,
      });
      return { taskId: task.id, inputKind: task.input, inputNote: task.why ?? "", dataPort: dataPort() };
    }),
    getInputStatus(call, cb) {
      c.inputStatus(call.request.taskId).then((s) => cb(null, { ...s, dataPort: dataPort() }), (err) => cb(failure(err)));
    },
    hasBundle: unary((req) => ({ present: c.spool.hasBundle(req.hash) })),
    hasImage: unary((req) => ({ present: c.spool.hasImage(req.id) })),
    report: unary((req) => ({ json: JSON.stringify(taskReport(c.ledger, req.taskId || null)) })),
    listTasks: unary(() => ({ json: JSON.stringify(taskList(c.ledger)) })),
    listWorkers: unary(() => ({ json: JSON.stringify(workerList(c.ledger, c.workers.seenAt())) })),
    cancelTask: unary((req) => {
      c.cancelTask(req.taskId);
      return {};
    }),

    putInput(call, cb) {
      let task = "";
      let offset = -1;
      const consume = async () => {
        for await (const frame of call) {
          const f = frame as { taskId: string; offset: number; data: Buffer; eof: boolean };
          if (offset < 0) {
            task = f.taskId;
            offset = f.offset;
          }
          await c.appendInput(task, offset, f.data);
          offset += f.data.length;
          if (f.eof) return c.endInput(task);
        }
        return offset;
      };
      consume().then(
        (n) => cb(null, { bytesReceived: n }),
        (err) => cb(failure(err)),
      );
    },

    streamOutput(call) {
      const { taskId, fromChunk, keepOrder, skipBytes, partial } = call.request;
      const send = async () => {
        for await (const ev of c.streamOutput(taskId, fromChunk, keepOrder, skipBytes, partial)) {
          if (call.cancelled) return;
          if (ev.kind === "data") {
            // Its bytes are reused for the next piece: wait until this message is serialized and sent.
            await written(call, { kind: { $case: "data", value: ev.data } });
            continue;
          }
          const ok = call.write(outputFrameOf(ev));
          if (!ok) await new Promise((resolve) => call.once("drain", resolve));
        }
        call.end();
      };
      send().catch((err) => call.emit("error", failure(err)));
    },

    putBundle(call, cb) {
      receiveBundle(c, call).then((hash) => cb(null, { hash }), (err) => cb(failure(err)));
    },

    putImage(call, cb) {
      receiveImage(c, call).then((id) => cb(null, { id }), (err) => cb(failure(err)));
    },

    fetchImage(call) {
      const { id } = call.request;
      if (!c.spool.hasImage(id)) return call.emit("error", failure(new InputError(`the coordinator has no image ${id}`)));
      const file = c.spool.image(id);
      sendFile(call, file, 0, fs.statSync(file).size, (data) => ({ id, data })).catch((err) => call.emit("error", failure(err)));
    },

    fetchBundle(call) {
      const { hash } = call.request;
      if (!c.spool.hasBundle(hash)) return call.emit("error", failure(new InputError(`the coordinator has no bundle ${hash}`)));
      const file = c.spool.bundle(hash);
      sendFile(call, file, 0, fs.statSync(file).size, (data) => ({ hash: call.request.hash, data })).catch((err) => call.emit("error", failure(err)));
    },

    fetchChunk(call) {
      // run = map chunk + 1 (0: the attempt's own chunk); see FetchChunkRequest.
      const run = call.request.run > 0 ? call.request.run - 1 : null;
      c.data.serve(call.request.attemptId, call.request.key, (src) => (src.read ? sendPieces(call, src.read(), (data) => ({ data })) : sendFile(call, src.path, src.offset, src.length, (data) => ({ data }))), run).catch((err) =>
        call.emit("error", failure(err)),
      );
    },

    putOutput(call, cb) {
      receiveOutput(c, call).then(() => cb(null, {}), (err) => cb(failure(err)));
    },

    work(call) {
      let session: WorkerSession | null = null;
      let ended = false;
      const gone = (reason: string, cleanly = false) => {
        try {
          if (session) c.workerGone(session, reason, cleanly);
        } catch (err) {
          log.error({ worker: session?.id, err: (err as Error).stack }, "ending a worker's session failed");
        }
      };
      const refuse = (reason: string) => {
        if (ended) return;
        ended = true;
        log.warn({ worker: session?.id, reason }, "refusing a worker stream");
        gone(reason);
        call.emit("error", failure(new InputError(reason)));
      };
      const onMessage = (msg: WorkerMessage) => {
        const kind = msg.kind;
        if (!kind) return;
        if (kind.$case === "hello") {
          if (session) return refuse("a worker says hello once per stream");
          session = c.workerJoined(kind.value, {
            welcome: (w) => call.write({ kind: { $case: "welcome", value: w } }),
            assign: (a) => call.write({ kind: { $case: "assign", value: { ...a, reduce: a.reduce } } }),
            cancel: (attemptId, reason) => call.write({ kind: { $case: "cancel", value: { attemptId, reason } } }),
            taskEnded: (taskId) => call.write({ kind: { $case: "taskEnded", value: { taskId } } }),
            close: (reason) => {
              log.warn({ worker: session?.id, reason }, "closing worker stream");
              ended = true;
              call.end();
            },
          });
          return;
        }
        if (!session) return refuse("a worker must say hello first");
        c.workers.seen(session);
        if (kind.$case === "heartbeat") c.heartbeat(session, kind.value.running, kind.value.fed);
        if (kind.$case === "result") c.attemptResult(session, kind.value);
        if (kind.$case === "sharedSpool") c.workerProbed(session, kind.value.ok);
        if (kind.$case === "draining") c.workers.draining(session, kind.value.graceMs);
      };
      call.on("data", (msg: WorkerMessage) => {
        // A message that makes the coordinator fail is a bug of ours or a hostile peer: it ends this
        // stream (and the worker's session), never the process.
        try {
          onMessage(msg);
        } catch (err) {
          if (err instanceof InputError) return refuse(err.message);
          log.error({ worker: session?.id, err: (err as Error).stack }, "a worker message failed");
          refuse(`the coordinator could not handle a ${msg.kind?.$case ?? "empty"} message: ${(err as Error).message}`);
        }
      });
      call.on("end", () => {
        // The worker closed its side itself: after draining, it left.
        gone("disconnected", true);
        if (!ended) call.end();
        ended = true;
      });
      call.on("error", (err) => gone(`stream error: ${err.message}`));
      call.on("cancelled", () => gone("connection cancelled"));
    },
  };
}

/**
 * Resolves once `message` has been sent (or the call was cancelled, when grpc-js drops the message
 * without calling back).
 */
function written<T>(call: ServerWritableStream<unknown, T>, message: T): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = () => resolve();
    call.once("cancelled", cancelled);
    call.write(message, (err?: Error | null) => {
      call.off("cancelled", cancelled);
      if (err) reject(err);
      else resolve();
    });
  });
}

/** Sends bytes read elsewhere (a worker's objects), each piece sent before the next is read. */
async function sendPieces<T>(call: ServerWritableStream<unknown, T>, pieces: AsyncIterable<Buffer>, frame: (data: Buffer) => T): Promise<void> {
  for await (const data of pieces) {
    if (call.cancelled) return;
    for (let at = 0; at < data.length; at += FRAME_BYTES) await written(call, frame(data.subarray(at, at + FRAME_BYTES)));
  }
  call.end();
}

/** Sends a file range in frames read into one buffer, each sent before the next is read. */
async function sendFile<T>(call: ServerWritableStream<unknown, T>, file: string, offset: number, length: number, frame: (data: Buffer) => T): Promise<void> {
  if (length > 0) {
    const buffer = Buffer.allocUnsafeSlow(Math.min(FRAME_BYTES, length));
    for await (const data of filePieces(file, offset, offset + length, FRAME_BYTES, buffer)) {
      if (call.cancelled) return;
      await written(call, frame(data));
    }
  }
  call.end();
}

/**
 * Stores a `docker save` tar under the image's digest. The tar's own bytes are not the digest (the
 * engine computes it from the image config), so the worker that loads it checks the digest instead.
 */
async function receiveImage(c: Coordinator, frames: AsyncIterable<{ id: string; data: Buffer }>): Promise<string> {
  let id = "";
  const part = path.join(c.spool.dir, "images", `upload-${randomBytes(6).toString("hex")}.part`);
  async function* data(): AsyncGenerator<Buffer> {
    for await (const f of frames) {
      id ||= f.id;
      yield f.data;
    }
  }
  try {
    await pipeline(data(), fs.createWriteStream(part));
    await fs.promises.rename(part, c.spool.image(id));
    return id;
  } finally {
    await fs.promises.rm(part, { force: true });
  }
}

async function receiveBundle(c: Coordinator, frames: AsyncIterable<{ hash: string; data: Buffer }>): Promise<string> {
  let expected = "";
  const hash = createHash("sha256");
  const part = path.join(c.spool.dir, "bundles", `upload-${randomBytes(6).toString("hex")}.part`);
  async function* data(): AsyncGenerator<Buffer> {
    for await (const f of frames) {
      expected ||= f.hash;
      hash.update(f.data);
      yield f.data;
    }
  }
  try {
    await pipeline(data(), fs.createWriteStream(part));
    const actual = hash.digest("hex");
    if (actual !== expected) throw new InputError(`bundle arrived damaged: hash ${actual.slice(0, 12)}, expected ${expected.slice(0, 12)}`);
    await fs.promises.rename(part, c.spool.bundle(actual));
    return actual;
  } finally {
    await fs.promises.rm(part, { force: true });
  }
}

async function receiveOutput(c: Coordinator, frames: AsyncIterable<{ attemptId: number; data: Buffer; key: string }>): Promise<void> {
  const iterator = frames[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  async function* pieces(): AsyncGenerator<Buffer> {
    yield first.value.data;
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) yield r.value.data;
  }
  await c.data.receiveOutput(first.value.attemptId, first.value.key, pieces());
}

export async function startServer(
  c: Coordinator,
  listen: string,
  token: string,
  log: Logger,
  dataPort: () => number = () => 0,
  secure: ServerTls | null = null,
): Promise<{ server: Server; port: number }> {
  const server = new Server(channelOptions);
  server.addService(CoordinatorWire, coordinatorHandlers(c, token, log, dataPort));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, serverCredentials(secure), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}
