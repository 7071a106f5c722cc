// The data stream: streamed input for a task over a plain TCP connection, the seed's "tcp connection
// for data streams". gRPC carries control; bytes through grpc-js and protobuf cost ~5x more CPU than a
// socket (measured here: 1 GiB in ~7 s against ~1.5 s), so a CLI uploads here when it can.
// Protocol: one JSON line {"token","task","offset"}, then the bytes in blocks (a 4-byte big-endian
// length, then that many bytes) and an empty block for the end of the input; the answer is one JSON
// line, {"ok":true,"bytes":N} or {"error":"..."}. A connection that ends without the empty block broke
// off (its CLI died, or the network): the input has not ended, and a CLI may resume it.
import net from "node:net";
import { PassThrough, type Readable } from "node:stream";
import { timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import { InputError } from "../core/errors";
import { reusedFrames } from "../core/frames";
import type { Coordinator } from "./coordinator";

const MAX_HEADER = 4096;

export interface DataHeader {
  token: string;
  task: string;
  offset: number;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Splits the connection into its header line and the bytes after it. */
async function readHeader(input: Readable): Promise<{ header: DataHeader; rest: AsyncIterable<Buffer> }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  for (;;) {
    const next = await iterator.next();
    if (next.done) throw new InputError("data stream ended before its header");
    head = Buffer.concat([head, next.value]);
    const nl = head.indexOf(10);
    if (nl >= 0) {
      const header = JSON.parse(head.subarray(0, nl).toString("utf8")) as DataHeader;
      const first = head.subarray(nl + 1);
      const rest = (async function* () {
        if (first.length) yield first;
        for (let r = await iterator.next(); !r.done; r = await iterator.next()) yield r.value;
      })();
      return { header, rest };
    }
    if (head.length > MAX_HEADER) throw new InputError("data stream header too long");
  }
}

/** The bytes of the blocks, each piece saying whether its block ends with it; `ended` says whether the empty block came. */
function unblock(source: AsyncIterable<Buffer>): { data: AsyncGenerator<{ piece: Buffer; ends: boolean }>; ended: () => boolean } {
  let ended = false;
  async function* data(): AsyncGenerator<{ piece: Buffer; ends: boolean }> {
    let left = 0;
    let head = Buffer.alloc(0);
    for await (const received of source) {
      let buf = received;
      while (buf.length > 0) {
        if (left === 0) {
          const take = Math.min(4 - head.length, buf.length);
          head = Buffer.concat([head, buf.subarray(0, take)]);
          buf = buf.subarray(take);
          if (head.length < 4) break;
          left = head.readUInt32BE(0);
          head = Buffer.alloc(0);
          if (left === 0) {
            ended = true;
            return;
          }
          continue;
        }
        const n = Math.min(left, buf.length);
        yield { piece: buf.subarray(0, n), ends: n === left };
        left -= n;
        buf = buf.subarray(n);
      }
    }
  }
  return { data: data(), ended: () => ended };
}

async function serve(c: Coordinator, token: string, socket: net.Socket, log: Logger): Promise<number> {
  // Read through a PassThrough: iterating the socket itself would destroy it at the end of the input,
  // before the answer is written. pipe() keeps the backpressure.
  const input = new PassThrough();
  socket.pipe(input);
  const { header, rest } = await readHeader(input);
  if (typeof header.token !== "string" || !sameToken(header.token, token)) {
    throw new InputError(header.token ? "wrong token (give the coordinator's --token or BACH_TOKEN)" : "a token is required (--token or BACH_TOKEN)");
  }
  let offset = header.offset;
  const blocks = unblock(rest);
  // Each frame is spooled before the next is asked for, so one buffer serves them all.
  for await (const frame of reusedFrames(blocks.data)) {
    await c.appendInput(header.task, offset, frame);
    offset += frame.length;
  }
  if (!blocks.ended()) {
    log.warn({ task: header.task, offset }, "the input stream broke off before its end; waiting for the CLI to resume it");
    return offset;
  }
  return c.endInput(header.task);
}

export function startDataServer(c: Coordinator, host: string, port: number, token: string, log: Logger): Promise<net.Server> {
  // Half-open: the client ends its side when the input ends, then waits for our answer on ours.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", (err) => log.warn({ err: err.message }, "data stream broke"));
    serve(c, token, socket, log).then(
      (bytes) => socket.end(`${JSON.stringify({ ok: true, bytes })}\n`),
      (err: Error) => {
        if (!(err instanceof InputError)) log.warn({ err: err.message }, "data stream failed");
        socket.end(`${JSON.stringify({ error: err.message })}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
