// The chunker: bytes in, chunk boundaries out. A chunk is a run of whole records, at most its target
// size unless one record alone is longer. It never copies or holds the stream: it keeps only the last
// delimiter.length-1 bytes (to find a delimiter split across two pushes) and a few positions.

export interface Cut {
  index: number;
  offset: number;
  length: number;
}

/** True when a proper prefix of d is also its suffix ("\n\n", "aba"): matches can then overlap. */
export function delimiterOverlapsItself(d: Buffer): boolean {
  for (let k = 1; k < d.length; k++) {
    if (d.subarray(0, k).equals(d.subarray(d.length - k))) return true;
  }
  return false;
}

export class Chunker {
  private pos = 0;
  private chunkStart = 0;
  /** End of the last complete record in the current chunk, or -1. */
  private lastEnd = -1;
  /** A match may start no earlier than this (records are found left to right, without overlap). */
  private matchFrom = 0;
  private index = 0;
  private size: number;
  private carry: Buffer = Buffer.alloc(0);
  private readonly overlapping: boolean;
  private cuts: Cut[] = [];

  /** `from`: carry on after chunks already cut (a restart), at the end of the last one. */
  constructor(
    private readonly delimiter: Buffer,
    private readonly nextSize: (index: number) => number,
    from: { index: number; offset: number } = { index: 0, offset: 0 },
  ) {
    if (delimiter.length === 0) throw new Error("empty delimiter");
    this.overlapping = delimiterOverlapsItself(delimiter);
    this.index = from.index;
    this.pos = this.chunkStart = this.matchFrom = from.offset;
    this.size = Math.max(1, nextSize(from.index));
  }

  get position(): number {
    return this.pos;
  }

  push(data: Buffer): Cut[] {
    this.cuts = [];
    const d = this.delimiter.length;
    if (d > 1 && this.carry.length > 0) this.straddling(data);
    if (this.overlapping) this.scanEvery(data);
    else this.scanLast(data);
    this.pos += data.length;
    this.earlyCut();
    if (d > 1) {
      const keep = Math.min(d - 1, this.pos);
      this.carry = Buffer.from(keep <= data.length ? data.subarray(data.length - keep) : Buffer.concat([this.carry, data]).subarray(-keep));
    }
    return this.cuts;
  }

  /** Bytes the chunk being filled may still take before its size is reached. */
  get left(): number {
    return Math.max(0, this.chunkStart + this.size - this.pos);
  }

  /** The chunk being filled holds at least one whole record. */
  get holdsRecord(): boolean {
    return this.lastEnd > this.chunkStart;
  }

  /** Cuts the chunk being filled after its last whole record, if it has one (a slow stream's chunk that waited long enough). */
  flush(): Cut[] {
    this.cuts = [];
    if (this.holdsRecord) this.cut(this.lastEnd);
    return this.cuts;
  }

  end(): Cut[] {
    this.cuts = [];
    if (this.pos > this.chunkStart) this.cut(this.pos);
    return this.cuts;
  }

  /** A delimiter that starts in the carried tail of the last push and ends in this one. */
  private straddling(data: Buffer): void {
    const d = this.delimiter.length;
    const base = this.pos - this.carry.length;
    const head = Buffer.concat([this.carry, data.subarray(0, d - 1)]);
    const i = head.indexOf(this.delimiter, Math.max(0, this.matchFrom - base));
    if (i >= 0 && i < this.carry.length) this.recordEnd(base + i + d);
  }

  /** Every record end, in order: needed when matches may overlap. */
  private scanEvery(data: Buffer): void {
    const d = this.delimiter.length;
    for (let i = data.indexOf(this.delimiter, Math.max(0, this.matchFrom - this.pos)); i >= 0; i = data.indexOf(this.delimiter, this.matchFrom - this.pos)) {
      this.recordEnd(this.pos + i + d);
    }
  }

