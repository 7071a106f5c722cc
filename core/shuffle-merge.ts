// The one k-way merge of sorted runs, shared by the map side (spills into a run) and the reduce side
// (map runs into the reduce program's stdin). Stable: equal keys go in source order. Never sorts, and
// never holds more than a frame or a record per source.
import fs from "node:fs";
import path from "node:path";
import { filePieces } from "./file-pieces";
import { PREFIX_BYTES, checkRecordOptions } from "./shuffle-keys";
import { RunReader } from "./shuffle-read";
import { KeyIs, PlainSink, RunSink, WRITE_FRAME_BYTES, writeSinkFile, type RecordSink, type RunInfo } from "./shuffle-write";

export const DEFAULT_FAN_IN = 16;
export const DEFAULT_FRAME_BYTES = 1024 * 1024;
export const DEFAULT_MARK_EVERY = 64 * 1024;
/** Frames of a temp run read back for a merge: fanIn of these (and a reader's copy) at once. */
const TEMP_READ_BYTES = 256 * 1024;

/** A framed run to merge: opens its frames; `temp` is a file of ours to remove once merged. */
export interface RunSource {
  open: () => AsyncIterable<Buffer>;
  label: string;
  temp?: string;
}

/** A run file as a source; `bytes`, its size, bounds the read buffer of a small one. */
export function fileSource(file: string, temp: boolean, bytes: number): RunSource {
  const size = Math.max(4096, Math.min(TEMP_READ_BYTES, bytes));
  return { open: () => filePieces(file, 0, Infinity, size, Buffer.allocUnsafe(size)), label: file, temp: temp ? file : undefined };
}

const enum Pump {
  /** The sink is full: take its frames, then pump again. */
  full,
  /** The winning source needs bytes: fill(), then pump again. */
  fill,
  done,
}

/**
 * A loser tree of sources ordered by (partition, key, source index): replacing the winner costs one
 * compare per level (a binary heap's sift costs two). Keys are compared only when a source's key
 * changes: a record flagged "same key" keeps its source winning, since every other source is already
 * after it (greater key, or equal key and higher index). An ended source loses to every other.
 */
class Merge {
  /** tree[0]: the winning source; tree[node] for 1 <= node < k: the loser of the match at node. */
  private readonly tree: Int32Array;
  private advance = false;

  constructor(
    private readonly readers: RunReader[],
    private readonly hashed: boolean,
  ) {
    this.tree = new Int32Array(Math.max(1, readers.length));
  }

  async start(): Promise<void> {
    for (const r of this.readers) if (!r.step()) await r.load();
    // Leaves are nodes k..2k-1 (source i at k + i); play every match once, bottom up.
    const k = this.readers.length;
    const winners = new Int32Array(2 * k);
    for (let i = 0; i < k; i++) winners[k + i] = i;
    for (let node = k - 1; node >= 1; node--) {
      const a = winners[2 * node];
      const b = winners[2 * node + 1];
      const aWins = this.beats(a, b);
      winners[node] = aWins ? a : b;
      this.tree[node] = aWins ? b : a;
    }
    this.tree[0] = k > 1 ? winners[1] : 0;
  }

  /** Moves records to the sink until it is full, a source needs reading, or all are merged. */
  pump(sink: RecordSink): Pump {
    const readers = this.readers;
    if (readers.length === 0) return Pump.done;
    for (;;) {
      if (sink.full) return Pump.full;
      if (this.advance) {
        if (!readers[this.tree[0]].step()) return Pump.fill;
        this.advance = false;
        this.replay();
      }
      const r = readers[this.tree[0]];
      if (r.done) return Pump.done;
      sink.put(r.buf, r.start, r.stop, r.keyLength, r.same ? KeyIs.same : KeyIs.unknown, r.partition);
      this.advance = true;
    }
  }

  async fill(): Promise<void> {
    await this.readers[this.tree[0]].load();
    this.advance = false;
    this.replay();
  }

  async close(): Promise<void> {
    const failures: unknown[] = [];
    for (const r of this.readers) await r.close().catch((e: unknown) => failures.push(e));
    if (failures.length > 0) throw failures[0];
  }

  /** The winner took its next record (or ended): replay its matches from its leaf up. */
  private replay(): void {
    const tree = this.tree;
    let winner = tree[0];
    const r = this.readers[winner];
    if (r.same && !r.done) return;
    for (let node = (this.readers.length + winner) >> 1; node >= 1; node >>= 1) {
      const other = tree[node];
      if (this.beats(other, winner)) {
        tree[node] = winner;
        winner = other;
      }
    }
    tree[0] = winner;
  }

  private beats(a: number, b: number): boolean {
    const x = this.readers[a];
    const y = this.readers[b];
    if (x.done || y.done) return !x.done || (y.done && a < b);
    if (this.hashed && x.partition !== y.partition) return x.partition < y.partition;
    if (x.prefix !== y.prefix) return x.prefix < y.prefix;
    const c = compareFrom(x.key, x.keyStart, x.keyEnd, y.key, y.keyStart, y.keyEnd, PREFIX_BYTES);
    return c !== 0 ? c < 0 : a < b;
  }
}

/**
 * Bytes x[xs, xe) against y[ys, ye), known equal in their first `from` bytes: a JS loop, not
 * Buffer.compare, whose call and argument checks were a third of a merge of short keys (measured).
 */
function compareFrom(x: Buffer, xs: number, xe: number, y: Buffer, ys: number, ye: number, from: number): number {
  const xl = xe - xs;
  const yl = ye - ys;
  const l = Math.min(xl, yl);
  for (let j = from; j < l; j++) {
    const c = x[xs + j] - y[ys + j];
    if (c !== 0) return c;
  }
  return xl - yl;
}

