// A .zip archive given to --data is its members, each an object of its own named ARCHIVE!/MEMBER, in the
// archive's order: a stored member is split into chunks like a file, a deflated one is read whole and
// inflated, and a member read whole is checked against its CRC-32. The output is one run of the program
// over the members concatenated (the delimiter added after a member without one), wherever the archive
// lives: a local file (embedded, or streamed by the CLI to a cluster), an http server with Range, an
// S3 object read by workers without credentials. Archives are made by Info-ZIP's `zip`, as users make them.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { InputError } from "../core/errors";
import { openFileRange } from "../core/input-objects";
import { zipMembers } from "../core/zip";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";
import { startRangeServer, type RangeServer } from "./range-server";
import { putObjects, startS3, type S3Server } from "./s3";

const dir = tempDir("bach-zip-");
const lines = (seed: string, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `${seed}\t${i}\t${"é".repeat(i % 50)}\n`).join(""));
/** The members, in the order they are added to the archive. */
const contents: [string, Buffer][] = [
  ["a.tsv", lines("a", 8000)],
  ["dir/b.tsv", lines("b", 6000)],
  ["dir/c.tsv.gz", gzipSync(lines("c", 3000))],
  ["e.tsv", Buffer.alloc(0)],
  ["f.tsv", Buffer.from("f\tno newline at the end")],
];
const plain: Record<string, Buffer> = { "a.tsv": contents[0][1], "dir/b.tsv": contents[1][1], "dir/c.tsv.gz": lines("c", 3000), "e.tsv": Buffer.alloc(0), "f.tsv": contents[4][1] };
for (const [name, data] of contents) {
  fs.mkdirSync(path.join(dir, "src", path.dirname(name)), { recursive: true });
  fs.writeFileSync(path.join(dir, "src", name), data);
}

function zip(archive: string, args: string[], input?: Buffer): string {
  const r = spawnSync("zip", ["-q", ...args], { cwd: path.join(dir, "src"), input });
  assert.equal(r.status, 0, `zip ${args.join(" ")}: ${r.stderr}`);
  return path.join(dir, "src", archive);
}
// a.tsv deflated, the folder dir/ as an entry of its own, dir/b.tsv stored (-0: split like a file),
// dir/c.tsv.gz deflated over gzip, an empty member, and a member without a trailing newline.
const archive = zip("data.zip", ["data.zip", "a.tsv"]);
zip("data.zip", ["-0", "data.zip", "dir/", "dir/b.tsv"]);
zip("data.zip", ["data.zip", "dir/c.tsv.gz", "e.tsv", "f.tsv"]);
/** The members' records as one run of `cat` over them gives: the delimiter added after f.tsv's last record. */
const expected = Buffer.concat([plain["a.tsv"], plain["dir/b.tsv"], plain["dir/c.tsv.gz"], plain["f.tsv"]]);

// Written from a pipe, zip makes a zip64 entry whose sizes follow its data (a data descriptor).
const streamed = zip("streamed.zip", ["streamed.zip", "-"], lines("s", 5000));
const encrypted = zip("secret.zip", ["-P", "hunter2", "secret.zip", "a.tsv"]);
const bzip2 = zip("bz.zip", ["-Z", "bzip2", "bz.zip", "a.tsv"]);
const notZip = path.join(dir, "src", "not.zip");
fs.writeFileSync(notZip, lines("x", 100));
// A deflated member whose bytes were damaged after the archive was written.
const damaged = path.join(dir, "src", "damaged.zip");
{
  const bytes = fs.readFileSync(zip("one.zip", ["-0", "one.zip", "dir/b.tsv"]));
  const at = bytes.indexOf(Buffer.from("b\t3000\t"));
  bytes[at] = "B".charCodeAt(0);
  fs.writeFileSync(damaged, bytes);
}

const cat = taskFolder({ "logical-name": "cat", binary: "cat" });
// One run per object: its name and size.
const perObject = taskFolder({ "logical-name": "per-object", binary: "sh", args: ["-c", 'printf "%s %s\\n" "$BACH_OBJECT" "$(wc -c | tr -d " ")"'], input: "objects" });
const perMember = (name: string) =>
  contents
    .filter(([, data]) => data.length > 0)
    .map(([member]) => `${name}!/${member} ${plain[member].length}\n`)
    .join("");

const list = (file: string) => {
  const stat = fs.statSync(file);
  return zipMembers(file, stat.size, openFileRange(`file://${file}`, ""));
};