  /**
   * Only the record ends that decide a cut: the last one within the chunk's limit (found backwards),
   * and, when none fits, the first one after it. Far fewer calls than visiting every record.
   */
  private scanLast(data: Buffer): void {
    const d = this.delimiter.length;
    const to = this.pos + data.length;
    for (;;) {
      const from = Math.max(this.matchFrom, this.chunkStart);
      const limit = Math.min(this.chunkStart + this.size, to);
      const last = limit - d - this.pos;
      // A negative offset would make lastIndexOf count from the buffer's end: nothing can end in range.
      if (last >= 0 && last >= from - this.pos) {
        const i = data.lastIndexOf(this.delimiter, last);
        if (i >= 0 && i >= from - this.pos) {
          this.lastEnd = this.pos + i + d;
          this.matchFrom = this.lastEnd;
        }
      }
      if (to - this.chunkStart <= this.size) return;
      if (this.lastEnd > this.chunkStart) {
        this.cut(this.lastEnd);
        continue;
      }
      // Nothing ends within the limit: the first record to end is longer than the chunk, and alone.
      const i = data.indexOf(this.delimiter, Math.max(0, from - this.pos));
      if (i < 0) return;
      this.matchFrom = this.pos + i + d;
      this.cut(this.matchFrom);
    }
  }

  private recordEnd(e: number): void {
    this.matchFrom = e;
    if (e - this.chunkStart > this.size && this.lastEnd > this.chunkStart) this.cut(this.lastEnd);
    if (e - this.chunkStart >= this.size) this.cut(e);
    else this.lastEnd = e;
  }

  /** Past the limit with a complete record in hand: close now rather than wait for the long record. */
  private earlyCut(): void {
    if (this.pos - this.chunkStart > this.size && this.lastEnd > this.chunkStart) this.cut(this.lastEnd);
  }

  private cut(at: number): void {
    this.cuts.push({ index: this.index, offset: this.chunkStart, length: at - this.chunkStart });
    this.index++;
    this.chunkStart = at;
    this.lastEnd = -1;
    this.size = Math.max(1, this.nextSize(this.index));
  }
}

/** Reads `length` bytes at `offset` (fewer only at the end of the input). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * The same cuts as Chunker, for an input that can be read at any offset (a file), reading only small
 * windows around each chunk's limit instead of every byte. Only for delimiters that cannot overlap
 * themselves: their occurrences are then the same wherever a search starts.
 */
export async function* planCuts(
  read: ReadAt,
  total: number,
  delimiter: Buffer,
  nextSize: (index: number) => number,
  from: { index: number; offset: number } = { index: 0, offset: 0 },
  window = 64 * 1024,
): AsyncGenerator<Cut> {
  if (delimiterOverlapsItself(delimiter)) throw new Error("planCuts needs a delimiter that cannot overlap itself");
  const d = delimiter.length;
  const step = Math.max(window, 2 * d);
  let start = from.offset;
  for (let index = from.index; start < total; index++) {
    const limit = start + Math.max(1, nextSize(index));
    let end = limit >= total ? total : await lastRecordEnd(read, start, limit, delimiter, step);
    if (end < 0) end = await firstRecordEnd(read, Math.max(start, limit - d + 1), total, delimiter, step);
    yield { index, offset: start, length: end - start };
    start = end;
  }
}

/** The end of the last delimiter lying wholly in [start, limit], or -1. */
async function lastRecordEnd(read: ReadAt, start: number, limit: number, delimiter: Buffer, step: number): Promise<number> {
  for (let hi = limit; hi - start >= delimiter.length; ) {
    const lo = Math.max(start, hi - step);
    const i = (await read(lo, hi - lo)).lastIndexOf(delimiter);
    if (i >= 0) return lo + i + delimiter.length;
    if (lo === start) break;
    hi = lo + delimiter.length - 1; // windows overlap so a delimiter across their edge is seen
  }
  return -1;
}

/** The end of the first delimiter starting at or after `from`, or `total` when there is none. */
async function firstRecordEnd(read: ReadAt, from: number, total: number, delimiter: Buffer, step: number): Promise<number> {
  for (let lo = from; lo < total; lo += step - delimiter.length + 1) {
    const i = (await read(lo, Math.min(step, total - lo))).indexOf(delimiter);
    if (i >= 0) return lo + i + delimiter.length;
  }
  return total;
}
