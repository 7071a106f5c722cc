// One spill at a time of a map output file: read, cut into records, sorted in memory and written as a
// run (or plain records). Owns the spill's memory, which is bounded whatever the input: never holds
// more than one spill (one record longer than a spill grows the buffer to that record's size).
import fs from "node:fs";
import { FNV_OFFSET_BASIS, FNV_PRIME, fnv1a, keyEnd, type KeySpec } from "./shuffle-keys";
import { RADIX_MOST_RECORDS, RadixScratch, radixOrder, rankKeys } from "./shuffle-order";
import { HEADER_BYTES, KeyIs, PlainSink, RunSink, SAME_KEY, frameBytesFor, writeSinkFile, type RecordSink, type RunInfo } from "./shuffle-write";

/** Index memory per record of a spill: its start, key end, key id or partition, and place (4 × u32). */
const INDEX_BYTES_PER_RECORD = 16;
/** Offsets in a spill are u32s (and a run's lengths are): no buffer may grow past this. */
const LARGEST_BUFFER = 0xfffffffe;
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
/** Radix spills are bucketed by partition and key byte while that makes at most this many buckets. */
const MOST_BUCKETS = 1 << 16;

/** Where a spill goes: a run (temp: no marks) or plain records (each followed by the delimiter). */
export type SpillTarget = { kind: "run"; partitions: number | null; markEvery: number } | { kind: "plain" };

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
  private image: Buffer = Buffer.alloc(0);
  // Radix spills, made when first needed: the records laid out again in the image, in buckets.
  private laidOut: Uint32Array | null = null;
  private bucketOf: Uint32Array | null = null;
  private scratch: RadixScratch | null = null;

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
    if (!this.radix) return this.writeRanked(file, target);
    const buckets = this.layOutInBuckets();
    const frame = Buffer.allocUnsafe(frameBytesFor(this.taken));
    const sink: RunSink | PlainSink = target.kind === "run" ? new RunSink(frame, target.partitions, target.markEvery) : new PlainSink(frame, this.delimiter);
    await writeSinkFile(file, sink, (drain) => this.gather(buckets, sink, drain));
    return sink instanceof RunSink ? sink.info() : { bytes: sink.bytes, records: sink.records, partitionEnds: [], marks: [] };
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

  /**
   * Few keys: each record is copied once, in input order, to its place in an image of the sorted spill
   * (a cursor per key rank), which is then written in one go. Reads are sequential and writes go to a
   * cursor per key: measured 4x faster than gathering records through a sorted permutation, where
   * every record was a cache miss.
   */
  private async writeRanked(file: string, target: SpillTarget): Promise<RunInfo> {
    const { buf, records, tags, n, delimiter } = this;
    const d = delimiter.length;
    const framed = target.kind === "run";
    const partitions = target.kind === "run" ? target.partitions : null;
    const markEvery = target.kind === "run" ? target.markEvery : 0;
    const keys = this.distinct;
    const rankOfId = rankKeys(buf, this.repStart, this.repEnd, keys, partitions === null ? null : this.partitionOfId);
    // Each key's group: its bytes, then where it starts in the image.
    const overhead = framed ? HEADER_BYTES : d;
    const cursor = new Float64Array(keys);
    for (let i = 0; i < n; i++) cursor[rankOfId[tags[i]]] += overhead + records[2 * i + 2] - d - records[2 * i];
    const groupStart = new Float64Array(keys);
    let total = 0;
    for (let r = 0; r < keys; r++) {
      const bytes = cursor[r];
      groupStart[r] = cursor[r] = total;
      total += bytes;
    }
    if (this.image.length < total) this.image = Buffer.allocUnsafe(Math.min(LARGEST_BUFFER, Math.max(total, Math.floor(1.25 * this.image.length))));
    const image = this.image;
    /** Offset of the last record placed in each group. */
    const lastAt = new Float64Array(keys);
    const marks: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = rankOfId[tags[i]];
      const s = records[2 * i];
      const length = records[2 * i + 2] - d - s;
      let at = cursor[r];
      if (framed) {
        let keyField = records[2 * i + 1] - s;
        if (at !== groupStart[r]) {
          // Past a multiple of markEvery that the group's previous record was before: a mark, with its key.
          if (markEvery > 0 && Math.floor(at / markEvery) > Math.floor(lastAt[r] / markEvery)) marks.push(at);
          else keyField = SAME_KEY;
        }
        writeU32(image, at, length);
        writeU32(image, at + 4, keyField);
        lastAt[r] = at;
        at += HEADER_BYTES;
      }
      if (length > 24) buf.copy(image, at, s, s + length);
      else for (let j = 0; j < length; j++) image[at + j] = buf[s + j];
      at += length;
      if (!framed) {
        for (let j = 0; j < d; j++) image[at + j] = delimiter[j];
        at += d;
      }
      cursor[r] = at;
    }
    const partitionEnds: number[] = [];
    if (framed) {
      // A group's first record starts a key, so it carries it; it is a mark when the previous group's last was before a multiple.
      for (let r = 0, previous = -1; r < keys; r++) {
        if (markEvery > 0 && (previous < 0 || Math.floor(groupStart[r] / markEvery) > Math.floor(lastAt[previous] / markEvery))) marks.push(groupStart[r]);
        previous = r;
      }
      marks.sort((a, b) => a - b);
      if (partitions !== null) {
        const partitionOfRank = new Uint32Array(keys);
        for (let id = 0; id < keys; id++) partitionOfRank[rankOfId[id]] = this.partitionOfId[id];
        for (let r = 0; r < keys; r++) while (partitionEnds.length < partitionOfRank[r]) partitionEnds.push(groupStart[r]);
        while (partitionEnds.length < partitions) partitionEnds.push(total);
      }
    }
    try {
      await fs.promises.writeFile(file, image.subarray(0, total));
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw e;
    }
    return { bytes: total, records: n, partitionEnds, marks };
  }

  /**
   * Many keys: the records are first copied into buckets by partition and by their key's first byte
   * past the spill's common key prefix (a pass that reads in order and writes at ~257 cursors), so that
   * each bucket's radix sort and gather stay within a CPU cache (measured on 1M distinct words: 475
   * ns a record over a 32 MiB spill, 145 within 1 MiB).
   */
  private layOutInBuckets(): Buckets {
    const { buf, records, tags, n, partitions } = this;
    const d = this.delimiter.length;
    let common = records[1] - records[0];
    for (let i = 1; i < n && common > 0; i++) {
      const s = records[2 * i];
      const l = Math.min(common, records[2 * i + 1] - s);
      let j = 0;
      while (j < l && buf[s + j] === buf[records[0] + j]) j++;
      common = j;
    }
    // Bucket 0 of a partition: keys that are the common prefix itself; bucket 1 + b: next byte b.
    const byByte = partitions === null || partitions * 257 <= MOST_BUCKETS;
    const perPartition = byByte ? 257 : 1;
    const count = (partitions ?? 1) * perPartition;
    this.bucketOf ??= new Uint32Array(tags.length);
    const bucketOf = this.bucketOf;
    const firstRecord = new Float64Array(count + 1);
    const firstByte = new Float64Array(count + 1);
    for (let i = 0; i < n; i++) {
      const s = records[2 * i];
      let b = partitions === null ? 0 : tags[i] * perPartition;
      if (byByte && records[2 * i + 1] - s > common) b += 1 + buf[s + common];
      bucketOf[i] = b;
      firstRecord[b + 1]++;
      firstByte[b + 1] += records[2 * i + 2] - d - s;
    }
    for (let b = 1; b <= count; b++) {
      firstRecord[b] += firstRecord[b - 1];
      firstByte[b] += firstByte[b - 1];
    }
    const total = firstByte[count];
    if (this.image.length < total) this.image = Buffer.allocUnsafe(Math.min(LARGEST_BUFFER, Math.max(total, Math.floor(1.25 * this.image.length))));
    this.laidOut ??= new Uint32Array(records.length);
    const { image, laidOut } = this;
    const recordAt = firstRecord.slice(0, count);
    const byteAt = firstByte.slice(0, count);
    for (let i = 0; i < n; i++) {
      const b = bucketOf[i];
      const k = recordAt[b]++;
      const at = byteAt[b];
      const s = records[2 * i];
      const length = records[2 * i + 2] - d - s;
      if (length > 24) buf.copy(image, at, s, s + length);
      else for (let j = 0; j < length; j++) image[at + j] = buf[s + j];
      laidOut[2 * k] = at;
      laidOut[2 * k + 1] = at + records[2 * i + 1] - s;
      byteAt[b] = at + length;
    }
    laidOut[2 * n] = total; // records are now back to back: each ends where the next starts
    // The tags (partitions) are spent: their memory holds the order.
    const order = tags;
    for (let k = 0; k < n; k++) order[k] = k;
    let largest = 0;
    for (let b = 0; b < count; b++) largest = Math.max(largest, firstRecord[b + 1] - firstRecord[b]);
    if (this.scratch === null || this.scratch.capacity < largest) this.scratch = new RadixScratch(largest);
    for (let b = 0; b < count; b++) {
      // A partition's bucket 0 holds equal keys, in input order already.
      if (firstRecord[b + 1] - firstRecord[b] > 1 && (!byByte || b % perPartition !== 0)) radixOrder(image, laidOut, order, firstRecord[b], firstRecord[b + 1], this.scratch, byByte ? common + 1 : 0);
    }
    return { order, firstRecord, perPartition, count };
  }

  /** Puts the laid-out records into `sink` in key order, awaiting `drain` whenever it is full. */
  private async gather(buckets: Buckets, sink: RecordSink, drain: () => Promise<void>): Promise<void> {
    const { order, firstRecord, perPartition, count } = buckets;
    const data = this.image;
    const records = this.laidOut as Uint32Array;
    let previous = -1;
    for (let b = 0; b < count; b++) {
      const partition = Math.floor(b / perPartition);
      for (let k = firstRecord[b]; k < firstRecord[b + 1]; k++) {
        if (sink.full) await drain();
        const i = order[k];
        const s = records[2 * i];
        const e = records[2 * i + 1];
        const same = previous >= 0 && sameBytes(data, records[2 * previous], records[2 * previous + 1], s, e);
        sink.put(data, s, records[2 * i + 2], e - s, same ? KeyIs.same : KeyIs.different, partition);
        previous = i;
      }
    }
  }
}

/** A radix spill laid out in buckets: record numbers in key order, bucket by bucket. */
interface Buckets {
  order: Uint32Array;
  /** Bucket b's records are order[firstRecord[b], firstRecord[b + 1]). */
  firstRecord: Float64Array;
  /** Buckets per partition (partition of bucket b: floor(b / perPartition)). */
  perPartition: number;
  count: number;
}

function sameBytes(buf: Buffer, aStart: number, aEnd: number, bStart: number, bEnd: number): boolean {
  if (aEnd - aStart !== bEnd - bStart) return false;
  for (let j = 0; j < aEnd - aStart; j++) if (buf[aStart + j] !== buf[bStart + j]) return false;
  return true;
}

function writeU32(buf: Buffer, at: number, value: number): void {
  buf[at] = value & 0xff;
  buf[at + 1] = (value >>> 8) & 0xff;
  buf[at + 2] = (value >>> 16) & 0xff;
  buf[at + 3] = value >>> 24;
}
