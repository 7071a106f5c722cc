// One spill at a time of a map output file: read, cut into records and their keys, and handed to
// shuffle-spill-write.ts to be sorted into a file. Owns the input and the spill's buffer and index,
// bounded whatever the input: never more than one spill (one record longer than a spill grows the
// buffer to that record's size).
import fs from "node:fs";
import { FNV_OFFSET_BASIS, FNV_PRIME, fnv1a, keyEnd, type KeySpec } from "./shuffle-keys";
import { RADIX_MOST_RECORDS } from "./shuffle-order";
import { LARGEST_BUFFER, SpillMemory, sameBytes, writeByRadix, writeRanked, type SpillTarget } from "./shuffle-spill-write";
import type { RunInfo } from "./shuffle-write";

/** Index memory per record of a spill: its start, key end, key id or partition, and place (4 × u32). */
const INDEX_BYTES_PER_RECORD = 16;
/**
 * Up to this many distinct keys (and a quarter of the spill's records: ranks pay when keys repeat) a
 * spill is sorted by key ranks: a table of 2^18 slots at most (2 MiB, held in a CPU cache) gives
 * each record its key's id. More keys and the spill switches to the radix sort: a table that outgrows the cache
 * costs a miss or two per record (measured: 1.35 s for 3.3M records of 1M distinct words, against
 * 0.2 s for 200 keys).
 */
const MOST_RANKED_KEYS = 1 << 16;
/** Table slots per rankable key: a table at most a quarter full keeps probe runs short. */
const SLOTS_PER_KEY = 4;

/**
 * A spill holds at most spillBytes of records and spillBytes / 16 records (2^21 at most). Its memory:
 * the buffer (spillBytes), the index (12 bytes a record), and an image of the spill's size: sorted,
 * with 8 bytes of header a record (few keys), or laid out in buckets, with 12 bytes a record more and
 * radix scratch of 8 bytes a record of the largest bucket (many keys).
 */
export class Spills {
  private buf: Buffer;
  private filled = 0;
  /** Bytes of buf the current spill's records (and their delimiters) take. */
  private taken = 0;
  private readSoFar = 0;
  private eof = false;
  /** Per record, side by side (one cache line brings both): its start, and its key's end. */
  private readonly records: Uint32Array;
  /** Per record: its key's id (ranked spills), or its partition (radix spills). */
  private readonly tags: Uint32Array;
  private n = 0;
  /** End of the spill's last record (the others end where the next starts, less the delimiter). */
  private lastEnd = 0;
  /** The current spill is the input's last. */
  last = false;
  /** The current spill has more distinct keys than ranks are for: it is sorted by radix. */
  private radix = false;
  // Ranked spills: the key table and each distinct key's first record.
  private readonly table: Int32Array;
  private readonly repStart: Uint32Array;
  private readonly repEnd: Uint32Array;
  private readonly partitionOfId: Uint32Array;
  private distinct = 0;
  private readonly mostRankedKeys: number;
  private readonly memory = new SpillMemory();

  private constructor(
    private readonly fd: number,
    /** The input's size. */
    readonly size: number,
    private readonly delimiter: Buffer,
    private readonly key: KeySpec,
    private readonly partitions: number | null,
    private readonly spillBytes: number,
  ) {
    // +1: room to see the end of a small file in the same read that fills the buffer.
    this.buf = Buffer.allocUnsafe(Math.max(1, Math.min(spillBytes, size + 1)));
    const capacity = Math.max(1, Math.min(Math.floor(spillBytes / INDEX_BYTES_PER_RECORD), RADIX_MOST_RECORDS, Math.floor(size / delimiter.length) + 1));
    this.records = new Uint32Array(2 * capacity + 2);
    this.tags = new Uint32Array(capacity);
    // Sized to the spill: a small input (or a tiny spill, many times over) must not clear a big table.
    this.mostRankedKeys = Math.min(MOST_RANKED_KEYS, Math.max(1, capacity >> 2));
    this.table = new Int32Array(2 * 2 ** Math.ceil(Math.log2(SLOTS_PER_KEY * this.mostRankedKeys)));
    this.repStart = new Uint32Array(this.mostRankedKeys);
    this.repEnd = new Uint32Array(this.mostRankedKeys);
    this.partitionOfId = new Uint32Array(this.mostRankedKeys);
  }

