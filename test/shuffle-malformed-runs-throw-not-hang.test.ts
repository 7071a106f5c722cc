// A malformed run (truncated, a lying length, a key longer than its record, "same key" with nothing
// before it, random bytes) makes every reader throw an Error saying "malformed run" and the byte offset,
// never a RangeError, never a hang; and a sort or merge that fails leaves no temp file behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { MalformedRunError, firstAtOrAbove, keyAt, mergeRuns, sortToRun } from "../core/shuffle";
import { assertHolds, cases, collect, decodeRun, frameSizes, framed, tempDir, type Case } from "./shuffle-model";

async function runOf(c: Case, dir: string): Promise<Buffer> {
  fs.writeFileSync(path.join(dir, "map-output"), c.input);
  await sortToRun(path.join(dir, "map-output"), path.join(dir, "run"), { delimiter: c.delimiter, key: c.key, partitions: null, tmpDir: dir, spillBytes: 300, fanIn: 2 });
  fs.rmSync(path.join(dir, "map-output"));
  const run = fs.readFileSync(path.join(dir, "run"));
  fs.rmSync(path.join(dir, "run"));
  return run;
}

/** Merges `bad` among good copies of itself (fanIn 2: temp group runs exist when it fails); returns the error. */
async function mergeFails(bad: Buffer, good: Buffer, c: Case, dir: string, sizes: number[]): Promise<MalformedRunError> {
  const sources = [framed(good, sizes), framed(good, sizes), framed(bad, sizes), framed(good, sizes)];
  const error = await collect(mergeRuns(sources, { delimiter: c.delimiter, tmpDir: dir, fanIn: 2, frameBytes: 7 })).then(
    () => assert.fail("the merge took a malformed run"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof MalformedRunError, `${String(error)}`);
  assert.match(error.message, /^malformed run: .* at byte \d+ of source 2$/);
  assertHolds(dir, []);
  return error;
}

const withRecords = cases.filter((c) => c.input.length > 0);

test("a truncated run, a lying length, a key longer than its record, a first 'same key' each throw, naming the record's offset", async () => {
  await fc.assert(
    fc.asyncProperty(withRecords, fc.nat(), fc.nat(), frameSizes, async (c, pickRecord, pickCut, sizes) => {
      const dir = tempDir();
      try {
        const run = await runOf(c, dir);
        const records = decodeRun(run);
        const r = records[pickRecord % records.length];
        const end = r.offset + 8 + r.bytes.length;
        // Truncated inside record r (after its first byte, before its end).
        const cut = r.offset + 1 + (pickCut % (end - r.offset - 1));
        assert.equal((await mergeFails(run.subarray(0, cut), run, c, dir, sizes)).offset, r.offset);
        // Its length says more bytes than the run has.
        const lying = Buffer.from(run);
        lying.writeUInt32LE(run.length - r.offset - 8 + 1 + (pickCut % 1000), r.offset);
        assert.equal((await mergeFails(lying, run, c, dir, sizes)).offset, r.offset);
        // Its key is longer than it (a length below the flag).
        const longKey = Buffer.from(run);
        longKey.writeUInt32LE(r.bytes.length + 1 + (pickCut % 1000), r.offset + 4);
        assert.equal((await mergeFails(longKey, run, c, dir, sizes)).offset, r.offset);
        // The first record says "same key as the previous".
        const flagged = Buffer.from(run);
        flagged.writeUInt32LE(0xffffffff, 4);
        assert.equal((await mergeFails(flagged, run, c, dir, sizes)).offset, 0);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 80 },
  );
});

test("random bytes as a run are read or refused with 'malformed run', by the merge and by keyAt and firstAtOrAbove", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 200, size: "max" }), fc.array(fc.nat({ max: 200 }), { maxLength: 4 }), frameSizes, async (bytes, marks, sizes) => {
      const dir = tempDir();
      try {
        const bad = Buffer.from(bytes);
        const refusedOrRead = (e: unknown) => assert.ok(e instanceof MalformedRunError && /malformed run/.test(e.message), `${String(e)}`);
        await collect(mergeRuns([framed(bad, sizes), framed(bad, sizes), framed(bad, sizes)], { delimiter: Buffer.from("\n"), tmpDir: dir, fanIn: 2 })).catch(refusedOrRead);
        assertHolds(dir, []);
        fs.writeFileSync(path.join(dir, "run"), bad);
        const sorted = marks.slice().sort((a, b) => a - b);
        await keyAt(path.join(dir, "run"), sorted[0] ?? 0).catch(refusedOrRead);
        await firstAtOrAbove(path.join(dir, "run"), 0, bad.length, sorted, Buffer.from([0x80])).catch(refusedOrRead);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 500 },
  );
});

test("keyAt refuses an offset past the end and a record that does not carry its key", async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, "in"), "a\na\n");
    const info = await sortToRun(path.join(dir, "in"), path.join(dir, "run"), { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields: 1 }, partitions: null, tmpDir: dir });
    assert.equal(info.bytes, 18);
    await assert.rejects(keyAt(path.join(dir, "run"), 9), /malformed run: the record does not carry its key at byte 9/);
    await assert.rejects(keyAt(path.join(dir, "run"), 18), /malformed run: no record header .* at byte 18/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a 'same key' record shorter than that key is refused", async () => {
  const dir = tempDir();
  try {
    const header = (length: number, keyLength: number) => {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(length, 0);
      h.writeUInt32LE(keyLength, 4);
      return h;
    };
    const run = Buffer.concat([header(3, 3), Buffer.from("abc"), header(1, 0xffffffff), Buffer.from("a")]);
    await assert.rejects(collect(mergeRuns([framed(run, [5])], { delimiter: Buffer.from("\n"), tmpDir: dir })), /malformed run: .* at byte 11 of source 0/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a sort that fails after spilling leaves neither temp files nor a part of its output", async () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, "in"), "c\nb\na\nd\n".repeat(50));
    const o = { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields: 1 }, partitions: null, tmpDir: dir, spillBytes: 16, fanIn: 2 };
    await assert.rejects(sortToRun(path.join(dir, "in"), path.join(dir, "no-such-dir", "run"), o), /ENOENT/);
    assertHolds(dir, ["in"]);
    // An input that cannot be read (a directory): nothing is left either.
    await assert.rejects(sortToRun(dir, path.join(dir, "run"), o), /EISDIR/);
    assertHolds(dir, ["in"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
