// The shuffle of map-reduce, Hadoop-Streaming style: what the rest of Bach imports. Its output order is
// exactly `map | LC_ALL=C sort -s -t SEP -k1,N | reduce`'s. Owns nothing but this list; the parts:
//   shuffle-keys.ts   records' keys, byte order, partitionOf (FNV-1a 32; must never change)
//   shuffle-write.ts  the run format and the sinks that write it (or plain records)
//   shuffle-read.ts   reading a run from frames of any size, checking every length
//   shuffle-merge.ts  the one stable k-way merge (map-side spills, reduce-side runs), bounded fan-in
//   shuffle-sort.ts   the map side: a map output file sorted into a run, in spills of bounded memory
//   shuffle-spill.ts  one spill read and parsed (records, keys, key ids through a hash table)
//   shuffle-spill-write.ts  one spill sorted into a file: few keys scattered by rank, many by radix
//   shuffle-order.ts  in-memory orders: ranks of distinct keys, radix sort on packed key digits
//   shuffle-plan.ts   the coordinator side: split keys for total order, and where runs cut at them
//
// Records: the input cut at leftmost delimiter matches, left to right; a final piece without a
// delimiter is a record when non-empty. Key: the record up to its fields-th separator (all of it when it
// has fewer), compared as bytes (Buffer.compare). Equal keys keep input order, then source order.
export { partitionOf, FNV_OFFSET_BASIS, FNV_PRIME, type KeySpec } from "./shuffle-keys";
export { SAME_KEY, type RunInfo } from "./shuffle-write";
export { MalformedRunError } from "./shuffle-read";
export { mergeRuns, mergeToRun, DEFAULT_FAN_IN, DEFAULT_FRAME_BYTES, DEFAULT_MARK_EVERY } from "./shuffle-merge";
export { sortToRun, sortToPlain, DEFAULT_SPILL_BYTES, type SortOptions } from "./shuffle-sort";
export { keyAt, firstAtOrAbove, chooseSplits } from "./shuffle-plan";
