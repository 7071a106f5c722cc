// Reading a run (format in shuffle-write.ts) from frames of any size, one record at a time, checking
// every length against the data it has: a malformed run throws MalformedRunError, never a RangeError,
// and never waits for bytes a lying length promises (the buffer grows only with bytes that arrived).
import { fnv1a, keyPrefix } from "./shuffle-keys";
import { HEADER_BYTES, SAME_KEY } from "./shuffle-write";

export class MalformedRunError extends Error {
  constructor(
    readonly problem: string,
    /** Byte offset of the record at fault, in the run file (or from the start of the source). */
    readonly offset: number,
    readonly source: string,
  ) {
    super(`malformed run: ${problem} at byte ${offset} of ${source}`);
    this.name = "MalformedRunError";
  }
}

const EMPTY = Buffer.alloc(0);
/** A buffer that grew for one long record is given back once it is this many times what it holds. */
const SHRINK_RATIO = 4;
const SHRINK_ABOVE = 4 * 1024 * 1024;

export function readU32(buf: Buffer, at: number): number {
  return (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16)) + buf[at + 3] * 0x1000000;
}

/**
 * One run's records in order. The current record is buf[start, stop) and its key is
 * key[keyStart, keyEnd) (the same bytes as the record's first keyLength, but kept when the record that
 * carried them has been moved out of the buffer). step() takes the next record from bytes at hand;
 * when it cannot, load() reads frames until it can or the run ends (`done`).
 */
export class RunReader {
  buf: Buffer = EMPTY;
  /** Next unread byte, and end of the bytes at hand, in buf. */
  private pos = 0;
  private end = 0;
  /** Run offset of buf[0]. */
  private base: number;
  start = 0;
  stop = 0;
  /** Run offset of the current record's header. */
  offset = 0;
  /** The current record's key length; `same` when it came as the same-key flag. */
  keyLength = 0;
  same = false;
  key: Buffer = EMPTY;
  keyStart = 0;
  keyEnd = 0;
  /** keyPrefix of the key, and its hash partition when the reader was given partitions. */
  prefix = 0;
  partition = 0;
  done = false;
  private first = true;
  private saved = Buffer.allocUnsafe(64);

  constructor(
    private readonly frames: AsyncIterator<Buffer>,
    /** Names the run in errors: a file, or "source 3". */
    readonly source: string,
    private readonly partitions: number | null = null,
    /** Run offset of the first byte the frames give (a range of a run file). */
    startOffset = 0,
  ) {
    this.base = startOffset;
  }

  /** Takes the next record if its bytes are at hand; false when load() must read more (or the run is done). */
  step(): boolean {
    const buf = this.buf;
    const at = this.pos;
    if (this.end - at < HEADER_BYTES) return false;
    const length = readU32(buf, at);
    const keyLength = readU32(buf, at + 4);
    if (keyLength === SAME_KEY) {
      if (this.first) throw new MalformedRunError("the first record has no key of its own", this.base + at, this.source);
    } else if (keyLength > length) {
      throw new MalformedRunError(`a key of ${keyLength} bytes in a record of ${length}`, this.base + at, this.source);
    }
    if (this.end - at - HEADER_BYTES < length) return false;
    this.first = false;
    this.offset = this.base + at;
    this.start = at + HEADER_BYTES;
    this.stop = this.start + length;
    this.pos = this.stop;
    if (keyLength === SAME_KEY) {
      this.same = true;
      this.keyLength = this.keyEnd - this.keyStart;
      if (this.keyLength > length) throw new MalformedRunError(`a record of ${length} bytes said to have the previous key of ${this.keyLength}`, this.offset, this.source);
      return true;
    }
    this.same = false;
    this.keyLength = keyLength;
    this.key = buf;
    this.keyStart = this.start;
    this.keyEnd = this.start + keyLength;
    this.prefix = keyPrefix(buf, this.keyStart, this.keyEnd);
    if (this.partitions !== null) this.partition = fnv1a(buf, this.keyStart, this.keyEnd) % this.partitions;
    return true;
  }

  /** Reads frames until step() takes a record, or sets `done` at the run's clean end. */
  async load(): Promise<void> {
    for (;;) {
      const next = await this.frames.next();
      if (next.done === true) {
        if (this.end > this.pos) throw new MalformedRunError(`the run ends inside a record (${this.end - this.pos} bytes left over)`, this.base + this.pos, this.source);
        this.done = true;
        return;
      }
      this.append(next.value);
      if (this.step()) return;
    }
  }

  /** Stops reading the source (its files close). */
  async close(): Promise<void> {
    await this.frames.return?.();
  }

  /** Keeps the unread bytes and a copy of `frame` (which may be reused by its maker once we ask for the next). */
  private append(frame: Buffer): void {
    if (this.key === this.buf && this.buf !== EMPTY) this.saveKey();
    const left = this.end - this.pos;
    const need = left + frame.length;
    if (need > this.buf.length || (this.buf.length > SHRINK_ABOVE && need * SHRINK_RATIO < this.buf.length)) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(2 * this.buf.length, 2 * need)));
      this.buf.copy(grown, 0, this.pos, this.end);
      this.buf = grown;
    } else if (this.pos > 0) {
      this.buf.copy(this.buf, 0, this.pos, this.end);
    }
    this.base += this.pos;
    this.pos = 0;
    this.end = left;
    frame.copy(this.buf, this.end);
    this.end += frame.length;
  }

  /** The current key lies in bytes about to move: keep a copy (the next record may say "same key"). */
  private saveKey(): void {
    const n = this.keyEnd - this.keyStart;
    if (n > this.saved.length) this.saved = Buffer.allocUnsafe(Math.max(n, 2 * this.saved.length));
    this.key.copy(this.saved, 0, this.keyStart, this.keyEnd);
    this.key = this.saved;
    this.keyStart = 0;
    this.keyEnd = n;
  }
}
