// The client side of the coordinator's data port (coordinator/data-server): bytes sent in blocks with
// a one-line answer (a CLI's input, a worker's output), or messages read (a task's output to a CLI, a
// chunk to a worker). Both read into a ring of reused buffers and send from the caller's buffers
// without copying them. It never retries: the caller decides what a lost connection means.
import { CoordinatorUnreachableError, InputError } from "./errors";
import { readByCopy, ringReader, writePieces } from "./frames";
import { decodeEvents, type OutputFailure } from "./output-wire";
import type { OutputEvent } from "./report";
import { FRAME_BYTES } from "./rpc";
import { connectData, readyEvent, type ClientTls } from "./tls";

export interface DataPort {
  /** The coordinator's gRPC address (HOST:PORT): the data port is on its host. */
  address: string;
  port: number;
  token: string;
  /** TLS, when the coordinator speaks it (its gRPC port and data port alike). */
  tls?: ClientTls | null;
}

function hostOf(address: string): string {
  return address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
}

/**
 * Sends `header` and then `source`'s bytes in blocks (a 4-byte length, then the bytes; length 0 ends
 * them, so a stream that breaks off is never taken for the end); each piece is written before the
 * next is asked for. Resolves with the bytes the coordinator answered it took, or null when the port
 * cannot be reached.
 */
export function sendBlocks(to: DataPort, header: object, source: AsyncIterable<Buffer>): Promise<number | null> {
  const host = hostOf(to.address);
  return new Promise((resolve, reject) => {
    const socket = connectData(host, to.port, to.tls ?? null);
    let connected = false;
    let reply = "";
    socket.on(readyEvent(socket), () => {
      connected = true;
      // A source that fails (a corrupt input file) is that failure, not a broken connection.
      let sourceError: Error | null = null;
      (async () => {
        await writePieces(socket, [Buffer.from(`${JSON.stringify({ ...header, token: to.token })}\n`)]);
        const pieces = source[Symbol.asyncIterator]();
        for (;;) {
          const next = await pieces.next().catch((err: Error) => {
            sourceError = err;
            throw err;
          });
          if (next.done) break;
          const length = Buffer.allocUnsafe(4);
          length.writeUInt32BE(next.value.length);
          await writePieces(socket, [length, next.value]);
        }
        socket.end(Buffer.alloc(4));
      })().catch((err: Error) => {
        if (sourceError) reject(sourceError);
        socket.destroy(sourceError ? undefined : err);
      });
    });
    socket.on("data", (b: Buffer) => (reply += b.toString()));
    socket.on("error", (err) => (connected ? reject(new CoordinatorUnreachableError(`data stream to ${host}:${to.port} broke: ${err.message}`, to.address)) : resolve(null)));
    socket.on("close", () => {
      if (!connected) return;
      if (!reply.trim()) return reject(new CoordinatorUnreachableError(`the coordinator closed the data stream to ${host}:${to.port}`, to.address));
      const answer = JSON.parse(reply.trim().split("\n")[0] as string) as { ok?: boolean; bytes?: number; error?: string };
      if (answer.ok) resolve(answer.bytes ?? 0);
      else reject(new InputError(answer.error ?? "data stream refused"));
    });
  });
}

/**
 * Sends `header` and reads the messages that answer it (core/output-wire) into a ring of reused
 * buffers: a data event's bytes are valid until the next event is asked for. Null when the port
 * cannot be reached; a connection lost midway is a CoordinatorUnreachableError.
 */
export async function readEvents(to: DataPort, header: object): Promise<AsyncGenerator<OutputEvent> | null> {
  const host = hostOf(to.address);
  // Over TLS the decrypted bytes are copied into the ring (readByCopy): tls.connect's own `onread`
  // misplaced bytes at the ring's frame edges (output differing at MiB boundaries, seen on 256 MiB).
  const { socket, frames } = ringReader((onread) => (to.tls ? readByCopy(connectData(host, to.port, to.tls), onread) : connectData(host, to.port, null, onread)), FRAME_BYTES, 0);
  const connected = await new Promise<boolean>((resolve) => {
    socket.once(readyEvent(socket), () => resolve(true));
    socket.once("error", () => resolve(false));
  });
  if (!connected) {
    socket.destroy();
    return null;
  }
  socket.write(`${JSON.stringify({ ...header, token: to.token })}\n`);
  const failed = (f: OutputFailure) => (f.refused ? new CoordinatorUnreachableError(`coordinator ${to.address} refused us: ${f.error}`, to.address, true) : new InputError(f.error));
  const lost = (why: string) => new CoordinatorUnreachableError(`the data stream from ${host}:${to.port} broke off${why}`, to.address);
  return (async function* () {
    try {
      yield* decodeEvents(frames, failed, () => lost(""));
    } catch (err) {
      if (err instanceof CoordinatorUnreachableError || err instanceof InputError) throw err;
      throw lost(`: ${(err as Error).message}`);
    } finally {
      socket.destroy();
    }
  })();
}