describe("the members of an archive", () => {
  test("in the archive's order, named ARCHIVE!/MEMBER, folders left out, stored or deflated", async () => {
    const members = await list(archive);
    assert.deepEqual(
      members.map((m) => [m.name.slice(archive.length), m.codec]),
      [
        ["!/a.tsv", "deflate"],
        ["!/dir/b.tsv", "stored"],
        ["!/dir/c.tsv.gz", "deflate"],
        ["!/e.tsv", "stored"],
        ["!/f.tsv", "stored"],
      ],
    );
    // A stored member's range of the archive is its bytes.
    const bytes = fs.readFileSync(archive);
    const b = members[1];
    assert.ok(bytes.subarray(b.offset, b.offset + b.size).equals(plain["dir/b.tsv"]));
  });

  test("an archive with more entries than the limit is refused before its directory is read", async () => {
    const stat = fs.statSync(archive);
    await assert.rejects(zipMembers(archive, stat.size, openFileRange(`file://${archive}`, ""), 3), /data\.zip: 6 entries, more than the 3 Bach reads from one archive/);
  });

  test("a member whose local header lies past the archive's end: a broken archive, said so", async () => {
    const bytes = fs.readFileSync(archive);
    // The first central directory entry's offset of its local header (46-byte header, offset at 42).
    const central = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    bytes.writeUInt32LE(bytes.length + 1000, central + 42);
    const file = path.join(dir, "src", "past-end.zip");
    fs.writeFileSync(file, bytes);
    await assert.rejects(list(file), (err: Error) => err instanceof InputError && /past-end\.zip: member a\.tsv: a broken local header \(.*past its end/.test(err.message));
  });

  test("a zip64 entry written from a pipe", async () => {
    const [m] = await list(streamed);
    assert.equal(m.name, `${streamed}!/-`);
  });

  test("an archive damaged anywhere lists its members or fails with an InputError naming it, never anything else", async () => {
    const bytes = fs.readFileSync(archive);
    const file = path.join(dir, "src", "fuzzed.zip");
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat({ max: bytes.length }), async (flips, cut) => {
        const damagedBytes = Buffer.from(bytes.subarray(0, Math.max(cut, bytes.length - 200)));
        for (const [at, value] of flips) if (at < damagedBytes.length) damagedBytes[at] = value;
        fs.writeFileSync(file, damagedBytes);
        try {
          const members = await list(file);
          for (const m of members) assert.ok(m.offset + m.size <= damagedBytes.length, "every member inside the archive");
        } catch (err) {
          assert.ok(err instanceof InputError, `not an InputError: ${(err as Error).stack}`);
          assert.match(err.message, /^--data \S*fuzzed\.zip: /);
        }
      }),
      { numRuns: 300 },
    );
  });

  for (const [what, file, why] of [
    ["not an archive", notZip, /not\.zip: not a zip archive that Bach can read/],
    ["an encrypted member", encrypted, /secret\.zip: member a\.tsv is encrypted/],
    ["a member compressed by bzip2", bzip2, /bz\.zip: member a\.tsv is compressed by method 12; Bach reads stored \(0\) and deflated \(8\) members/],
  ] as const) {
    test(`${what}: an InputError naming the archive`, async () => {
      await assert.rejects(list(file), (err: Error) => err instanceof InputError && why.test(err.message));
    });
  }
});

let server: RangeServer;
let plainServer: RangeServer;
before(async () => {
  const files = { "data.zip": archive, "streamed.zip": streamed };
  server = await startRangeServer(files);
  plainServer = await startRangeServer(files, { ranges: false });
});
after(async () => {
  await server.close();
  await plainServer.close();
});

describe("embedded", () => {
  test("a local archive, its stored member split into chunks: the members' records in order", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "16k", "--data", archive, "--data", streamed], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(Buffer.concat([expected, Buffer.from("\n"), lines("s", 5000)])));
  });

  test("an archive on an http server with Range, read by the workers", async () => {
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "16k", "--data", server.url("data.zip")], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /goes through/);
    assert.ok(r.stdout.equals(expected));
  });

  test('"input": "objects": one run per member with its name in BACH_OBJECT; empty members get none', async () => {
    const r = await runBach(["task-run", "-p", "2", "--data", archive], { cwd: perObject });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), perMember(archive));
  });

  test("a member whose bytes do not match its CRC-32 fails the task with one line naming it", async () => {
    const r = await runBach(["task-run", "--data", damaged], { cwd: perObject });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /damaged\.zip!\/dir\/b\.tsv: its bytes do not match the archive's CRC-32/);
    assert.doesNotMatch(r.stderr, /retr(y|ied)/i, "the same bytes fail every retry: none is made");
  });

  test("bad archives: one line, exit 2", async () => {
    for (const [args, line] of [
      [["--data", encrypted], /^bach: --data \S*secret\.zip: member a\.tsv is encrypted, which Bach cannot read$/],
      [["--data", notZip], /^bach: --data \S*not\.zip: not a zip archive that Bach can read/],
      [["--data", plainServer.url("data.zip")], /^bach: --data \S*data\.zip: a zip archive is read by ranges, and this server does not answer Range requests$/],
    ] as const) {
      const r = await runBach(["task-run", ...args], { cwd: cat });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), line);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });
});

describe("cluster on loopback", () => {
  let cluster: Cluster;
  let s3: S3Server | null = null;
  before(async () => {
    s3 = await startS3();
    if (s3) await putObjects(s3, "bach-zip", { "in/data.zip": fs.readFileSync(archive) });
    cluster = await startCluster({ slots: 2, coordinatorEnv: s3?.env });
    // Workers hold no credentials: they read the archive's ranges through presigned URLs.
    await cluster.addWorker({ env: { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" } });
    await cluster.addWorker({ env: { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" } });
  });
  after(async () => {
    await cluster.stop();
    await s3?.stop();
  });
  const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

  test("a local archive: its members read by the CLI and streamed", async () => {
    const r = await runBach(["task-run", ...on(), "--chunk-size", "16k", "--data", archive], { cwd: cat });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected));
    const bad = await runBach(["task-run", ...on(), "--data", damaged], { cwd: cat });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr.trim(), /^bach: --data \S*damaged\.zip!\/dir\/b\.tsv: its bytes do not match the archive's CRC-32/);
  });

  test("an archive in S3: each worker reads its members' ranges; per member with \"input\": \"objects\"", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    const env = { ...s3.env };
    const r = await runBach(["task-run", ...on(), "--chunk-size", "16k", "--data", "s3://bach-zip/in/data.zip"], { cwd: cat, env });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /goes through/);
    assert.ok(r.stdout.equals(expected));
    const o = await runBach(["task-run", ...on(), "--data", "s3://bach-zip/in/"], { cwd: perObject, env });
    assert.equal(o.code, 0, o.stderr);
    assert.equal(o.stdout.toString(), perMember("s3://bach-zip/in/data.zip"));
  });
});