function readersOf(sources: RunSource[], partitions: number | null): RunReader[] {
  return sources.map((s) => new RunReader(s.open()[Symbol.asyncIterator](), s.label, partitions));
}

/** Merges at most a fan-in of sources into `file` through `sink`, closing every source; removes temp sources after. */
async function mergeWritten(sources: RunSource[], file: string, partitions: number | null, sink: RecordSink, spare?: Buffer): Promise<void> {
  await writeSinkFile(file, sink, async (drain) => {
    const merge = new Merge(readersOf(sources, partitions), partitions !== null);
    try {
      await merge.start();
      for (;;) {
        const state = merge.pump(sink);
        if (state === Pump.full) await drain();
        else if (state === Pump.fill) await merge.fill();
        else break;
      }
    } finally {
      await merge.close();
    }
  }, spare);
  for (const s of sources) if (s.temp !== undefined) fs.rmSync(s.temp, { force: true });
}

/**
 * Merges contiguous groups of sources into temp runs in `dir` until at most `fanIn` are left, merging
 * no more than needed: each group of g sources removes g - 1, so one pass merges only as many as bring
 * the count down to fanIn. Contiguous groups keep ties in source order.
 */
export async function reduceToFanIn(sources: RunSource[], fanIn: number, dir: string, partitions: number | null, frameBytes: number): Promise<RunSource[]> {
  if (!Number.isInteger(fanIn) || fanIn < 2) throw new Error(`shuffle: fanIn must be a whole number >= 2, not ${fanIn}`);
  let made = 0;
  const frame = Buffer.allocUnsafe(frameBytes);
  const spare = Buffer.allocUnsafe(frameBytes);
  while (sources.length > fanIn) {
    let excess = sources.length - fanIn;
    const next: RunSource[] = [];
    let i = 0;
    while (excess > 0 && i + 1 < sources.length) {
      const group = sources.slice(i, i + Math.min(fanIn, excess + 1));
      const file = path.join(dir, `merged-${made++}`);
      const sink = new RunSink(frame, partitions, 0);
      await mergeWritten(group, file, partitions, sink, spare);
      next.push(fileSource(file, true, sink.info().bytes));
      excess -= group.length - 1;
      i += group.length;
    }
    sources = next.concat(sources.slice(i));
  }
  return sources;
}

/** Runs the merges of `sources` into `file` through `sink`, in a temp dir under tmpDir removed afterwards. */
export async function mergeSourcesToFile(sources: RunSource[], file: string, sink: RecordSink, o: { fanIn: number; tmpDir: string; partitions: number | null }): Promise<void> {
  const dir = fs.mkdtempSync(path.join(o.tmpDir, "bach-merge-"));
  try {
    const few = await reduceToFanIn(sources, o.fanIn, dir, o.partitions, sink.capacity);
    await mergeWritten(few, file, o.partitions, sink);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Merges framed runs (each a key-ordered run, a hash segment of one, or a range of one starting at a
 * record that carries its key) into one run file. `partitions`: the runs hold hash segments in
 * (partition, key) order and so will the output; null: key order, with marks every `markEvery` bytes.
 */
export async function mergeToRun(
  sources: Array<() => AsyncIterable<Buffer>>,
  runFile: string,
  o: { fanIn?: number; tmpDir: string; partitions?: number | null; markEvery?: number },
): Promise<RunInfo> {
  const partitions = o.partitions ?? null;
  const sink = new RunSink(Buffer.allocUnsafe(WRITE_FRAME_BYTES), partitions, partitions === null ? (o.markEvery ?? DEFAULT_MARK_EVERY) : 0);
  await mergeSourcesToFile(
    sources.map((open, i) => ({ open, label: `source ${i}` })),
    runFile,
    sink,
    { fanIn: o.fanIn ?? DEFAULT_FAN_IN, tmpDir: o.tmpDir, partitions },
  );
  return sink.info();
}

/**
 * Merges framed runs into plain records in key order (each record + delimiter), yielded in frames of
 * up to `frameBytes`. A frame is a reused buffer valid until the next is asked for. Stable: ties go to
 * the lower source index. Temp runs (more sources than fanIn) are removed when the generator ends,
 * returns or throws; one abandoned without return() keeps them until its tmpDir is cleaned.
 */
export async function* mergeRuns(
  sources: Array<() => AsyncIterable<Buffer>>,
  o: { delimiter: Buffer; fanIn?: number; tmpDir: string; frameBytes?: number },
): AsyncGenerator<Buffer> {
  checkRecordOptions(o.delimiter);
  const frameBytes = o.frameBytes ?? DEFAULT_FRAME_BYTES;
  if (!Number.isInteger(frameBytes) || frameBytes < 1) throw new Error(`shuffle: frameBytes must be a whole number >= 1, not ${frameBytes}`);
  const dir = fs.mkdtempSync(path.join(o.tmpDir, "bach-merge-"));
  try {
    const named = sources.map((open, i): RunSource => ({ open, label: `source ${i}` }));
    const few = await reduceToFanIn(named, o.fanIn ?? DEFAULT_FAN_IN, dir, null, WRITE_FRAME_BYTES);
    const merge = new Merge(readersOf(few, null), false);
    try {
      await merge.start();
      const sink = new PlainSink(Buffer.allocUnsafe(frameBytes), o.delimiter);
      for (;;) {
        const state = merge.pump(sink);
        if (state === Pump.full) {
          while (sink.full) {
            yield sink.take();
            sink.resume();
          }
        } else if (state === Pump.fill) await merge.fill();
        else break;
      }
      const rest = sink.take();
      if (rest.length > 0) yield rest;
    } finally {
      await merge.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
