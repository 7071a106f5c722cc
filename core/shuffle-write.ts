// The shuffle's outputs: records gathered into big frames, either framed (a run file: length, key
// length, bytes) or plain (each record followed by the delimiter). Owns the run format's writing rules
// (when a record must carry its key, marks, partition ends); never reads, sorts or compares order.
import fs from "node:fs";
import { promisify } from "node:util";

/**
 * Run format: per record, u32 LE length of the record's bytes (no delimiter), u32 LE key length, then
 * the bytes; the key is the record's first `key length` bytes. SAME_KEY as key length says "the same
 * key as the previous record of this run". A record carries its key when it is the first of the run or
 * of a partition segment, at a mark, or when its key differs from the previous record's.
 */
export const SAME_KEY = 0xffffffff;
export const HEADER_BYTES = 8;

/** Frames written to files: few, big writes. */
export const WRITE_FRAME_BYTES = 4 * 1024 * 1024;

/**
 * Frame memory for writing about `bytes`: big frames only for big data. A 4 MiB frame (and its spare)
 * for every small sort or merge made V8 run a full GC every few allocations: measured, 35% of a test
 * of small sorts went to the garbage collector.
 */
export function frameBytesFor(bytes: number): number {
  return bytes >= WRITE_FRAME_BYTES ? WRITE_FRAME_BYTES : Math.max(4096, 2 ** Math.ceil(Math.log2(bytes + 1)));
}

/** What a writer is told about a record's key against the previous record's. */
export const KeyIs = {
  /** Known to differ (a sorted spill knows, from ranks). */
  different: 0,
  /** Known equal (a spill's equal ranks, a run's same-key flag). */
  same: 1,
  /** Not known: the writer compares with the previous key (a merge that changed source). */
  unknown: 2,
} as const;
export type KeyIs = (typeof KeyIs)[keyof typeof KeyIs];

/** Something records are put into, one frame at a time. While `full`, take() the frame and resume(). */
export interface RecordSink {
  readonly full: boolean;
  readonly capacity: number;
  /** The record buf[start, end), whose key is buf[start, start + keyLength), in partition `partition`. */
  put(buf: Buffer, start: number, end: number, keyLength: number, keyIs: KeyIs, partition: number): void;
  /** The frame gathered so far; valid until resume() (with a spare: until the next take()). */
  take(): Buffer;
  /** Starts a new frame with whatever did not fit in the last: in the last one's memory, or the spare's. */
  resume(): void;
  /** A second frame's memory: frames alternate, so one can be written out while the next fills. */
  useSpare(spare: Buffer): void;
}

/**
 * Frame mechanics shared by both sinks. A piece that does not fit waits, by reference, until resume():
 * the caller must not change the bytes it put until the sink is no longer full.
 */
abstract class Frames {
  protected used = 0;
  full = false;
  private pending: Array<{ buf: Buffer; start: number; end: number }> = [];

  readonly capacity: number;

  /** `frame`: the memory frames are gathered in, reused from frame to frame (and may be from sink to sink). */
  constructor(protected frame: Buffer) {
    this.capacity = frame.length;
  }

  private spare: Buffer | null = null;

  useSpare(spare: Buffer): void {
    if (spare.length !== this.capacity) throw new Error("shuffle: a spare frame must be as big as the frame");
    this.spare = spare;
  }

  take(): Buffer {
    const taken = this.frame.subarray(0, this.used);
    if (this.spare !== null) {
      const spare = this.spare;
      this.spare = this.frame;
      this.frame = spare;
    }
    return taken;
  }

  resume(): void {
    this.used = 0;
    this.full = false;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) this.append(p.buf, p.start, p.end);
  }

  /** The slow path: copies what fits; the rest waits for resume(). */
  protected append(buf: Buffer, start: number, end: number): void {
    if (this.pending.length > 0) {
      this.pending.push({ buf, start, end });
      return;
    }
    const n = Math.min(this.capacity - this.used, end - start);
    buf.copy(this.frame, this.used, start, start + n);
    this.used += n;
    if (n < end - start) this.pending.push({ buf, start: start + n, end });
    if (this.used === this.capacity) this.full = true;
  }
}

