// Ordering one spill's records in memory, two ways, both stable and neither calling a comparator per
// pair of records: ranks of distinct keys (few keys: a counting sort by rank) and an MSD radix sort on
// packed key digits (many keys). Pure functions over a spill's buffer and index; no I/O.
import { latin1 } from "./shuffle-keys";

/**
 * Ranks distinct keys (each given by a representative's bytes) in byte order, or in (partition, key)
 * order when `partitionOfId` is given. latin1 strings make JS string order byte order, so a sort
 * with no comparator (native string compares) does it.
 */
export function rankKeys(data: Buffer, repStart: Uint32Array, repEnd: Uint32Array, count: number, partitionOfId: Uint32Array | null): Uint32Array {
  const rankOfId = new Uint32Array(count);
  const byString = new Map<string, number>();
  const keys: string[] = new Array<string>(count);
  for (let id = 0; id < count; id++) {
    let k = latin1(data, repStart[id], repEnd[id]);
    // Two 16-bit units of partition before the key: string order is then (partition, key) order.
    if (partitionOfId !== null) k = String.fromCharCode(partitionOfId[id] >>> 16, partitionOfId[id] & 0xffff) + k;
    keys[id] = k;
    byString.set(k, id);
  }
  keys.sort();
  for (let r = 0; r < count; r++) rankOfId[byString.get(keys[r]) as number] = r;
  return rankOfId;
}

/** Key bytes per radix digit: 5 bytes, 3 bits of "bytes present" and 21 bits of record number fill 64. */
const DIGIT_BYTES = 5;
const RECORD_BITS = 21;
/** The most records one radix sort can order (record numbers in a packed digit). */
export const RADIX_MOST_RECORDS = 1 << RECORD_BITS;
/** Groups this small are finished by insertion sort on whole keys rather than another radix round. */
const SMALL_GROUP = 16;

/** Scratch memory for radixOrder, kept from spill to spill. */
export class RadixScratch {
  readonly packed: BigUint64Array;
  readonly words: Uint32Array;

  constructor(readonly capacity: number) {
    this.packed = new BigUint64Array(capacity);
    this.words = new Uint32Array(this.packed.buffer);
  }
}

/**
 * Sorts order[from, to) (record numbers, ascending within ties; record i's key is data[records[2i],
 * records[2i+1])) by key, stably. Each round packs, per record, the key's next 5 bytes (zero-padded),
 * how many of them the key has (0-5: a key that ends sorts before one that goes on with zero bytes) and
 * the record number, into a u64, and sorts those natively (BigUint64Array.prototype.sort: no
 * comparator); the record number breaks ties, so the sort is stable. Records whose digits tie and whose
 * keys go on take another round on the next 5 bytes; small groups an insertion sort. An explicit stack:
 * keys may be megabytes long. `equalBytes`: the keys are known equal in that many first bytes.
 */
export function radixOrder(data: Buffer, records: Uint32Array, order: Uint32Array, from: number, to: number, scratch: RadixScratch, equalBytes = 0): void {
  const { packed, words } = scratch;
  const stack: number[] = [from, to, 0];
  while (stack.length > 0) {
    const depth = stack.pop() as number;
    const b = stack.pop() as number;
    const a = stack.pop() as number;
    const skip = equalBytes + depth * DIGIT_BYTES;
    if (b - a <= SMALL_GROUP) {
      insertionSort(data, records, order, a, b, skip);
      continue;
    }
    for (let k = a; k < b; k++) {
      const i = order[k];
      const s = records[2 * i] + skip;
      const present = Math.max(0, Math.min(DIGIT_BYTES, records[2 * i + 1] - s));
      let hi = 0;
      for (let j = 0; j < 4; j++) hi = hi * 256 + (j < present ? data[s + j] : 0);
      const fifth = present === DIGIT_BYTES ? data[s + 4] : 0;
      const w = 2 * (k - a);
      words[w] = ((fifth << 24) | (present << RECORD_BITS) | i) >>> 0;
      words[w + 1] = hi;
    }
    const n = b - a;
    packed.subarray(0, n).sort();
    for (let j = 0; j < n; j++) order[a + j] = words[2 * j] & (RADIX_MOST_RECORDS - 1);
    // Tied digits of 5 present bytes, with a key going on: another round.
    for (let g = 0; g < n; ) {
      const hi = words[2 * g + 1];
      const top = words[2 * g] >>> RECORD_BITS;
      let e = g + 1;
      while (e < n && words[2 * e + 1] === hi && words[2 * e] >>> RECORD_BITS === top) e++;
      if (e - g > 1 && (top & 7) === DIGIT_BYTES && goesOn(records, order, a + g, a + e, skip + DIGIT_BYTES)) stack.push(a + g, a + e, depth + 1);
      g = e;
    }
  }
}

function goesOn(records: Uint32Array, order: Uint32Array, a: number, b: number, length: number): boolean {
  for (let k = a; k < b; k++) if (records[2 * order[k] + 1] - records[2 * order[k]] > length) return true;
  return false;
}

/** Stable: a record moves only past keys strictly greater. Keys are known equal in their first `skip` bytes. */
function insertionSort(data: Buffer, records: Uint32Array, order: Uint32Array, a: number, b: number, skip: number): void {
  for (let k = a + 1; k < b; k++) {
    const i = order[k];
    let j = k - 1;
    while (j >= a && compareKeys(data, records, order[j], i, skip) > 0) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = i;
  }
}

/** Key of record x against key of record y, from byte `skip` on: a JS loop, as keys here are short and native calls dear. */
function compareKeys(data: Buffer, records: Uint32Array, x: number, y: number, skip: number): number {
  const xs = records[2 * x];
  const ys = records[2 * y];
  const xl = records[2 * x + 1] - xs;
  const yl = records[2 * y + 1] - ys;
  const l = Math.min(xl, yl);
  for (let j = skip; j < l; j++) {
    const c = data[xs + j] - data[ys + j];
    if (c !== 0) return c;
  }
  return xl - yl;
}