  /** Reads are synchronous, on the event loop, as file-pieces.ts's are; each spill yields to the loop once. */
  static open(file: string, delimiter: Buffer, key: KeySpec, partitions: number | null, spillBytes: number): Spills {
    const fd = fs.openSync(file, "r");
    try {
      return new Spills(fd, fs.fstatSync(fd).size, delimiter, key, partitions, spillBytes);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** Reads the next spill; false when the input is used up. */
  async next(): Promise<boolean> {
    if (this.last) return false;
    // A spill's sort holds the event loop for a while (~0.1 s for 32 MiB): let timers and sockets in first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.keepTail();
    for (;;) {
      this.fill();
      this.parse();
      if (this.n > 0) break;
      if (this.eof) return false;
      this.grow();
    }
    this.last = this.eof && this.taken === this.filled;
    return true;
  }

  /** Sorts the spill into `file`. */
  async write(file: string, target: SpillTarget): Promise<RunInfo> {
    const { buf, records, tags, n, delimiter, partitions, taken, distinct, repStart, repEnd, partitionOfId } = this;
    const spill = { buf, records, tags, n, delimiter, partitions, taken, distinct, repStart, repEnd, partitionOfId };
    return this.radix ? writeByRadix(spill, this.memory, file, target) : writeRanked(spill, this.memory, file, target);
  }

  /** Moves the bytes after the last spill to the front; gives back a buffer grown for one long record. */
  private keepTail(): void {
    const tail = this.filled - this.taken;
    if (this.buf.length > this.spillBytes && tail < this.spillBytes) {
      const smaller = Buffer.allocUnsafe(this.spillBytes);
      this.buf.copy(smaller, 0, this.taken, this.filled);
      this.buf = smaller;
    } else if (this.taken > 0) this.buf.copy(this.buf, 0, this.taken, this.filled);
    this.filled = tail;
    this.taken = 0;
  }

  private fill(): void {
    while (!this.eof && this.filled < this.buf.length) {
      const bytesRead = fs.readSync(this.fd, this.buf, this.filled, this.buf.length - this.filled, this.readSoFar);
      this.filled += bytesRead;
      this.readSoFar += bytesRead;
      // The input is a finished file: its size at open is its end.
      if (bytesRead === 0 || this.readSoFar >= this.size) this.eof = true;
    }
  }

  /** One record longer than the buffer: the buffer grows to hold it. */
  private grow(): void {
    if (this.buf.length >= LARGEST_BUFFER) throw new Error(`shuffle: a record longer than ${LARGEST_BUFFER} bytes`);
    const bigger = Buffer.allocUnsafe(Math.min(LARGEST_BUFFER, 2 * this.buf.length));
    this.buf.copy(bigger, 0, 0, this.filled);
    this.buf = bigger;
  }

  /**
   * Finds the spill's records, their key ends and key hashes (FNV-1a, one loop), and gives each key an
   * id through the table while the spill has few distinct keys; stops at the index's capacity.
   */
  private parse(): void {
    const data = this.buf.subarray(0, this.filled);
    const { records, tags, table, repStart, repEnd, partitionOfId, delimiter, key, partitions } = this;
    const d = delimiter.length;
    const single = d === 1 ? delimiter[0] : -1;
    const separator = key.separator.length === 1 ? key.separator[0] : -1;
    const capacity = tags.length;
    const mask = table.length / 2 - 1;
    table.fill(0);
    this.radix = false;
    let distinct = 0;
    let at = 0;
    let n = 0;
    while (n < capacity) {
      let end = single >= 0 ? data.indexOf(single, at) : data.indexOf(delimiter, at);
      let next = end + d;
      if (end < 0) {
        if (!this.eof || at >= data.length) break;
        end = next = data.length; // the last record, without a delimiter
      }
      let e = end;
      let h = FNV_OFFSET_BASIS;
      if (separator >= 0) {
        let left = key.fields;
        for (let i = at; i < end; i++) {
          const c = data[i];
          if (c === separator && --left === 0) {
            e = i;
            break;
          }
          h = Math.imul(h ^ c, FNV_PRIME);
        }
      } else {
        e = keyEnd(data, at, end, key);
        h = fnv1a(data, at, e);
      }
      h >>>= 0;
      records[2 * n] = at;
      records[2 * n + 1] = e;
      if (this.radix) tags[n] = partitions === null ? 0 : h % partitions;
      else {
        // Linear probing; a slot holds id + 1 (0: empty) and the key's hash, which spares most byte compares.
        let slot = (h ^ (h >>> 15)) & mask;
        for (;;) {
          const held = table[2 * slot];
          if (held === 0) {
            if (distinct === this.mostRankedKeys) {
              this.toRadix(n, h);
              break;
            }
            table[2 * slot] = distinct + 1;
            table[2 * slot + 1] = h;
            repStart[distinct] = at;
            repEnd[distinct] = e;
            if (partitions !== null) partitionOfId[distinct] = h % partitions;
            tags[n] = distinct++;
            break;
          }
          if (table[2 * slot + 1] === (h | 0) && sameBytes(data, repStart[held - 1], repEnd[held - 1], at, e)) {
            tags[n] = held - 1;
            break;
          }
          slot = (slot + 1) & mask;
        }
      }
      n++;
      this.lastEnd = end;
      at = next;
    }
    // A start past the last record, so that every record ends where the next starts, less the delimiter.
    records[2 * n] = this.lastEnd + d;
    this.n = n;
    this.taken = at;
    this.distinct = distinct;
  }

  /** Too many distinct keys for ranks: records so far trade their key id for their partition. */
  private toRadix(n: number, h: number): void {
    this.radix = true;
    const { tags, partitionOfId, partitions } = this;
    for (let i = 0; i < n; i++) tags[i] = partitions === null ? 0 : partitionOfId[tags[i]];
    tags[n] = partitions === null ? 0 : h % partitions;
  }

}
