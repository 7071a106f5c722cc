// The map side of the shuffle: a map attempt's output file sorted by key into a run (or into plain
// records, a combiner's stdin). Memory stays bounded: the input is read a spill at a time, each spill
// sorted in memory and written as a temp run, and the spills merged (shuffle-merge.ts) with bounded
// fan-in. Every temp file is removed, on success and on failure; never holds the whole input.
import fs from "node:fs";
import path from "node:path";
import { checkRecordOptions, type KeySpec } from "./shuffle-keys";
import { DEFAULT_FAN_IN, DEFAULT_MARK_EVERY, fileSource, mergeSourcesToFile, type RunSource } from "./shuffle-merge";
import { Spills } from "./shuffle-spill";
import type { SpillTarget } from "./shuffle-spill-write";
import { PlainSink, RunSink, frameBytesFor, writeSinkFile, type RunInfo } from "./shuffle-write";

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

/**
 * Sorts a map output file into a run file (format in shuffle-write.ts). partitionEnds: P end offsets
 * (hash), [] otherwise. marks: offset 0 (when there is a record) and then the first record starting at
 * or after each multiple of markEvery (key order only). A failed sort leaves no run file.
 */
export async function sortToRun(inputFile: string, runFile: string, o: SortOptions): Promise<RunInfo> {
  const partitions = o.partitions;
  if (partitions !== null && (!Number.isInteger(partitions) || partitions < 1 || partitions > 0xffffffff)) throw new Error(`shuffle: partitions must be a whole number from 1 to 2^32-1, or null, not ${partitions}`);
  if (o.markEvery !== undefined && !(Number.isInteger(o.markEvery) && o.markEvery >= 1)) throw new Error(`shuffle: markEvery must be a whole number >= 1, not ${o.markEvery}`);
  const markEvery = partitions === null ? (o.markEvery ?? DEFAULT_MARK_EVERY) : 0;
  return sortInto(inputFile, runFile, o, { kind: "run", partitions, markEvery });
}

/** The same sort, written as plain records each followed by `delimiter` (the stdin of a combiner): a final record without a delimiter gets one, as sort(1) does. */
export async function sortToPlain(inputFile: string, outFile: string, o: Omit<SortOptions, "partitions" | "markEvery">): Promise<{ bytes: number; records: number }> {
  const { bytes, records } = await sortInto(inputFile, outFile, o, { kind: "plain" });
  return { bytes, records };
}

/** One spill goes straight to the output; more are written as temp runs and merged into it. */
async function sortInto(inputFile: string, outFile: string, o: Omit<SortOptions, "partitions" | "markEvery">, target: SpillTarget): Promise<RunInfo> {
  checkRecordOptions(o.delimiter, o.key);
  const spillBytes = o.spillBytes ?? DEFAULT_SPILL_BYTES;
  if (!Number.isInteger(spillBytes) || spillBytes < 1) throw new Error(`shuffle: spillBytes must be a whole number >= 1, not ${spillBytes}`);
  const fanIn = o.fanIn ?? DEFAULT_FAN_IN;
  if (!Number.isInteger(fanIn) || fanIn < 2) throw new Error(`shuffle: fanIn must be a whole number >= 2, not ${fanIn}`);
  const partitions = target.kind === "run" ? target.partitions : null;
  const dir = fs.mkdtempSync(path.join(o.tmpDir, "bach-sort-"));
  try {
    const spills = Spills.open(inputFile, o.delimiter, o.key, partitions, spillBytes);
    const runs: RunSource[] = [];
    try {
      while (await spills.next()) {
        if (spills.last && runs.length === 0) return await spills.write(outFile, target);
        const file = path.join(dir, `spill-${runs.length}`);
        const written = await spills.write(file, { kind: "run", partitions, markEvery: 0 });
        runs.push(fileSource(file, true, written.bytes));
      }
    } finally {
      spills.close();
    }
    const frame = Buffer.allocUnsafe(frameBytesFor(spills.size));
    const sink = target.kind === "run" ? new RunSink(frame, partitions, target.markEvery) : new PlainSink(frame, o.delimiter);
    if (runs.length === 0) await writeSinkFile(outFile, sink, async () => undefined);
    else await mergeSourcesToFile(runs, outFile, sink, { fanIn, tmpDir: dir, partitions });
    return sink instanceof RunSink ? sink.info() : { bytes: sink.bytes, records: sink.records, partitionEnds: [], marks: [] };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