/** Copies src[start, end) to dst at `at`. A loop for short records: a native copy costs ~40 ns a call. */
export function copyBytes(src: Buffer, start: number, end: number, dst: Buffer, at: number): void {
  if (end - start > 24) src.copy(dst, at, start, end);
  else for (let i = start; i < end; i++) dst[at++] = src[i];
}

/** kept[0, length) equals buf[start, start + length): a JS loop, as keys are short and native calls dear. */
function sameAs(kept: Buffer, buf: Buffer, start: number, length: number): boolean {
  for (let j = 0; j < length; j++) if (kept[j] !== buf[start + j]) return false;
  return true;
}

/** Writes a u32 little-endian: a JS loop, cheaper than a native call for one header field. */
export function writeU32(buf: Buffer, at: number, value: number): void {
  buf[at] = value & 0xff;
  buf[at + 1] = (value >>> 8) & 0xff;
  buf[at + 2] = (value >>> 16) & 0xff;
  buf[at + 3] = value >>> 24;
}

export interface RunInfo {
  bytes: number;
  records: number;
  /** P end offsets (hash partitions), [] otherwise. */
  partitionEnds: number[];
  /** Record-start offsets that carry their key, for searching by key (key order only). */
  marks: number[];
}

/** Writes the run format, deciding which records carry their key. */
export class RunSink extends Frames implements RecordSink {
  private offset = 0;
  private records = 0;
  private partition = 0;
  private nextMark = 0;
  private readonly marks: number[] = [];
  private readonly partitionEnds: number[] = [];
  /** The previous record's key, kept only when a later caller may not know (KeyIs.unknown). */
  private lastKey = Buffer.allocUnsafe(64);
  private lastKeyLength = -1;
  private readonly header = Buffer.allocUnsafe(HEADER_BYTES);

  /** `partitions`: P for hash segments, null for one key-ordered run; `markEvery` 0 for no marks. */
  constructor(
    frame: Buffer,
    private readonly partitions: number | null,
    private readonly markEvery: number,
  ) {
    super(frame);
  }

  put(buf: Buffer, start: number, end: number, keyLength: number, keyIs: KeyIs, partition: number): void {
    const length = end - start;
    if (length >= SAME_KEY) throw new Error(`shuffle: a record of ${length} bytes is longer than a run can hold`);
    let explicit = this.records === 0;
    if (this.partitions !== null && partition !== this.partition) {
      if (partition < this.partition) throw new Error(`shuffle: partition ${partition} after partition ${this.partition} (records out of order)`);
      while (this.partition < partition) this.partitionEnds[this.partition++] = this.offset;
      explicit = true;
    }
    if (this.markEvery > 0 && this.offset >= this.nextMark) {
      this.marks.push(this.offset);
      this.nextMark = (Math.floor(this.offset / this.markEvery) + 1) * this.markEvery;
      explicit = true;
    }
    if (keyIs === KeyIs.different) {
      explicit = true;
      this.lastKeyLength = -1;
    } else if (keyIs === KeyIs.unknown) {
      const equal = this.lastKeyLength === keyLength && sameAs(this.lastKey, buf, start, keyLength);
      if (!equal) {
        explicit = true;
        this.keepKey(buf, start, keyLength);
      }
    }
    const keyField = explicit ? keyLength : SAME_KEY;
    this.offset += HEADER_BYTES + length;
    this.records++;
    if (this.used + HEADER_BYTES + length <= this.capacity && !this.full) {
      const f = this.frame;
      writeU32(f, this.used, length);
      writeU32(f, this.used + 4, keyField);
      copyBytes(buf, start, end, f, this.used + HEADER_BYTES);
      this.used += HEADER_BYTES + length;
      if (this.used === this.capacity) this.full = true;
      return;
    }
    writeU32(this.header, 0, length);
    writeU32(this.header, 4, keyField);
    this.append(this.header, 0, HEADER_BYTES);
    this.append(buf, start, end);
  }

