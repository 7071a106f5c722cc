// The shuffle's keys: where a record's key ends, how keys order, and which reducer a key goes to.
// Pure functions over bytes. Every machine must agree on all of this, so none of it may ever change.

export interface KeySpec {
  separator: Buffer;
  /** The key is the first `fields` fields (>= 1). */
  fields: number;
}

/** FNV-1a, 32 bits: offset basis 2166136261 (0x811c9dc5), prime 16777619 (0x01000193). */
export const FNV_OFFSET_BASIS = 0x811c9dc5;
export const FNV_PRIME = 0x01000193;

/**
 * The hash partition (reducer) of a key: FNV-1a 32 over its bytes, modulo `partitions`. It decides
 * which reducer gets a key on every machine and in every run ever written: never change it.
 */
export function partitionOf(key: Buffer, partitions: number): number {
  return fnv1a(key, 0, key.length) % partitions;
}

/** FNV-1a 32 of buf[start, end), as an unsigned number. */
export function fnv1a(buf: Buffer, start: number, end: number): number {
  let h = FNV_OFFSET_BASIS;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], FNV_PRIME);
  return h >>> 0;
}

/**
 * Where the key of the record buf[start, end) ends: at the `fields`-th occurrence of the separator
 * (occurrences found left to right, without overlap, as the delimiter's are), or at `end` when the
 * record has fewer. A JS loop, not indexOf: indexOf cannot be told to stop at the record's end, and a
 * record without a separator would send it through the rest of the buffer. (A spill's parse has its
 * own loop for a one-byte separator, which also hashes the key.)
 */
export function keyEnd(buf: Buffer, start: number, end: number, key: KeySpec): number {
  const separator = key.separator;
  let left = key.fields;
  const first = separator[0];
  const last = end - separator.length;
  for (let i = start; i <= last; ) {
    if (buf[i] === first && matchesAt(buf, i, separator)) {
      if (--left === 0) return i;
      i += separator.length;
    } else i++;
  }
  return end;
}

function matchesAt(buf: Buffer, at: number, pattern: Buffer): boolean {
  for (let j = 1; j < pattern.length; j++) if (buf[at + j] !== pattern[j]) return false;
  return true;
}

/**
 * The key's first six bytes as a number (zero-padded): two keys whose prefixes differ order as their
 * prefixes do, so a merge compares numbers and calls Buffer.compare only on a tie. Six bytes fit a
 * double exactly (48 bits).
 */
export function keyPrefix(buf: Buffer, start: number, end: number): number {
  let p = 0;
  for (let i = 0; i < PREFIX_BYTES; i++) p = p * 256 + (start + i < end ? buf[start + i] : 0);
  return p;
}
export const PREFIX_BYTES = 6;

/** Throws on options no sort could honour: an empty delimiter or separator, fields below 1. */
export function checkRecordOptions(delimiter: Buffer, key?: KeySpec): void {
  if (delimiter.length === 0) throw new Error("shuffle: the record delimiter is empty");
  if (key === undefined) return;
  if (key.separator.length === 0) throw new Error("shuffle: the key separator is empty");
  if (!Number.isInteger(key.fields) || key.fields < 1) throw new Error(`shuffle: key fields must be a whole number >= 1, not ${key.fields}`);
}

type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };

/**
 * buf[start, end) as a string of one UTF-16 unit per byte, so that JS string order is byte order.
 * Node's Buffer has latin1Slice (what toString("latin1") calls after its argument checks, which cost
 * about a third of the sort's time on short keys); @types/node does not declare it.
 */
export const latin1: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as Partial<Latin1Buffer>).latin1Slice === "function"
    ? (buf, start, end) => (buf as Latin1Buffer).latin1Slice(start, end)
    : (buf, start, end) => buf.toString("latin1", start, end);
