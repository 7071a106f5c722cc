// A .zip archive as input: each member is an object of its own, named `ARCHIVE!/MEMBER` (as Java names
// a jar's entries), laid end to end in the archive's order. A member is a byte range of the archive:
// a stored member is split into chunks like any object, read in place; a deflated one is one chunk,
// read whole and inflated. Either way its CRC-32 is checked when it is read whole.
//
// yauzl reads the central directory (zip64 included) and each member's local header through ranged
// reads of the archive, wherever it lives: a file, an http(s) server that honours Range, an s3 object.
import { PassThrough, type Readable } from "node:stream";
import { crc32 } from "node:zlib";
import yauzl from "yauzl";
import { InputError } from "./errors";
import { RetryableReadError, type WindowOpener } from "./ranged-read";

/** How a member's bytes are stored in its archive (zip's compression methods 0 and 8). */
export type ZipCodec = "stored" | "deflate";

export interface ZipMember {
  /** `ARCHIVE!/MEMBER`, what BACH_OBJECT and messages say. */
  name: string;
  /** Where the member's bytes start in the archive. */
  offset: number;
  /** Its bytes in the archive (compressed, for a deflated member). */
  size: number;
  codec: ZipCodec;
  /** The CRC-32 of its uncompressed bytes. */
  crc32: number;
}

export function isZip(name: string): boolean {
  return /\.zip$/i.test(name.replace(/[?#].*$/s, ""));
}

/** The most entries an archive may have. */
export const MAX_MEMBERS = 1_000_000;

/** How many local headers are read at once (each one ranged read of the archive). */
const HEADERS_AT_ONCE = 16;

/**
 * The members of the archive `name` of `size` bytes, read through `open`, in the archive's order;
 * folders are left out. An archive that is not one, or holds a member Bach cannot read (encrypted, or
 * compressed by another method than deflate), is an InputError naming it.
 */
export async function zipMembers(name: string, size: number, open: WindowOpener, maxMembers = MAX_MEMBERS): Promise<ZipMember[]> {
  const fail = (why: string) => new InputError(`--data ${name}: ${why}`, { path: name });
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromRandomAccessReaderPromise(new RangeReader(open, size), size, { lazyEntries: true, autoClose: false });
  } catch (err) {
    throw err instanceof ArchiveReadError ? fail(`reading it: ${err.message}`) : fail(`not a zip archive that Bach can read (${(err as Error).message})`);
  }
  // A hostile archive's directory may claim millions of entries: the coordinator holds each as an object.
  if (zip.entryCount > maxMembers) throw fail(`${zip.entryCount} entries, more than the ${maxMembers} Bach reads from one archive`);
  const entries: yauzl.Entry[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on("entry", (entry: yauzl.Entry) => {
        entries.push(entry);
        zip.readEntry();
      });
      zip.once("end", resolve);
      zip.once("error", reject);
      zip.readEntry();
    });
  } catch (err) {
    throw err instanceof ArchiveReadError ? fail(`reading it: ${err.message}`) : fail(`a broken central directory (${(err as Error).message})`);
  }
  const files = entries.filter((e) => !e.fileName.endsWith("/"));
  for (const e of files) {
    if (e.isEncrypted()) throw fail(`member ${e.fileName} is encrypted, which Bach cannot read`);
    if (e.compressionMethod !== 0 && e.compressionMethod !== 8) {
      throw fail(`member ${e.fileName} is compressed by method ${e.compressionMethod}; Bach reads stored (0) and deflated (8) members`);
    }
  }
  const members: ZipMember[] = new Array(files.length);
  let next = 0;
  async function headers(): Promise<void> {
    while (next < files.length) {
      const i = next++;
      const e = files[i];
      let fileDataStart: number;
      try {
        ({ fileDataStart } = await zip.readLocalFileHeaderPromise(e, { minimal: true }));
      } catch (err) {
        throw err instanceof ArchiveReadError ? fail(`reading it: ${err.message}`) : fail(`member ${e.fileName}: a broken local header (${(err as Error).message})`);
      }
      if (fileDataStart + e.compressedSize > size) throw fail(`member ${e.fileName} runs past the archive's end`);
      members[i] = { name: `${name}!/${e.fileName}`, offset: fileDataStart, size: e.compressedSize, codec: e.compressionMethod === 0 ? "stored" : "deflate", crc32: e.crc32 };
    }
  }
  await Promise.all(Array.from({ length: Math.min(HEADERS_AT_ONCE, files.length) }, headers));
  return members;
}

