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
import { fileURLToPath } from "node:url";
import type { Cut } from "./chunker";
import { compressionOf, CorruptInputError, decompress } from "./decompress";
import type { Piece } from "./generated/bach";
import { checkCrc, memberOpener, type ZipCodec } from "./zip";
import { openHttpFrames } from "./http-frames";
import { alignedBytes, ObjectChangedError, openHttpRange, readAligned, RetryableReadError, type ByteSource, type RangeOpener, type WindowOpener } from "./ranged-read";

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
    // The first window is opened here, so that its failure is the opener's: a 403 or a changed object
    // fails the read at once, where a failure while reading is a cut connection, read again.
    let current: ByteSource | null = at < size ? await open(at, to - 1) : null;
    let destroyed = false;
    // Unbuffered: each window's pieces pass on as they come, so reused frames stay valid until the next is asked for.
    async function* windows(): AsyncGenerator<Buffer> {
      while (at < size) {
        const source = current ?? (await open(at, to - 1));
        if (destroyed) return source.destroy();
        current = source;
        for await (const data of source) {
          at += data.length;
          yield data;
        }
        current = null;
        if (at < to) throw new RetryableReadError(`the connection ended at byte ${at} of ${to}`);
        window *= 2;
        to = Math.min(size, at + window);
      }
    }
    return {
      [Symbol.asyncIterator]: windows,
      destroy: () => {
        destroyed = true;
        current?.destroy();
      },
    };
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
  /** A member of a zip archive (core/zip.ts): `url` is the archive's, its bytes start at `offset`. */
  zip?: ZipPlace;
}

/** Where a zip member's bytes are in its archive, how they are stored, and their CRC-32. */
export interface ZipPlace {
  offset: number;
  codec: ZipCodec;
  crc32: number;
}

/** An object read whole, as one chunk: compressed (by its name, or deflated in a zip archive). */
export function readWhole(o: { name: string; zip?: ZipPlace }): boolean {
  return compressionOf(o.name) !== null || o.zip?.codec === "deflate";
}

export interface ObjectPiece {
  object: number;
  start: number;
  end: number;
}

/**
 * Chunks over the line of objects, from chunk `from.index` at `from.offset` on: byte ranges of about
 * `sizeOf(index)`, free to span objects, except that an object read whole (compressed, or any object
 * under "input": "objects", or a deflated zip member) is a chunk of its own. Empty objects get no chunk.
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

/** A piece as a worker gets it: the proto's Piece. */
export type PieceSource = Piece;

/** A zip member's place as a piece carries it (proto Piece's zip_ fields). */
export function zipToWire(zip: ZipPlace | undefined): Pick<Piece, "zipCodec" | "zipOffset" | "zipCrc32"> {
  return zip ? { zipCodec: zip.codec, zipOffset: zip.offset, zipCrc32: zip.crc32 } : { zipCodec: "", zipOffset: 0, zipCrc32: 0 };
}

/** Where a piece's zip member is, or undefined when it is not one; a codec this Bach does not know is refused. */
function zipOf(p: PieceSource): ZipPlace | undefined {
  if (p.zipCodec === "") return undefined;
  if (p.zipCodec !== "stored" && p.zipCodec !== "deflate") throw new Error(`${p.name}: a zip member stored as ${JSON.stringify(p.zipCodec)}, which this worker does not know`);
  return { codec: p.zipCodec, offset: p.zipOffset, crc32: p.zipCrc32 };
}

/**
 * The pieces a worker reads for the line's range [offset, offset + length), read from `urlOf(i)` (a
 * presigned URL) or the object's own URL. When the objects are records, a piece of an object other
 * than the task's last ends with the delimiter, added when its bytes lack it, as they would were the
 * objects one input. Only the piece that gives the object's last record can lack it: an aligned read
 * that stops before its object's end stops where a record starts, just after a delimiter. That piece
 * need not be the one that reaches the object's end (its last record may start in an earlier chunk).
 */
export function chunkPieces(objects: readonly InputObject[], offset: number, length: number, opts: { records: boolean; urlOf?: (i: number) => string | null }): PieceSource[] {
  return piecesOf(objects, offset, length).map((p) => {
    const o = objects[p.object];
    const delimitEnd = opts.records && p.object < objects.length - 1;
    return { url: opts.urlOf?.(p.object) ?? o.url, start: p.start, end: p.end, size: o.size, etag: o.etag, name: o.name, ...zipToWire(o.zip), delimitEnd };
  });
}

/**
 * A chunk's bytes: its pieces' aligned records in order, the delimiter added between objects where
 * one is missing. A piece read whole (`whole`, or a compressed object) is its object's bytes as they
 * are, decompressed when its name says so. Fails with the piece's name and the reason (an object that
 * changed, a URL that expired) when a read cannot be finished; cut connections and 503s are retried
 * within the piece.
 */
export function piecesBytes(pieces: readonly PieceSource[], delimiterText: string, whole: boolean, onRetry?: (why: string) => void): AsyncGenerator<Buffer> {
  const delimiter = Buffer.from(delimiterText, "utf8");
  return joinRecords(
    pieces.map((p) => () => pieceBytes(p, delimiter, whole, onRetry)),
    delimiter,
    pieces.at(-1)?.delimitEnd === true,
  );
}

/** A program's input as it is written: a buffer, or a group of them written with one writev. */
export type Frame = Buffer | readonly Buffer[];

