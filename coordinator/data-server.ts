// The data stream: streamed input for a task over a plain TCP connection, the seed's "tcp connection
// for data streams". gRPC carries control; bytes through grpc-js and protobuf cost ~5x more CPU than a
// socket (measured here: 1 GiB in ~7 s against ~1.5 s), so a CLI uploads here when it can.
// Protocol: one JSON line {"token","task","offset"}, then the bytes until the client half-closes;
// the answer is one JSON line, {"ok":true,"bytes":N} or {"error":"..."}.
import net from "node:net";
import { PassThrough, type Readable } from "node:stream";
import { timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import { InputError } from "../core/errors";
import { frames } from "../core/frames";
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

async function serve(c: Coordinator, token: string, socket: net.Socket): Promise<number> {
  // Read through a PassThrough: iterating the socket itself would destroy it at the end of the input,
  // before the answer is written. pipe() keeps the backpressure.
  const input = new PassThrough();
  socket.pipe(input);
  const { header, rest } = await readHeader(input);
  if (typeof header.token !== "string" || !sameToken(header.token, token)) {
    throw new InputError(header.token ? "wrong token (give the coordinator's --token or BACH_TOKEN)" : "a token is required (--token or BACH_TOKEN)");
  }
  let offset = header.offset;
  for await (const frame of frames(rest)) {
    await c.appendInput(header.task, offset, frame);
    offset += frame.length;
  }
  return c.endInput(header.task);
}

export function startDataServer(c: Coordinator, host: string, port: number, token: string, log: Logger): Promise<net.Server> {
  // Half-open: the client ends its side when the input ends, then waits for our answer on ours.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", (err) => log.warn({ err: err.message }, "data stream broke"));
    serve(c, token, socket).then(
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