/** Opens the bytes [from, to] of a member, given the archive's opener. */
export function memberOpener(archive: WindowOpener, offset: number): WindowOpener {
  return (from, to) => archive(offset + from, to === undefined ? undefined : offset + to);
}

/** The bytes pass through as they are; at their end their CRC-32 must be `expected`. */
export async function* checkCrc(source: AsyncIterable<Buffer>, expected: number, name: string, failure: (message: string) => Error): AsyncGenerator<Buffer> {
  let crc = 0;
  for await (const data of source) {
    crc = crc32(data, crc);
    yield data;
  }
  if (crc >>> 0 !== expected >>> 0) {
    throw failure(`${name}: its bytes do not match the archive's CRC-32 (${hex(crc)}, the archive says ${hex(expected)})`);
  }
}

const hex = (n: number) => (n >>> 0).toString(16).padStart(8, "0");

/**
 * yauzl's reads of the archive as ranged reads. The central directory is read a few bytes at a time,
 * in order: a read right after the last one gets a block twice as big (up to 1 MiB), so a directory
 * of 100,000 members takes a handful of requests, not 200,000. A read elsewhere (a local header) asks
 * for 4 KiB.
 */
class RangeReader extends yauzl.RandomAccessReader {
  private block: { start: number; data: Buffer } = { start: 0, data: Buffer.alloc(0) };
  private ahead = 4096;

  constructor(
    private readonly open: WindowOpener,
    private readonly size: number,
  ) {
    super();
  }

  override _readStreamForRange(start: number, end: number): Readable {
    const out = new PassThrough();
    this.bytes(start, end).then(
      (data) => out.end(data),
      (err: Error) => out.destroy(err),
    );
    return out;
  }

  private async bytes(start: number, end: number): Promise<Buffer> {
    // A broken or hostile archive, not a failed read.
    if (end > this.size) throw new Error(`it points to bytes ${start}-${end - 1}, past its end (${this.size} bytes)`);
    const b = this.block;
    if (start >= b.start && end <= b.start + b.data.length) return b.data.subarray(start - b.start, end - b.start);
    const sequential = start === b.start + b.data.length;
    this.ahead = sequential ? Math.min(this.ahead * 2, 1 << 20) : 4096;
    const to = Math.min(this.size, start + Math.max(end - start, this.ahead));
    const data = await this.fetchRange(start, to);
    if (data.length < end - start) throw new ArchiveReadError(`the read of bytes ${start}-${end - 1} ended at byte ${start + data.length}`);
    // Only sequential reads are worth keeping: concurrent header reads each ask for their own bytes.
    if (sequential || b.data.length === 0) this.block = { start, data };
    return data.subarray(0, end - start);
  }

  /** Bytes [start, to), tried again after a failure that may pass (a 503, a cut connection). */
  private async fetchRange(start: number, to: number): Promise<Buffer> {
    for (let tries = 1; ; tries++) {
      try {
        const chunks: Buffer[] = [];
        for await (const data of await this.open(start, to - 1)) chunks.push(data as Buffer);
        return Buffer.concat(chunks);
      } catch (err) {
        if (!(err instanceof RetryableReadError) || tries === 5) throw new ArchiveReadError((err as Error).message);
        await new Promise((resolve) => setTimeout(resolve, 100 * tries));
      }
    }
  }
}

/** The archive's bytes could not be read (as opposed to read and found not to be a zip archive). */
class ArchiveReadError extends Error {}