  private keepKey(buf: Buffer, start: number, keyLength: number): void {
    if (keyLength > this.lastKey.length) this.lastKey = Buffer.allocUnsafe(Math.max(keyLength, 2 * this.lastKey.length));
    copyBytes(buf, start, start + keyLength, this.lastKey, 0);
    this.lastKeyLength = keyLength;
  }

  info(): RunInfo {
    if (this.partitions !== null) while (this.partitionEnds.length < this.partitions) this.partitionEnds.push(this.offset);
    return { bytes: this.offset, records: this.records, partitionEnds: this.partitionEnds, marks: this.marks };
  }
}

/** Writes each record followed by the delimiter: what sort(1) gives, and what a reduce program reads. */
export class PlainSink extends Frames implements RecordSink {
  bytes = 0;
  records = 0;

  constructor(
    frame: Buffer,
    private readonly delimiter: Buffer,
  ) {
    super(frame);
  }

  put(buf: Buffer, start: number, end: number): void {
    const d = this.delimiter;
    const n = end - start + d.length;
    this.bytes += n;
    this.records++;
    if (this.used + n <= this.capacity && !this.full) {
      copyBytes(buf, start, end, this.frame, this.used);
      this.used += end - start;
      if (d.length === 1) this.frame[this.used++] = d[0];
      else {
        copyBytes(d, 0, d.length, this.frame, this.used);
        this.used += d.length;
      }
      if (this.used === this.capacity) this.full = true;
      return;
    }
    this.append(buf, start, end);
    this.append(d, 0, d.length);
  }
}

/**
 * Creates `file` and lets `fill` put records into `sink`, awaiting `drain()` whenever the sink is full;
 * then writes the rest. A full frame is written on the thread pool while the next fills (in `spare`,
 * or a frame allocated here); the last, synchronously: a small file costs no trip to the thread pool
 * (tests of many small sorts spent 70% of their time waiting on such trips). On failure the file is
 * removed.
 */
export async function writeSinkFile(file: string, sink: RecordSink, fill: (drain: () => Promise<void>) => Promise<void>, spare?: Buffer): Promise<void> {
  const fd = fs.openSync(file, "w");
  let position = 0;
  let spareGiven = false;
  /** The write under way, settled to its failure (or null): held, never unhandled, until the next drain throws it. */
  let writing: Promise<unknown> = Promise.resolve(null);
  const settle = async () => {
    const failure = await writing;
    if (failure !== null) throw failure;
  };
  const drain = async () => {
    while (sink.full) {
      await settle();
      if (!spareGiven) sink.useSpare(spare ?? Buffer.allocUnsafe(sink.capacity));
      spareGiven = true;
      const frame = sink.take();
      writing = writeAllAsync(fd, frame, position).then(
        () => null,
        (e: unknown) => e,
      );
      position += frame.length;
      sink.resume();
    }
  };
  try {
    try {
      await fill(drain);
      await drain();
      await settle();
      const rest = sink.take();
      for (let at = 0; at < rest.length; ) at += fs.writeSync(fd, rest, at, rest.length - at, position + at);
      sink.resume();
    } finally {
      // No write may be under way when the file closes. After a failure of fill's own, that failure is
      // the one reported; a write's failure is reported by settle() on the way that succeeded.
      await writing;
      fs.closeSync(fd);
    }
  } catch (e) {
    fs.rmSync(file, { force: true });
    throw e;
  }
}

async function writeAllAsync(fd: number, bytes: Buffer, position: number): Promise<void> {
  for (let at = 0; at < bytes.length; ) {
    const { bytesWritten } = await writeAsync(fd, bytes, at, bytes.length - at, position + at);
    at += bytesWritten;
  }
}

const writeAsync = promisify(fs.write);
