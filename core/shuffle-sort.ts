// The map side of the shuffle: a map attempt's output file sorted by key into a run (or into plain
// records, a combiner's stdin). Memory stays bounded: the input is read a spill at a time, each spill
// sorted in memory and written as a temp run, and the spills merged (shuffle-merge.ts) with bounded
// fan-in. Every temp file is removed, on success and on failure; never holds the whole input.
import fs from "node:fs";
import path from "node:path";
import { checkRecordOptions, fnv1a, keyEnd, latin1, type KeySpec } from "./shuffle-keys";
import { DEFAULT_FAN_IN, DEFAULT_MARK_EVERY, WRITE_FRAME_BYTES, fileSource, mergeSourcesToFile, type RunSource } from "./shuffle-merge";
import { KeyIs, PlainSink, RunSink, writeSinkFile, type RecordSink, type RunInfo } from "./shuffle-write";

export interface SortOptions {
  delimiter: Buffer;
  key: KeySpec;
  /** Hash partitions P: the run holds P segments, segment p = records with partitionOf(key,P)===p in key order. null: one segment in key order. */
  partitions: number | null;
  /** Memory for one in-memory sorted spill (default 32 MiB); more input spills to temp files merged after. */
  spillBytes?: number;
  /** Most runs merged at once (default 16); more take extra merge passes through temp files. */
  fanIn?: number;
  tmpDir: string;
  /** Marks (record-start offsets) at least every this many bytes of the run (default 64 KiB); only for partitions null. */
  markEvery?: number;
}

export const DEFAULT_SPILL_BYTES = 32 * 1024 * 1024;
/** Index memory per record of a spill: its start, key end, key id (then rank) and place (4 × u32). */
const INDEX_BYTES_PER_RECORD = 16;
/** Offsets in a spill are u32s (and a run's lengths are): no buffer may grow past this. */
const LARGEST_BUFFER = 0xfffffffe;

/**
 * Sorts a map output file into a run file (format in shuffle-write.ts). partitionEnds: P end offsets
 * (hash), [] otherwise. marks: offset 0 (when there is a record) and then the first record starting at
 * or after each multiple of markEvery (key order only). A failed sort leaves no run file.
 */
export async function sortToRun(inputFile: string, runFile: string, o: SortOptions): Promise<RunInfo> {
  const partitions = o.partitions;
  if (partitions !== null && (!Number.isInteger(partitions) || partitions < 1 || partitions > 0xffffffff)) throw new Error(`shuffle: partitions must be a whole number from 1 to 2^32-1, or null, not ${partitions}`);
  const markEvery = partitions === null ? (o.markEvery ?? DEFAULT_MARK_EVERY) : 0;
  if (!(markEvery >= 0)) throw new Error(`shuffle: markEvery must be >= 0, not ${markEvery}`);
  const sink = new RunSink(Buffer.allocUnsafe(WRITE_FRAME_BYTES), partitions, markEvery);
  await sortInto(inputFile, runFile, sink, o, partitions);
  return sink.info();
}

/** The same sort, written as plain records each followed by `delimiter` (the stdin of a combiner): a final record without a delimiter gets one, as sort(1) does. */
export async function sortToPlain(inputFile: string, outFile: string, o: Omit<SortOptions, "partitions" | "markEvery">): Promise<{ bytes: number; records: number }> {
  const sink = new PlainSink(Buffer.allocUnsafe(WRITE_FRAME_BYTES), o.delimiter);
  await sortInto(inputFile, outFile, sink, o, null);
  return { bytes: sink.bytes, records: sink.records };
}

