// Input made of objects that live where the workers can reach them (s3:// objects, http(s) URLs that
// honour Range). The coordinator lays the objects end to end, in the order the user named them, and
// plans chunks as byte ranges of that line; a chunk is then one or more pieces, each a range of one
// object. The worker reads each piece itself and aligns it to records (core/ranged-read.ts), so the
// coordinator is off the data path.
//
// A record never spans two objects (as Hadoop treats files): between two objects in one chunk the
// worker adds the delimiter when the first does not end with one, so a program that maps records
// independently gives the same output however the line is cut into chunks.
import fs from "node:fs";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { Cut } from "./chunker";
import { compressionOf, CorruptInputError, decompress } from "./decompress";
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

/**
 * Chunks over the line of objects, from chunk `from.index` at `from.offset` on: byte ranges of about
 * `sizeOf(index)`, free to span objects, except that an object read whole (compressed, or any object
 * under "input": "objects") is a chunk of its own. Empty objects get no chunk.
 */
export function* planObjectCuts(objects: readonly InputObject[], whole: (o: InputObject) => boolean, sizeOf: (index: number) => number, from: { index: number; offset: number }): Generator<Cut> {
  const total = objects.reduce((n, o) => n + o.size, 0);
  let { index, offset } = from;
  // Both walk forward once: a task of 100,000 objects is planned in one pass, not one per chunk.
  let at = objectAt(objects, offset);
  let nextWhole = at;
  while (offset < total) {
    while (objects[at].size === 0 || offset >= objects[at].base + objects[at].size) at++;
    const o = objects[at];
    if (whole(o)) {
      yield { index, offset: o.base, length: o.size };
      offset = o.base + o.size;
    } else {
      // Up to the chunk's size, but not into an object read whole.
      nextWhole = Math.max(nextWhole, at + 1);
      while (nextWhole < objects.length && (objects[nextWhole].size === 0 || !whole(objects[nextWhole]))) nextWhole++;
      const end = Math.min(offset + Math.max(1, sizeOf(index)), objects[nextWhole]?.base ?? total, total);
      yield { index, offset, length: end - offset };
      offset = end;
    }
    index++;
  }
}

/** The pieces of the line's range [offset, offset + length), in order. */
export function piecesOf(objects: readonly InputObject[], offset: number, length: number): ObjectPiece[] {
  const end = offset + length;
  const pieces: ObjectPiece[] = [];
  for (let i = objectAt(objects, offset); i < objects.length && objects[i].base < end; i++) {
    const o = objects[i];
    if (o.size === 0 || o.base + o.size <= offset) continue;
    pieces.push({ object: i, start: Math.max(offset, o.base) - o.base, end: Math.min(end, o.base + o.size) - o.base });
  }
  return pieces;
}

/** The first object that ends after `offset` (binary search over the bases, which only grow). */
function objectAt(objects: readonly InputObject[], offset: number): number {
  let lo = 0;
  let hi = objects.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (objects[mid].base + objects[mid].size <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
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
 * one is missing. A piece read whole (`whole`, or a compressed object) is its object's bytes as they
 * are, decompressed when its name says so. Fails with the piece's name and the reason (an object that
 * changed, a URL that expired) when a read cannot be finished; cut connections and 503s are retried
 * within the piece.
 */
export function piecesBytes(pieces: readonly PieceSource[], delimiterText: string, whole: boolean, onRetry?: (why: string) => void): AsyncGenerator<Buffer> {
  return joinRecords(
    pieces.map((p) => () => pieceBytes(p, Buffer.from(delimiterText, "utf8"), whole, onRetry)),
    Buffer.from(delimiterText, "utf8"),
  );
}

/**
 * The inputs' bytes in order, the delimiter added between two where the first does not end with one:
 * a record never spans two inputs (objects of a chunk, or files streamed through the CLI). Each input
 * is opened when its turn comes.
 */
export async function* joinRecords(inputs: Iterable<() => AsyncIterable<Buffer> | Promise<AsyncIterable<Buffer>>>, delimiter: Buffer): AsyncGenerator<Buffer> {
  // The last bytes given (copied: a source may reuse its buffers), to tell whether they end a record.
  let tail = Buffer.alloc(0);
  for (const open of inputs) {
    let first = true;
    for await (const data of await open()) {
      if (data.length === 0) continue;
      if (first && tail.length > 0 && !tail.equals(delimiter)) yield Buffer.from(delimiter);
      first = false;
      tail = Buffer.from(Buffer.concat([tail, data.subarray(-delimiter.length)]).subarray(-delimiter.length));
      yield data;
    }
  }
}

/** One piece's bytes: its records (read whole, and decompressed, when so), failures naming it. */
async function* pieceBytes(p: PieceSource, delimiter: Buffer, whole: boolean, onRetry?: (why: string) => void): AsyncGenerator<Buffer> {
  const compression = compressionOf(p.name);
  const raw = whole || compression !== null;
  const read = readAligned({
    open: windowed(p.url.startsWith("file:") ? openFileRange(p.url, p.etag) : openHttpRange(p.url, { etag: p.etag || undefined }), p.start, p.end, p.size),
    // Read whole, the range is the object, [0, size): the same bytes whatever the delimiter.
    start: raw ? 0 : p.start,
    end: raw ? p.size : p.end,
    size: p.size,
    delimiter: raw ? NEWLINE : delimiter,
    onRetry: (why, at) => onRetry?.(`${p.name} at byte ${at}: ${why}`),
  }) as AsyncIterable<Buffer>;
  try {
    yield* compression ? decompress(read, compression, p.name) : read;
  } catch (err) {
    if (err instanceof CorruptInputError) throw err;
    const Kind = err instanceof ObjectChangedError ? ObjectChangedError : Error;
    throw new Kind(`reading ${p.name} (bytes ${p.start}-${p.end}): ${(err as Error).message}`);
  }
}

const NEWLINE = Buffer.from("\n");

/** A file's version, as an ETag would be: its size and modification time. */
export function fileVersion(stat: fs.Stats): string {
  return `${stat.size}-${Math.round(stat.mtimeMs)}`;
}

/** Ranges of a file on this machine (an embedded run's input), refused when the file changed since planned. */
function openFileRange(url: string, version: string): WindowOpener {
  const file = fileURLToPath(url);
  return async (from, to) => {
    const stat = await fs.promises.stat(file);
    if (version && fileVersion(stat) !== version) throw new ObjectChangedError(`${file}: the file changed during the task (size and time ${fileVersion(stat)}, planned ${version})`);
    return fs.createReadStream(file, { start: from, end: to });
  };
}
