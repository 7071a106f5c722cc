// The shuffle tests' model and tools: records split and stably sorted in memory (what sort -s does),
// a run decoder written apart from core's reader, sources that hand a run over in frames of any size
// through one reused buffer, and inputs rich in separator and delimiter bytes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import fc from "fast-check";
import { partitionOf, type KeySpec } from "../core/shuffle";

export function splitRecords(input: Buffer, delimiter: Buffer): Buffer[] {
  const records: Buffer[] = [];
  let from = 0;
  for (let i = input.indexOf(delimiter, from); i >= 0; i = input.indexOf(delimiter, from)) {
    records.push(input.subarray(from, i));
    from = i + delimiter.length;
  }
  if (from < input.length) records.push(input.subarray(from));
  return records;
}

export function keyOf(record: Buffer, key: KeySpec): Buffer {
  let at = 0;
  for (let field = 1; ; field++) {
    const i = record.indexOf(key.separator, at);
    if (i < 0) return record;
    if (field === key.fields) return record.subarray(0, i);
    at = i + key.separator.length;
  }
}

/** Stable (Array.prototype.sort is), by key bytes; by (partition, key) when hashing. */
export function modelSort(records: Buffer[], key: KeySpec, partitions: number | null = null): Buffer[] {
  const keyed = records.map((record) => {
    const k = keyOf(record, key);
    return { record, key: k, partition: partitions === null ? 0 : partitionOf(k, partitions) };
  });
  keyed.sort((a, b) => a.partition - b.partition || a.key.compare(b.key));
  return keyed.map((k) => k.record);
}

export function plain(records: Buffer[], delimiter: Buffer): Buffer {
  return Buffer.concat(records.flatMap((r) => [r, delimiter]));
}

export interface DecodedRecord {
  offset: number;
  bytes: Buffer;
  /** null: the same-key flag. */
  keyLength: number | null;
}

/** A run file's records, decoded with nothing from core. */
export function decodeRun(run: Buffer): DecodedRecord[] {
  const records: DecodedRecord[] = [];
  for (let at = 0; at < run.length; ) {
    assert.ok(at + 8 <= run.length, `header at ${at}`);
    const length = run.readUInt32LE(at);
    const keyLength = run.readUInt32LE(at + 4);
    assert.ok(at + 8 + length <= run.length, `record at ${at}`);
    records.push({ offset: at, bytes: run.subarray(at + 8, at + 8 + length), keyLength: keyLength === 0xffffffff ? null : keyLength });
    at += 8 + length;
  }
  return records;
}

/** A source giving `bytes` in frames of the given sizes (cycled), all through one reused buffer, as a socket's ring would. */
export function framed(bytes: Buffer, sizes: number[]): () => AsyncIterable<Buffer> {
  return async function* () {
    const ring = Buffer.alloc(Math.max(...sizes, 1));
    for (let at = 0, k = 0; at < bytes.length; k++) {
      const n = Math.min(sizes[k % sizes.length], bytes.length - at);
      bytes.copy(ring, 0, at, at + n);
      ring.fill(0xee, n); // stale bytes past the frame must never be read
      at += n;
      yield ring.subarray(0, n);
      ring.fill(0xdd); // a frame kept past the next request would read this
    }
  };
}

/** Copies every frame (they may be reused) and checks none is bigger than `most`. */
export async function collect(frames: AsyncIterable<Buffer>, most = Infinity): Promise<Buffer> {
  const kept: Buffer[] = [];
  for await (const f of frames) {
    assert.ok(f.length <= most, `a frame of ${f.length} bytes, more than ${most}`);
    kept.push(Buffer.from(f));
  }
  return Buffer.concat(kept);
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "bach-shuffle-test-"));
}

/** The directory holds exactly `names`: nothing the shuffle made for itself is left. */
export function assertHolds(dir: string, names: string[]): void {
  assert.deepEqual(fs.readdirSync(dir).sort(), names.slice().sort());
}

export const delimiters = ["\n", "\0", "\r\n", "ab", "\n\n"].map((d) => Buffer.from(d, "latin1"));
export const separators = ["\t", ",", "::", "b", "a\t"].map((s) => Buffer.from(s, "latin1"));

// Lists of records get size "max": fast-check's default size caps every array at 10 elements,
// whatever its maxLength, and a spill needs more records than that to reach the radix rounds.

/** Bytes that make edges: the separator, the delimiter and its bytes, high bytes, a few letters. */
function tokens(delimiter: Buffer, separator: Buffer): fc.Arbitrary<Buffer> {
  const bytes = [...new Set([...delimiter, ...separator, 0x61, 0x62, 0x63, 0x00, 0x7f, 0x80, 0xe9, 0xff])].map((b) => Buffer.from([b]));
  return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...bytes) }, { weight: 2, arbitrary: fc.constant(separator) }, { weight: 1, arbitrary: fc.constant(delimiter) });
}

export interface Case {
  delimiter: Buffer;
  key: KeySpec;
  input: Buffer;
}

/**
 * Inputs of records made of edge tokens: keys that are prefixes of each other, empty keys, records
 * with fewer fields, empty records, with or without a final delimiter, and sometimes one key holding
 * half of the records.
 */
export const cases: fc.Arbitrary<Case> = fc
  .record({ delimiter: fc.constantFrom(...delimiters), separator: fc.constantFrom(...separators), fields: fc.integer({ min: 1, max: 3 }) })
  .chain(({ delimiter, separator, fields }) =>
    fc
      .record({
        records: fc.array(fc.array(tokens(delimiter, separator), { maxLength: 7 }).map((t) => Buffer.concat(t)), { maxLength: 60, size: "max" }),
        trailing: fc.boolean(),
        heavy: fc.option(fc.array(tokens(delimiter, separator), { maxLength: 3 }).map((t) => Buffer.concat(t))),
      })
      .map(({ records, trailing, heavy }) => {
        // The heavy records share a key (their first `fields` fields) and differ after it: stability shows.
        const heavyRecord = (i: number) => Buffer.concat([heavy ?? Buffer.alloc(0), ...Array<Buffer>(fields).fill(separator), Buffer.from(String(i))]);
        const all = heavy === null ? records : records.flatMap((r, i) => [heavyRecord(i), r]);
        const input = Buffer.concat(all.flatMap((r, i) => (i < all.length - 1 || trailing ? [r, delimiter] : [r])));
        return { delimiter, key: { separator, fields }, input };
      }),
  );

/** Tiny spills (a spill a record: slow, so less often), spills of a few dozen records (more distinct keys than ranks are for: radix), one spill. */
export const spillBytes = fc.oneof({ weight: 1, arbitrary: fc.constantFrom(1, 7, 16) }, { weight: 4, arbitrary: fc.constantFrom(64, 300, 1000, 1 << 20) });
export const fanIn = fc.constantFrom(2, 3, 16);
export const frameSizes = fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 });