async function sortInto(inputFile: string, outFile: string, sink: RecordSink, o: Omit<SortOptions, "partitions" | "markEvery">, partitions: number | null): Promise<void> {
  checkRecordOptions(o.delimiter, o.key);
  const spillBytes = o.spillBytes ?? DEFAULT_SPILL_BYTES;
  if (!Number.isInteger(spillBytes) || spillBytes < 1) throw new Error(`shuffle: spillBytes must be a whole number >= 1, not ${spillBytes}`);
  const dir = await fs.promises.mkdtemp(path.join(o.tmpDir, "bach-sort-"));
  try {
    const spills = await Spills.open(inputFile, o.delimiter, o.key, partitions, spillBytes);
    try {
      const runs: RunSource[] = [];
      let frame: Buffer | undefined;
      while (await spills.next()) {
        if (spills.last && runs.length === 0) {
          // The whole input was one spill: straight to the output, no merge.
          await writeSinkFile(outFile, sink, (drain) => spills.writeTo(sink, drain));
          return;
        }
        const file = path.join(dir, `spill-${runs.length}`);
        frame ??= Buffer.allocUnsafe(WRITE_FRAME_BYTES);
        const temp = new RunSink(frame, partitions, 0);
        await writeSinkFile(file, temp, (drain) => spills.writeTo(temp, drain));
        runs.push(fileSource(file, true));
      }
      if (runs.length === 0) await writeSinkFile(outFile, sink, async () => undefined);
      else await mergeSourcesToFile(runs, outFile, sink, { fanIn: o.fanIn ?? DEFAULT_FAN_IN, tmpDir: dir, partitions });
    } finally {
      await spills.close();
    }
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

/**
 * An input file read one spill at a time, each spill's records sorted in memory. A spill holds at most
 * spillBytes of records (more only for one record longer than that) and spillBytes / 16 records, whose
 * index takes as much again; plus a string per distinct key. The sort never calls a comparator on
 * records: each key gets an id through a Map of its latin1 string, the distinct keys are sorted as
 * strings (latin1 makes string order byte order), and a counting sort by rank places the records, in
 * O(n) and stable.
 */
class Spills {
  private buf: Buffer;
  private filled = 0;
  /** Bytes of buf the current spill's records (and their delimiters) take. */
  private taken = 0;
  private readSoFar = 0;
  private eof = false;
  private readonly starts: Uint32Array;
  private readonly keyEnds: Uint32Array;
  /** Per record: its key's id while parsing, then its key's rank. */
  private readonly ranks: Uint32Array;
  private readonly order: Uint32Array;
  private partitionOfRank: Uint32Array | null = null;
  private n = 0;
  /** End of the spill's last record (the others end where the next starts, less the delimiter). */
  private lastEnd = 0;
  /** The current spill is the input's last. */
  last = false;
  private readonly ids = new Map<string, number>();
  private keys: string[] = [];
  private partitionOfId: number[] = [];

  private constructor(
    private readonly handle: fs.promises.FileHandle,
    private readonly size: number,
    private readonly delimiter: Buffer,
    private readonly key: KeySpec,
    private readonly partitions: number | null,
    private readonly spillBytes: number,
  ) {
    // +1: room to see the end of a small file in the same read that fills the buffer.
    this.buf = Buffer.allocUnsafe(Math.max(1, Math.min(spillBytes, size + 1)));
    const capacity = Math.max(1, Math.min(Math.floor(spillBytes / INDEX_BYTES_PER_RECORD), Math.floor(size / delimiter.length) + 1));
    this.starts = new Uint32Array(capacity);
    this.keyEnds = new Uint32Array(capacity);
    this.ranks = new Uint32Array(capacity);
    this.order = new Uint32Array(capacity);
  }

  static async open(file: string, delimiter: Buffer, key: KeySpec, partitions: number | null, spillBytes: number): Promise<Spills> {
    const handle = await fs.promises.open(file, "r");
    try {
      return new Spills(handle, (await handle.stat()).size, delimiter, key, partitions, spillBytes);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  /** Reads and sorts the next spill; false when the input is used up. */
  async next(): Promise<boolean> {
    if (this.last) return false;
    this.keepTail();
    for (;;) {
      await this.fill();
      this.parse();
      if (this.n > 0) break;
      if (this.eof) return false;
      this.grow();
    }
    this.sort();
    this.last = this.eof && this.taken === this.filled;
    return true;
  }

  /** Puts the spill's records into `sink` in key order, awaiting `drain` whenever it is full. */
  async writeTo(sink: RecordSink, drain: () => Promise<void>): Promise<void> {
    const { buf, starts, keyEnds, ranks, order, n, partitionOfRank } = this;
    const d = this.delimiter.length;
    let previous = -1;
    for (let k = 0; k < n; k++) {
      if (sink.full) await drain();
      const i = order[k];
      const rank = ranks[i];
      const end = i + 1 < n ? starts[i + 1] - d : this.lastEnd;
      sink.put(buf, starts[i], end, keyEnds[i] - starts[i], rank === previous ? KeyIs.same : KeyIs.different, partitionOfRank === null ? 0 : partitionOfRank[rank]);
      previous = rank;
    }
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

  private async fill(): Promise<void> {
    while (!this.eof && this.filled < this.buf.length) {
      const { bytesRead } = await this.handle.read(this.buf, this.filled, this.buf.length - this.filled, this.readSoFar);
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

  /** Finds the spill's records and gives each its key's id; stops at the index's capacity. */
  private parse(): void {
    const data = this.buf.subarray(0, this.filled);
    const { starts, keyEnds, ranks, ids, delimiter, key, partitions } = this;
    const single = delimiter.length === 1 ? delimiter[0] : -1;
    const capacity = starts.length;
    const keys: string[] = (this.keys = []);
    const partitionOfId: number[] = (this.partitionOfId = []);
    ids.clear();
    let at = 0;
    let n = 0;
    while (n < capacity) {
      const i = single >= 0 ? data.indexOf(single, at) : data.indexOf(delimiter, at);
      let end = i;
      if (i < 0) {
        if (!this.eof || at >= data.length) break;
        end = data.length; // the last record, without a delimiter
      }
      const e = keyEnd(data, at, end, key);
      const k = latin1(data, at, e);
      let id = ids.get(k);
      if (id === undefined) {
        id = keys.length;
        ids.set(k, id);
        keys.push(k);
        if (partitions !== null) partitionOfId.push(fnv1a(data, at, e) % partitions);
      }
      starts[n] = at;
      keyEnds[n] = e;
      ranks[n] = id;
      n++;
      this.lastEnd = end;
      at = i < 0 ? end : i + delimiter.length;
    }
    this.n = n;
    this.taken = at;
  }

  /** Ranks the distinct keys (by partition first when hashing), then places records by rank. */
  private sort(): void {
    const { keys, ids, ranks, order, n } = this;
    const rankOfId = new Uint32Array(keys.length);
    if (this.partitions === null) {
      keys.sort(); // no comparator: strings compare by UTF-16 units, here bytes
      for (let r = 0; r < keys.length; r++) rankOfId[ids.get(keys[r]) as number] = r;
      this.partitionOfRank = null;
    } else {
      // Two 16-bit units of partition before the key: string order is then (partition, key) order.
      const partitionOfId = this.partitionOfId;
      const tagged = keys.map((k, id) => String.fromCharCode(partitionOfId[id] >>> 16, partitionOfId[id] & 0xffff) + k);
      tagged.sort();
      const partitionOfRank = new Uint32Array(keys.length);
      for (let r = 0; r < tagged.length; r++) {
        const id = ids.get(tagged[r].slice(2)) as number;
        rankOfId[id] = r;
        partitionOfRank[r] = partitionOfId[id];
      }
      this.partitionOfRank = partitionOfRank;
    }
    const count = new Uint32Array(keys.length + 1);
    for (let i = 0; i < n; i++) {
      const rank = rankOfId[ranks[i]];
      ranks[i] = rank;
      count[rank + 1]++;
    }
    for (let r = 1; r < count.length; r++) count[r] += count[r - 1];
    for (let i = 0; i < n; i++) order[count[ranks[i]]++] = i;
  }
}
