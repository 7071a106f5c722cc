// --output DIR/ and --output s3://bucket/prefix/: one part a chunk, in input order, whose bytes together
// are what stdout would have had, then _SUCCESS.json listing every part with its size and sha256, and
// nothing else. An earlier output is refused without --overwrite and replaced whole with it; a task
// that fails leaves neither a manifest nor any part, nor a half-written folder beside the target.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { ListObjectsV2Command, GetObjectCommand } from "@aws-sdk/client-s3";
import { runBach, startCluster, taskFolder, tempDir } from "./harness";
import { putObjects, s3Client, startS3, type S3Server } from "./s3";

interface Manifest {
  task: string;
  parts: { name: string; bytes: number; sha256: string }[];
  bytes: number;
}

const input = path.join(tempDir(), "in.tsv");
fs.writeFileSync(input, Array.from({ length: 30000 }, (_, i) => `row ${i}\t${"x".repeat(i % 50)}\n`).join(""));
const upper = taskFolder({ "logical-name": "upper", binary: "tr", args: ["a-z", "A-Z"] });
const expected = Buffer.from(fs.readFileSync(input, "latin1").toUpperCase(), "latin1");
// Fails every attempt of the chunk holding row 20000.
const failing = taskFolder({ "logical-name": "fails", binary: "sh", args: ["-c", "tr a-z A-Z > /tmp/.bach-out-$$; if grep -q '^ROW 20000\t' /tmp/.bach-out-$$; then rm /tmp/.bach-out-$$; exit 3; fi; cat /tmp/.bach-out-$$; rm /tmp/.bach-out-$$"], retries: 0 });

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function checkFolder(dir: string): Manifest {
  const m = JSON.parse(fs.readFileSync(path.join(dir, "_SUCCESS.json"), "utf8")) as Manifest;
  assert.deepEqual(fs.readdirSync(dir).sort(), [...m.parts.map((p) => p.name), "_SUCCESS.json"].sort(), "the parts and the manifest, nothing else");
  const parts = m.parts.map((p) => {
    const b = fs.readFileSync(path.join(dir, p.name));
    assert.equal(b.length, p.bytes);
    assert.equal(sha(b), p.sha256);
    return b;
  });
  assert.ok(Buffer.concat(parts).equals(expected), "the parts in order are the output");
  assert.deepEqual(m.parts.map((p) => p.name), m.parts.map((_, i) => `part-${String(i).padStart(6, "0")}`));
  return m;
}

const besides = (dir: string) => fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith(`${path.basename(dir)}.bach-`));

