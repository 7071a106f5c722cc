// The data port: bulk bytes (a task's streamed input and its output, a remote worker's chunks and
// outputs) over plain TCP connections, the seed's "tcp connection for data streams". gRPC carries
// control; bytes through grpc-js and protobuf cost ~5x more CPU than a socket (measured here: 1 GiB in
// ~7 s against ~1.5 s), so CLIs and workers use this when they can reach it.
// Input: one JSON line {"token","task","offset"}, then the bytes in blocks (a 4-byte big-endian length,
// then that many bytes) and an empty block for the end of the input; the answer is one JSON line,
// {"ok":true,"bytes":N} or {"error":"..."}. A connection that ends without the empty block broke off
// (its CLI died, or the network): the input has not ended, and a CLI may resume it.
// Output: one JSON line {"token","task","output":{"fromChunk","keepOrder","skipBytes","partial"}}, answered by
// the messages of core/output-wire until the task's end. A worker on another machine reads a running
// attempt's chunk the same way ({"token","chunk":ATTEMPT}: its bytes, then an end message; a reduce
// attempt adds "run":MAP_CHUNK for its range of that map chunk's run) and sends
// its output as input is sent ({"token","upload":ATTEMPT}, blocks, one answer line).
import net from "node:net";
import type { Logger } from "pino";
import { InputError } from "../core/errors";
import { sameSecret } from "../core/secrets";
import { gatherHead, readByCopy, ringReader, writePieces } from "../core/frames";
import { acceptTls, dataServerContext, type ServerTls } from "../core/tls";
import { FRAME_BYTES } from "../core/rpc";
import { filePieces } from "../core/file-pieces";
import { encodeEvent, encodeFailure, type OutputRequest } from "../core/output-wire";
import type { Coordinator } from "./coordinator";

const MAX_HEADER = 4096;
/**
 * A client sends its header line as it connects: one that has not within this long is not a Bach
 * client (or is stuck) and is closed, as is a refused one that goes on sending this long after.
 */
const HEADER_MS = 10_000;

export interface DataHeader {
  token: string;
  task: string;
  /** Input: where the bytes that follow start in the task's input. */
  offset: number;
  /** Present when the connection reads the task's output instead (see core/output-wire). */
  output?: OutputRequest;
  /** A worker reads this running attempt's chunk (as output-wire messages: its bytes, then an end). */
  chunk?: number;
  /** A worker sends this running attempt's output, in blocks as input is sent. */
  upload?: number;
  /** With `chunk` or `upload`: the attempt's key (Assign.key), which only its own worker was told. */
  key?: string;
  /** With `chunk`, for a reduce attempt: read its range of this map chunk's run instead. */
  run?: number;
}

/**
 * The accepted connection as a socket of our own that reads into the ring's buffers: Node takes
 * `onread` only when a socket is made, and a server makes its sockets itself, so the connection's
 * handle moves over (the server pauses new connections: nothing has been read yet). Reading a GiB
 * into fresh buffers instead, then copying them into frames, cost the coordinator ~1 CPU-s more
 * (allocation, garbage collection and the copy; measured on loopback here).
 */
function adopt(accepted: net.Socket, onread: net.OnReadOpts): net.Socket {
  const internal = accepted as net.Socket & { _handle: object | null };
  const handle = internal._handle;
  if (!handle) throw new Error("an accepted data connection has no handle to read from (an unexpected Node version?)");
  internal._handle = null;
  const own = new net.Socket({ handle, allowHalfOpen: true, onread } as net.SocketConstructorOpts);
  // With no handle left, this only marks the accepted socket closed, as the server's count expects.
  accepted.destroy();
  return own;
}

/**
 * Reads the header line off the front of the frames; returns it with the rest of the frame it ended
 * in (valid until the next frame is asked for).
 */
async function readHeader(frames: AsyncIterator<Buffer>): Promise<{ header: Record<string, unknown>; rest: Buffer }> {
  let head = Buffer.alloc(0);
  for (;;) {
    const next = await frames.next();
    if (next.done) throw new InputError("data stream ended before its header");
    const nl = next.value.indexOf(10);
    head = Buffer.concat([head, nl >= 0 ? next.value.subarray(0, nl) : next.value]);
    if (head.length > MAX_HEADER) throw new InputError("data stream header too long");
    if (nl >= 0) return { header: parseHeader(head.toString("utf8")), rest: next.value.subarray(nl + 1) };
  }
}

