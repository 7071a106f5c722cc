// Planning total-order partitions on the coordinator: split keys chosen from weighted samples, and
// where each map run is cut at them. Reads only a record's header and key, or a stretch of up to
// markEvery bytes after a mark; never a whole run.
import fs from "node:fs";
import { filePieces } from "./file-pieces";
import { MalformedRunError, RunReader, readU32 } from "./shuffle-read";
import { HEADER_BYTES, SAME_KEY } from "./shuffle-write";

const SCAN_BYTES = 64 * 1024;

/** The key of the record at `offset` of a run file (which must carry its key). Small synchronous reads: a header and a key. */
export async function keyAt(file: string, offset: number): Promise<Buffer> {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    if (!Number.isInteger(offset) || offset < 0 || offset + HEADER_BYTES > size) throw new MalformedRunError(`no record header (the run has ${size} bytes)`, offset, file);
    const header = Buffer.alloc(HEADER_BYTES);
    readFully(fd, header, offset);
    const length = readU32(header, 0);
    const keyLength = readU32(header, 4);
    if (keyLength === SAME_KEY) throw new MalformedRunError("the record does not carry its key", offset, file);
    if (keyLength > length) throw new MalformedRunError(`a key of ${keyLength} bytes in a record of ${length}`, offset, file);
    if (offset + HEADER_BYTES + length > size) throw new MalformedRunError(`a record of ${length} bytes past the run's end (${size})`, offset, file);
    const key = Buffer.alloc(keyLength);
    readFully(fd, key, offset + HEADER_BYTES);
    return key;
  } finally {
    fs.closeSync(fd);
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  for (let at = 0; at < into.length; ) {
    const n = fs.readSync(fd, into, at, into.length - at, position + at);
    if (n === 0) throw new Error(`shuffle: the run ended while reading at byte ${position + at}`);
    at += n;
  }
}

/**
 * Offset of the first record in [start, end) whose key >= `key` (end when none), using marks (sorted
 * record-start offsets that carry keys) to binary-search, then scanning forward from the nearest mark.
 * `start` must be a record that carries its key. The offset returned, when inside the run, is such a
 * record too: either `start`, or the first record of a greater key, which carries its key by the run
 * format's rule.
 */
export async function firstAtOrAbove(file: string, start: number, end: number, marks: number[], key: Buffer): Promise<number> {
  if (start >= end) return end;
  if ((await keyAt(file, start)).compare(key) >= 0) return start;
  // The marks strictly inside (start, end): find the last whose key is below `key`.
  let lo = upperBound(marks, start);
  let hi = lowerBound(marks, end);
  let from = start;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((await keyAt(file, marks[mid])).compare(key) < 0) {
      from = marks[mid];
      lo = mid + 1;
    } else hi = mid;
  }
  const reader = new RunReader(filePieces(file, from, end, SCAN_BYTES), file, null, from);
  try {
    for (;;) {
      if (!reader.step()) {
        await reader.load();
        if (reader.done) return end;
      }
      if (!reader.same && reader.key.compare(key, 0, key.length, reader.keyStart, reader.keyEnd) >= 0) return reader.offset;
    }
  } finally {
    await reader.close();
  }
}

/** Index of the first element >= x. */
function lowerBound(sorted: number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element > x. */
function upperBound(sorted: number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * P-1 (or fewer, when there are not enough distinct keys) strictly increasing split keys so that
 * partitions get about equal weight: partition 0 = keys < split[0], partition i = split[i-1] <= key <
 * split[i], last = key >= split[last]. Split i is the distinct sampled key whose weight before it (the
 * weight of smaller keys) is nearest (i+1)/P of the total; a split that would repeat the previous one
 * is dropped, so a heavy key makes fewer, not empty, partitions.
 */
export function chooseSplits(samples: { key: Buffer; weight: number }[], partitions: number): Buffer[] {
  if (partitions <= 1 || samples.length === 0) return [];
  const sorted = samples.slice().sort((a, b) => a.key.compare(b.key));
  const keys: Buffer[] = [];
  /** before[j]: the weight of keys smaller than keys[j]. */
  const before: number[] = [];
  let total = 0;
  for (const s of sorted) {
    if (!(s.weight >= 0) || !Number.isFinite(s.weight)) throw new Error(`shuffle: a sample's weight must be a finite number >= 0, not ${s.weight}`);
    if (keys.length === 0 || !keys[keys.length - 1].equals(s.key)) {
      keys.push(s.key);
      before.push(total);
    }
    total += s.weight;
  }
  const splits: Buffer[] = [];
  let previous = 0; // keys[0] never splits: partition 0 would be empty
  for (let i = 1; i < partitions; i++) {
    const target = (i * total) / partitions;
    let j = lowerBound(before, target);
    if (j > 0 && (j === keys.length || target - before[j - 1] <= before[j] - target)) j--;
    if (j <= previous) continue;
    splits.push(Buffer.from(keys[j]));
    previous = j;
  }
  return splits;
}