describe("a folder", () => {
  test("one part a chunk and a manifest; refused again without --overwrite; replaced whole with it", async () => {
    const out = path.join(tempDir(), "out");
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", "--data", input, "--output", `${out}/`], { cwd: upper });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 0, "nothing on stdout");
    const m = checkFolder(out);
    assert.ok(m.parts.length >= 4, `${m.parts.length} parts`);
    assert.match(r.stderr, new RegExp(`^bach: output: ${m.parts.length} parts, .* in ${out}/ \\(_SUCCESS\\.json lists them\\)$`, "m"));

    const again = await runBach(["task-run", "--data", input, "--output", out], { cwd: upper });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr.trim(), /^bach: --output \S+: holds the output of an earlier run; add --overwrite to replace it$/);

    const replaced = await runBach(["task-run", "-p", "2", "--chunk-size", "256k", "--data", input, "--output", out, "--overwrite"], { cwd: upper });
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.ok(checkFolder(out).parts.length < m.parts.length, "fewer, bigger parts: the old ones are gone");
    assert.deepEqual(besides(out), [], "no half-written folder is left beside it");
  });

  test("a task that fails leaves no manifest, no part, and the earlier output as it was", async () => {
    const out = path.join(tempDir(), "out");
    const fresh = await runBach(["task-run", "--chunk-size", "64k", "--data", input, "--output", out, "-p", "2"], { cwd: failing });
    assert.equal(fresh.code, 1, fresh.stderr);
    assert.ok(!fs.existsSync(out), "no output folder");
    assert.deepEqual(besides(out), []);
    const good = await runBach(["task-run", "--chunk-size", "64k", "--data", input, "--output", out], { cwd: upper });
    assert.equal(good.code, 0, good.stderr);
    const before = fs.readFileSync(path.join(out, "_SUCCESS.json"));
    const bad = await runBach(["task-run", "--chunk-size", "64k", "--data", input, "--output", out, "--overwrite"], { cwd: failing });
    assert.equal(bad.code, 1, bad.stderr);
    assert.ok(fs.readFileSync(path.join(out, "_SUCCESS.json")).equals(before), "the earlier output stands");
    checkFolder(out);
    assert.deepEqual(besides(out), []);
  });

  test("a folder with other files is refused with one line", async () => {
    const out = tempDir();
    fs.writeFileSync(path.join(out, "notes.txt"), "mine");
    const r = await runBach(["task-run", "--data", input, "--output", out], { cwd: upper });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^bach: --output \S+: the folder holds other files than a Bach output; name a new or empty folder$/);
  });

  test("bach task-output --output writes a task's output from a coordinator", async () => {
    const cluster = await startCluster({ workers: 2, slots: 2 });
    try {
      const on = ["--coordinator", cluster.address, "--token", cluster.token];
      const r = await runBach(["task-run", ...on, "--chunk-size", "64k", "--data", input, "--detach"], { cwd: upper });
      assert.equal(r.code, 0, r.stderr);
      const out = path.join(tempDir(), "out");
      const o = await runBach(["task-output", r.stdout.toString().trim(), ...on, "--output", out], { cwd: upper });
      assert.equal(o.code, 0, o.stderr);
      checkFolder(out);
    } finally {
      await cluster.stop();
    }
  });
});

describe("an S3 prefix", () => {
  let s3: S3Server | null = null;
  before(async () => {
    s3 = await startS3();
    if (s3) await putObjects(s3, "bach-out", {});
  });
  after(() => s3?.stop());

  async function prefix(p: string): Promise<Map<string, Buffer>> {
    const client = s3Client(s3 as S3Server);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: "bach-out", Prefix: p }));
    const out = new Map<string, Buffer>();
    for (const o of listed.Contents ?? []) {
      const got = await client.send(new GetObjectCommand({ Bucket: "bach-out", Key: o.Key }));
      out.set((o.Key ?? "").slice(p.length), Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()));
    }
    return out;
  }

  test("parts and a manifest; --overwrite removes the old parts; a failed task leaves nothing", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    const env = { ...s3.env, AWS_EC2_METADATA_DISABLED: "true" };
    const r = await runBach(["task-run", "-p", "2", "--chunk-size", "64k", "--data", input, "--output", "s3://bach-out/run/"], { cwd: upper, env });
    assert.equal(r.code, 0, r.stderr);
    const check = async () => {
      const objects = await prefix("run/");
      const m = JSON.parse((objects.get("_SUCCESS.json") ?? Buffer.from("{}")).toString()) as Manifest;
      assert.deepEqual([...objects.keys()].sort(), [...m.parts.map((p) => p.name), "_SUCCESS.json"].sort());
      const parts = m.parts.map((p) => objects.get(p.name) ?? Buffer.alloc(0));
      m.parts.forEach((p, i) => assert.equal(sha(parts[i]), p.sha256));
      assert.ok(Buffer.concat(parts).equals(expected));
      return m;
    };
    const first = await check();
    const again = await runBach(["task-run", "--data", input, "--output", "s3://bach-out/run/"], { cwd: upper, env });
    assert.equal(again.code, 2, again.stderr);
    const replaced = await runBach(["task-run", "-p", "2", "--chunk-size", "256k", "--data", input, "--output", "s3://bach-out/run/", "--overwrite"], { cwd: upper, env });
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.ok((await check()).parts.length < first.parts.length);
    const failed = await runBach(["task-run", "--chunk-size", "64k", "--data", input, "--output", "s3://bach-out/failed/"], { cwd: failing, env });
    assert.equal(failed.code, 1, failed.stderr);
    assert.equal((await prefix("failed/")).size, 0, "no part, no manifest");
  });
});
