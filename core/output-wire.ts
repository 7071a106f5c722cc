// Bytes out of the coordinator's data port (plain TCP: a task's output to a CLI, a chunk to a worker),
// as messages: a type byte, a 4-byte big-endian length, and that many bytes: the bytes, or JSON for
// the other events. gRPC
// carried a GiB of output for ~5 CPU-s in the CLI and ~3 in the coordinator on the machines measured
// here (every HTTP/2 frame and message a fresh buffer); this carries it from a reused buffer into a
// ring of reused buffers. Both ends of the protocol live here; neither end's transport does.
import { gatherHead } from "./frames";
import type { OutputEvent } from "./report";

const DATA = 0x64; // "d"
const CHUNK_DONE = 0x63; // "c"
const PROGRESS = 0x70; // "p"
const END = 0x65; // "e"
const FAILURE = 0x78; // "x"
const GAP = 0x67; // "g"

/** What a reader asks for, after the data port's token and task. */
export interface OutputRequest {
  fromChunk: number;
  keepOrder: boolean;
  skipBytes: number;
  /** Once the task has ended, every committed chunk in input order, with a gap event for each run of the others. */
  partial?: boolean;
}

/** What ends a stream other than its end event: the coordinator said no, or could not go on. */
export interface OutputFailure {
  error: string;
  /** The token was wrong: asking again cannot help. */
  refused: boolean;
}

function head(type: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h[0] = type;
  h.writeUInt32BE(length, 1);
  return h;
}

function json(type: number, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value));
  return Buffer.concat([head(type, body.length), body]);
}

/** An event as the pieces to write: a data event's bytes are not copied. */
export function encodeEvent(ev: OutputEvent): Buffer[] {
  switch (ev.kind) {
    case "data":
      return [head(DATA, ev.data.length), ev.data];
    case "chunk-done":
      return [json(CHUNK_DONE, ev.seq)];
    case "progress":
      return [json(PROGRESS, ev)];
    case "gap":
      return [json(GAP, ev)];
    case "end":
      return [json(END, ev)];
  }
}

export function encodeFailure(f: OutputFailure): Buffer {
  return json(FAILURE, f);
}

/**
 * The events in `frames` (each frame valid until the next is asked for): a data event's bytes are a
 * view of a frame, valid only until the next event is asked for. A failure message ends them with
 * `failed`; frames that end before the end event end them with `lost`.
 */
export async function* decodeEvents(frames: AsyncIterator<Buffer>, failed: (f: OutputFailure) => Error, lost: () => Error): AsyncGenerator<OutputEvent> {
  /** The message being read: its type, the bytes of its payload still to come, and a JSON payload so far. */
  let type = -1;
  let left = 0;
  let header: Buffer = Buffer.alloc(0);
  let body: Buffer[] = [];
  for (;;) {
    const next = await frames.next();
    if (next.done) throw lost();
    let buf = next.value;
    while (buf.length > 0) {
      if (type < 0) {
        ({ head: header, rest: buf } = gatherHead(header, buf, 5));
        if (header.length < 5) break;
        type = header[0] as number;
        left = header.readUInt32BE(1);
        header = Buffer.alloc(0);
      }
      const n = Math.min(left, buf.length);
      const piece = buf.subarray(0, n);
      buf = buf.subarray(n);
      left -= n;
      if (type === DATA) {
        if (n > 0) yield { kind: "data", data: piece };
      } else {
        body.push(Buffer.from(piece));
      }
      if (left > 0) continue;
      if (type !== DATA) {
        const value: unknown = JSON.parse(Buffer.concat(body).toString("utf8"));
        body = [];
        if (type === CHUNK_DONE) yield { kind: "chunk-done", seq: value as number };
        else if (type === PROGRESS || type === GAP) yield value as OutputEvent;
        else if (type === END) {
          yield value as OutputEvent;
          return;
        } else if (type === FAILURE) throw failed(value as OutputFailure);
        else throw new Error(`output stream: unknown message type ${type}`);
      }
      type = -1;
    }
  }
}
