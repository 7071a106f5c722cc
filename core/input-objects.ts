// Input made of objects that live where the workers can reach them (s3:// objects, http(s) URLs that
// honour Range). The coordinator lays the objects end to end, in the order the user named them, and
// plans chunks as byte ranges of that line; a chunk is then one or more pieces, each a range of one
// object. The worker reads each piece itself and aligns it to records (core/ranged-read.ts), so the
// coordinator is off the data path.
//
// A record never spans two objects (as Hadoop treats files): between two objects in one chunk the
// worker adds the delimiter when the first does not end with one, so a program that maps records
// independently gives the same output however the line is cut into chunks.
import { Readable } from "node:stream";
import { ObjectChangedError, openHttpRange, readAligned, RetryableReadError, type RangeOpener, type WindowOpener } from "./ranged-read";

/**
 * A piece's first request asks for its range and as much again (at least 1 KiB, at most 256 KiB) to
 * finish its last record; a record that runs on past that asks for windows twice as big each time. An
 * open-ended request would have the store send on into the socket's buffers until the reader hangs up,
 * up to megabytes a piece.
 */
const SLACK = [1024, 256 * 1024] as const;

/**
 * Opens an object from a byte on as bounded Range requests: the first up to `end` + SLACK, the next
 * ones only when the reader wants bytes past it. A window that ends short is a cut connection.
 */
export function windowed(open: WindowOpener, start: number, end: number, size: number): RangeOpener {
  const slack = Math.min(SLACK[1], Math.max(SLACK[0], end - start));
  return async (from) => {
    let at = from;
    let to = Math.min(size, Math.max(end, from) + slack);
    let window = slack;
    async function* windows(): AsyncGenerator<Buffer> {
      while (at < size) {
        for await (const data of await open(at, to - 1)) {
          at += (data as Buffer).length;
          yield data as Buffer;
        }
        if (at < to) throw new RetryableReadError(`the connection ended at byte ${at} of ${to}`);
        window *= 2;
        to = Math.min(size, at + window);
      }
    }
    return Readable.from(windows(), { objectMode: false, highWaterMark: 64 * 1024 });
  };
}

export interface InputObject {
  /** What the user named: s3://bucket/key, or a URL without its query string. */
  name: string;
  /** Where it is read: s3://bucket/key, or an http(s) URL. */
  url: string;
  size: number;
  /** The object's version as its store tells it: a read of another version fails. */
  etag: string;
  /** Where it starts on the line of all the task's objects. */
  base: number;
}

export interface ObjectPiece {
  object: number;
  start: number;
  end: number;
}

/** The pieces of the line's range [offset, offset + length), in order. */
export function piecesOf(objects: readonly InputObject[], offset: number, length: number): ObjectPiece[] {
  const end = offset + length;
  const pieces: ObjectPiece[] = [];
  for (let i = 0; i < objects.length; i++) {
    const o = objects[i];
    if (o.base + o.size <= offset || o.size === 0) continue;
    if (o.base >= end) break;
    pieces.push({ object: i, start: Math.max(offset, o.base) - o.base, end: Math.min(end, o.base + o.size) - o.base });
  }
  return pieces;
}

/** A piece as a worker gets it (the proto's Piece). */
export interface PieceSource {
  url: string;
  start: number;
  end: number;
  size: number;
  etag: string;
  name: string;
}

/**
 * A chunk's bytes: its pieces' aligned records in order, the delimiter added between objects where
 * one is missing. Fails with the piece's name and the reason (an object that changed, a URL that
 * expired) when a read cannot be finished; cut connections and 503s are retried within the piece.
 */
export async function* piecesBytes(pieces: readonly PieceSource[], delimiterText: string, onRetry?: (why: string) => void): AsyncGenerator<Buffer> {
  const delimiter = Buffer.from(delimiterText, "utf8");
  // The last bytes given, to tell whether the records so far ended with the delimiter.
  let tail = Buffer.alloc(0);
  let objectEnded = false;
  for (const p of pieces) {
    const aligned = readAligned({
      open: windowed(openHttpRange(p.url, { etag: p.etag || undefined }), p.start, p.end, p.size),
      start: p.start,
      end: p.end,
      size: p.size,
      delimiter,
      onRetry: (why, at) => onRetry?.(`${p.name} at byte ${at}: ${why}`),
    });
    let first = true;
    try {
      for await (const data of aligned as AsyncIterable<Buffer>) {
        if (data.length === 0) continue;
        if (first && objectEnded && tail.length > 0 && !endsWith(tail, delimiter)) yield Buffer.from(delimiter);
        first = false;
        yield data;
        tail = Buffer.from(Buffer.concat([tail, data.subarray(-delimiter.length)]).subarray(-delimiter.length));
      }
    } catch (err) {
      const Kind = err instanceof ObjectChangedError ? ObjectChangedError : Error;
      throw new Kind(`reading ${p.name} (bytes ${p.start}-${p.end}): ${(err as Error).message}`);
    }
    objectEnded = p.end >= p.size;
  }
}

function endsWith(tail: Buffer, delimiter: Buffer): boolean {
  return tail.length >= delimiter.length && tail.subarray(tail.length - delimiter.length).equals(delimiter);
}

/** The same bytes as a Readable (for the data port's fallback, which serves a chunk as a stream). */
export function piecesStream(pieces: readonly PieceSource[], delimiter: string): Readable {
  return Readable.from(piecesBytes(pieces, delimiter));
}