function parseHeader(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new InputError(`data stream header is not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new InputError("data stream header is not a JSON object");
  return value as Record<string, unknown>;
}

/**
 * The header's fields, each of the type its use needs (a peer that sends others gets an error line
 * naming the field, not a failure deep in the ledger): input and output name a task, input its offset.
 */
function checkHeader(h: Record<string, unknown>): DataHeader {
  const whole = (field: string): number => {
    const v = h[field];
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new InputError(`data stream header: ${field}: expected a whole number, got ${JSON.stringify(v)}`, { field });
    return v;
  };
  const text = (field: string): string => {
    const v = h[field];
    if (typeof v !== "string") throw new InputError(`data stream header: ${field}: expected a string, got ${JSON.stringify(v)}`, { field });
    return v;
  };
  const token = typeof h.token === "string" ? h.token : "";
  if (h.chunk !== undefined) return { token, task: "", offset: 0, chunk: whole("chunk"), key: h.key === undefined ? "" : text("key"), run: h.run === undefined ? undefined : whole("run") };
  if (h.upload !== undefined) return { token, task: "", offset: 0, upload: whole("upload"), key: h.key === undefined ? "" : text("key") };
  if (h.output === undefined) return { token, task: text("task"), offset: whole("offset") };
  const o = h.output;
  if (o === null || typeof o !== "object" || Array.isArray(o)) throw new InputError(`data stream header: output: expected an object, got ${JSON.stringify(o)}`, { field: "output" });
  const { fromChunk, keepOrder, skipBytes, partial = false } = o as Record<string, unknown>;
  if (typeof fromChunk !== "number" || typeof keepOrder !== "boolean" || typeof skipBytes !== "number" || typeof partial !== "boolean") {
    throw new InputError(`data stream header: output: expected {"fromChunk":N,"keepOrder":BOOL,"skipBytes":N,"partial":BOOL}, got ${JSON.stringify(o)}`, { field: "output" });
  }
  return { token, task: text("task"), offset: 0, output: { fromChunk, keepOrder, skipBytes, partial } };
}

/**
 * The bytes of the blocks that follow the header (`first`, then the frames), as subarrays of the
 * frames, each valid until the next is asked for; `ended` says whether the empty block came.
 */
function unblock(first: Buffer, frames: AsyncIterator<Buffer>): { data: AsyncGenerator<Buffer>; ended: () => boolean } {
  let ended = false;
  async function* data(): AsyncGenerator<Buffer> {
    /** Bytes left in the block being read; -1 while its 4-byte length is being read. */
    let left = -1;
    let length: Buffer = Buffer.alloc(0);
    for (let buf: Buffer | null = first; buf !== null; ) {
      while (buf.length > 0) {
        if (left < 0) {
          ({ head: length, rest: buf } = gatherHead(length, buf, 4));
          if (length.length < 4) break;
          left = length.readUInt32BE(0);
          length = Buffer.alloc(0);
          if (left === 0) {
            ended = true;
            return;
          }
        }
        const n = Math.min(left, buf.length);
        yield buf.subarray(0, n);
        left = n === left ? -1 : left - n;
        buf = buf.subarray(n);
      }
      const next = await frames.next();
      buf = next.done ? null : next.value;
    }
  }
  return { data: data(), ended: () => ended };
}

async function serveInput(c: Coordinator, header: DataHeader, rest: Buffer, frames: AsyncIterator<Buffer>, log: Logger): Promise<number> {
  let offset = header.offset;
  const blocks = unblock(rest, frames);
  // Each piece is spooled before the next is read, which is what frees the ring's buffers.
  for await (const piece of blocks.data) {
    await c.appendInput(header.task, offset, piece);
    offset += piece.length;
  }
  if (!blocks.ended()) {
    log.warn({ task: header.task, offset }, "the input stream broke off before its end; waiting for the CLI to resume it");
    return offset;
  }
  return c.endInput(header.task);
}

/** Streams the task's output; each message is written before the next event is asked for (its bytes are reused). */
async function serveOutput(c: Coordinator, task: string, req: OutputRequest, socket: net.Socket): Promise<void> {
  for await (const ev of c.streamOutput(task, req.fromChunk, req.keepOrder, req.skipBytes, req.partial === true)) {
    if (socket.destroyed) return;
    await writePieces(socket, encodeEvent(ev));
  }
  socket.end();
}

/** Sends a running attempt's chunk, from one buffer, each message written before the next is read. */
async function serveChunk(c: Coordinator, attempt: number, key: string, socket: net.Socket, run: number | null): Promise<void> {
  await c.data.serve(attempt, key, async (src) => {
    const buffer = Buffer.allocUnsafeSlow(Math.max(1, Math.min(FRAME_BYTES, src.length)));
    for await (const data of src.read ? src.read() : filePieces(src.path, src.offset, src.offset + src.length, FRAME_BYTES, buffer)) {
      if (socket.destroyed) return;
      await writePieces(socket, encodeEvent({ kind: "data", data }));
    }
  }, run);
  await writePieces(socket, encodeEvent({ kind: "end", state: "succeeded", error: "", tally: null }));
  socket.end();
}

/** Writes a running attempt's output where it commits from; an upload that breaks off fails. */
async function serveUpload(c: Coordinator, attempt: number, key: string, rest: Buffer, frames: AsyncIterator<Buffer>): Promise<number> {
  const blocks = unblock(rest, frames);
  const bytes = await c.data.receiveOutput(attempt, key, blocks.data);
  if (!blocks.ended()) throw new InputError(`the output of attempt ${attempt} broke off after ${bytes} bytes`);
  return bytes;
}

/** One connection: bytes in (input, an output upload) and an answer line, or bytes out (the output, a chunk) as messages; a refusal in the form its client reads. */
async function serve(c: Coordinator, token: string, socket: net.Socket, frames: AsyncIterator<Buffer>, log: Logger): Promise<void> {
  /** The client reads output-wire messages (output, a chunk), not an answer line. */
  let readsMessages = false;
  let refused = false;
  try {
    const late = setTimeout(() => socket.destroy(), HEADER_MS);
    const { header: raw, rest } = await readHeader(frames).finally(() => clearTimeout(late));
    readsMessages = raw.output !== undefined || raw.chunk !== undefined;
    if (!sameSecret(raw.token, token)) {
      refused = true;
      throw new InputError(raw.token ? "wrong token (give the coordinator's token: --token-file FILE, BACH_TOKEN_FILE or BACH_TOKEN)" : "a token is required (--token-file FILE, BACH_TOKEN_FILE or BACH_TOKEN)");
    }
    const header = checkHeader(raw);
    if (header.output) return await serveOutput(c, header.task, header.output, socket);
    const key = header.key ?? "";
    if (header.chunk !== undefined) return await serveChunk(c, header.chunk, key, socket, header.run ?? null);
    const bytes = header.upload !== undefined ? await serveUpload(c, header.upload, key, rest, frames) : await serveInput(c, header, rest, frames, log);
    socket.end(`${JSON.stringify({ ok: true, bytes })}\n`);
  } catch (err) {
    const message = (err as Error).message;
    if (!(err instanceof InputError)) log.warn({ err: message }, "data stream failed");
    socket.end(readsMessages ? encodeFailure({ error: message, refused }) : `${JSON.stringify({ error: message })}\n`);
    // What the client still sends is read and dropped, so the connection closes when it closes, or,
    // for a client that goes on and on, a while later.
    const enough = setTimeout(() => socket.destroy(), HEADER_MS);
    try {
      for await (const frame of { [Symbol.asyncIterator]: () => frames }) void frame;
    } finally {
      clearTimeout(enough);
    }
  }
}

export function startDataServer(c: Coordinator, host: string, port: number, token: string, log: Logger, secure: ServerTls | null = null): Promise<net.Server> {
  const context = dataServerContext(secure);
  // Half-open: the client ends its side when the input ends, then waits for our answer on ours.
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
    // Each frame is spooled before the next is asked for, and no data is passed on before the consumer
    // asks (flushAfterMs 0): a slow stream's records go on as they come. Over TLS the bytes are
    // decrypted into the TLS socket's buffers and copied into the ring's.
    const { socket, frames } = ringReader(
      (onread) => (context ? readByCopy(acceptTls(accepted, context, secure?.ca !== null), onread) : adopt(accepted, onread)),
      FRAME_BYTES,
      0,
    );
    socket.on("error", (err) => log.warn({ err: err.message }, "data stream broke"));
    serve(c, token, socket, frames, log).catch((err: Error) => log.debug({ err: err.message }, "data stream closed"));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