/**
 * Bytes read from a store arrive in pieces of 16-64 KiB; written to a program's stdin one at a time,
 * each write a round trip, feeding 1 GiB cost the embedded CLI's one thread 2.3 CPU-s. Gathered into
 * groups of 1 MiB, each written with one writev (no copy into one buffer), it costs far less.
 */
const FEED_BYTES = 1024 * 1024;

/**
 * The same bytes as piecesBytes, for a reader that writes each frame before it asks for the next (a
 * program's stdin): each frame is valid only until then. A plain range over http comes as frames of
 * reused buffers (core/http-frames.ts); other pieces come in groups of about FEED_BYTES.
 */
export function piecesFrames(pieces: readonly PieceSource[], delimiterText: string, whole: boolean, onRetry?: (why: string) => void): AsyncGenerator<Frame> {
  const delimiter = Buffer.from(delimiterText, "utf8");
  return joinRecords<Frame>(
    pieces.map((p) => (): AsyncIterable<Frame> => (framed(p) ? pieceBytes(p, delimiter, whole, onRetry, true) : grouped(pieceBytes(p, delimiter, whole, onRetry), FEED_BYTES))),
    delimiter,
    pieces.at(-1)?.delimitEnd === true,
  );
}

/**
 * A piece read as reused frames over kept-alive connections: plain http, neither a zip member nor
 * compressed (nothing between the socket and the program holds a buffer).
 */
function framed(p: PieceSource): boolean {
  return p.url.startsWith("http:") && p.zipCodec === "" && compressionOf(p.name) === null;
}

async function* grouped(source: AsyncIterable<Buffer>, bytes: number): AsyncGenerator<Buffer[]> {
  let held: Buffer[] = [];
  let size = 0;
  for await (const data of source) {
    held.push(data);
    size += data.length;
    if (size >= bytes) {
      yield held;
      held = [];
      size = 0;
    }
  }
  if (size > 0) yield held;
}

/**
 * The inputs' bytes in order, each but the last followed by the delimiter when it gave bytes that do
 * not end with one: a record never spans two inputs (objects of a chunk, or files streamed through
 * the CLI). With `delimitEnd` the last is delimited too: the chunk ends an input that is not the
 * task's last. Each input is opened when its turn comes; what it gives passes on as it is.
 */
export async function* joinRecords<F extends Frame>(inputs: Iterable<() => AsyncIterable<F> | Promise<AsyncIterable<F>>>, delimiter: Buffer, delimitEnd = false): AsyncGenerator<F | Buffer> {
  const list = [...inputs];
  for (const [i, open] of list.entries()) {
    // The input's last bytes (copied: a source may reuse its buffers), to tell whether they end a record.
    let tail = Buffer.alloc(0);
    for await (const frame of await open()) {
      for (const data of Buffer.isBuffer(frame) ? [frame] : (frame as readonly Buffer[])) {
        if (data.length > 0) tail = Buffer.from(Buffer.concat([tail, data.subarray(-delimiter.length)]).subarray(-delimiter.length));
      }
      yield frame;
    }
    if (tail.length > 0 && !tail.equals(delimiter) && (i < list.length - 1 || delimitEnd)) yield Buffer.from(delimiter);
  }
}

/** One piece's bytes: its records (read whole, and decompressed, when so), failures naming it; as reused frames when `frames`. */
async function* pieceBytes(p: PieceSource, delimiter: Buffer, whole: boolean, onRetry?: (why: string) => void, frames = false): AsyncGenerator<Buffer> {
  const compression = compressionOf(p.name);
  const zip = zipOf(p);
  const raw = whole || readWhole({ name: p.name, zip });
  const archive = p.url.startsWith("file:") ? openFileRange(p.url, p.etag) : (frames ? openHttpFrames : openHttpRange)(p.url, { etag: p.etag || undefined });
  const aligned = {
    open: windowed(zip ? memberOpener(archive, zip.offset) : archive, p.start, p.end, p.size),
    // Read whole, the range is the object, [0, size): the same bytes whatever the delimiter.
    start: raw ? 0 : p.start,
    end: raw ? p.size : p.end,
    size: p.size,
    delimiter: raw ? NEWLINE : delimiter,
    onRetry: (why: string, at: number) => onRetry?.(`${p.name} at byte ${at}: ${why}`),
  };
  const read: AsyncIterable<Buffer> = frames ? alignedBytes(aligned) : (readAligned(aligned) as AsyncIterable<Buffer>);
  try {
    let bytes: AsyncIterable<Buffer> = read;
    // A zip member: inflated when deflated, and checked against its CRC-32 when read whole.
    if (zip?.codec === "deflate") bytes = decompress(bytes, "deflate", p.name);
    if (zip && raw) bytes = checkCrc(bytes, zip.crc32, p.name, (message) => new CorruptInputError(message));
    yield* compression ? decompress(bytes, compression, p.name) : bytes;
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
export function openFileRange(url: string, version: string): WindowOpener {
  const file = fileURLToPath(url);
  return async (from, to) => {
    const stat = await fs.promises.stat(file);
    if (version && fileVersion(stat) !== version) throw new ObjectChangedError(`${file}: the file changed during the task (size and time ${fileVersion(stat)}, planned ${version})`);
    return fs.createReadStream(file, { start: from, end: to });
  };
}
