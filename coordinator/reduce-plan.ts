// The reduce phase's plan, made once every map chunk has committed: how many partitions, which keys
// each holds, and which range of each map chunk's run it reads. Hash order: the map attempts cut their
// runs into the task's partitions already (their partition ends). Total order: keys sampled at the
// runs' marks, weighted by the bytes up to the next mark, give split keys of about equal bytes (as
// Hadoop's TotalOrderPartitioner does from its sample); each run is cut at the splits by searching it.
// It reads committed runs and changes nothing.
import { MAX_PARTITIONS } from "../core/bachfile";
import { chooseSplits, firstAtOrAbove, keyAt } from "../core/shuffle";
import type { RunIndex, ShuffleRange } from "./ledger";

/** A reduce partition holds at most about this much map output when partitions are "auto". */
export const AUTO_PARTITION_BYTES = 2 ** 30;

/**
 * "auto" partitions: one per slot (every slot reduces at once), more when a partition would hold over
 * AUTO_PARTITION_BYTES (a reducer's input stays a size one machine merges in minutes), at most
 * MAX_PARTITIONS. `bytes`: the map output's size (hash order decides at the task's start, from its
 * input's size, which the map output seldom exceeds; total order once the map phase has ended).
 */
export function autoPartitions(bytes: number, slots: number): number {
  return Math.min(MAX_PARTITIONS, Math.max(1, slots, Math.ceil(bytes / AUTO_PARTITION_BYTES)));
}

/** Marks closer than this on average are refused (see checkRunIndex). */
const MIN_MARK_SPACING = 4096;

/** A committed map chunk's run. */
export interface MapRun {
  seq: number;
  file: string;
  bytes: number;
  index: RunIndex;
}

export interface ReducePlan {
  /** Each partition's keys in words, for reports and failures. */
  partitions: { keyRange: string }[];
  ranges: ShuffleRange[];
}

/** Hash order: partition p of each run is between its partition ends. */
export function planHash(partitions: number, runs: MapRun[]): ReducePlan {
  const ranges: ShuffleRange[] = [];
  for (const r of runs) {
    let start = 0;
    for (let p = 0; p < partitions; p++) {
      const end = r.index.partitionEnds[p] ?? r.bytes;
      ranges.push({ part: p, seq: r.seq, offset: start, length: end - start });
      start = end;
    }
  }
  return { partitions: Array.from({ length: partitions }, (_, p) => ({ keyRange: `keys whose hash is partition ${p} of ${partitions}` })), ranges };
}

/**
 * Total order: split keys from the runs' marks, then each run cut at them. Fewer partitions than
 * asked for when the map output has fewer distinct keys (one, when it is empty): a partition with no
 * keys would only run the reduce program over nothing.
 */
export async function planTotal(partitions: number, runs: MapRun[]): Promise<ReducePlan> {
  const samples: { key: Buffer; weight: number }[] = [];
  for (const r of runs) {
    const marks = r.index.marks;
    for (let i = 0; i < marks.length; i++) samples.push({ key: await keyAt(r.file, marks[i]), weight: (marks[i + 1] ?? r.bytes) - marks[i] });
  }
  const splits = chooseSplits(samples, partitions);
  const ranges: ShuffleRange[] = [];
  for (const r of runs) {
    let start = 0;
    for (let p = 0; p <= splits.length; p++) {
      const end = p < splits.length ? await firstAtOrAbove(r.file, start, r.bytes, r.index.marks, splits[p]) : r.bytes;
      ranges.push({ part: p, seq: r.seq, offset: start, length: end - start });
      start = end;
    }
  }
  const words = (k: Buffer) => JSON.stringify(k.length > 40 ? `${k.toString("utf8", 0, 40)}...` : k.toString("utf8"));
  const keyRange = (p: number): string =>
    splits.length === 0 ? "all keys"
    : p === 0 ? `keys before ${words(splits[0])}`
    : p === splits.length ? `keys from ${words(splits[p - 1])} on`
    : `keys from ${words(splits[p - 1])} to before ${words(splits[p])}`;
  return { partitions: Array.from({ length: splits.length + 1 }, (_, p) => ({ keyRange: keyRange(p) })), ranges };
}

/**
 * What a map attempt says of its run, checked before it may commit: a worker's numbers are not trusted
 * to index a file. Returns the index, or why it cannot be used.
 */
export function checkRunIndex(index: RunIndex, bytes: number, order: "hash" | "total", partitions: number): RunIndex | string {
  const increasing = (xs: number[], strictly: boolean) => xs.every((x, i) => Number.isSafeInteger(x) && x >= 0 && x <= bytes && (i === 0 || (strictly ? x > xs[i - 1] : x >= xs[i - 1])));
  if (order === "hash") {
    if (index.partitionEnds.length !== partitions) return `its run has ${index.partitionEnds.length} partition ends, not ${partitions}`;
    if (!increasing(index.partitionEnds, false) || index.partitionEnds[partitions - 1] !== bytes) return "its run's partition ends are not in order, or do not end at its size";
    return { partitionEnds: index.partitionEnds, marks: [] };
  }
  // A mark every 64 KiB is what workers write; one every few KiB would only make planning read more.
  if (index.marks.length > Math.ceil(bytes / MIN_MARK_SPACING) + 1) return `its run has ${index.marks.length} marks for ${bytes} bytes`;
  if (!increasing(index.marks, true) || index.marks.some((m) => m >= bytes) || (bytes > 0 && index.marks[0] !== 0)) return "its run's marks are not in order within it";
  return { partitionEnds: [], marks: index.marks };
}
