// core/s3.ts against a real S3 server (radosgw, from scripts/s3-server), no mocks: head and list (pages,
// prefixes, key order), presigned GET with a byte range and after it expires, presigned PUT, put and get of
// buffers and streams of known and unknown length, delete; and every failure a user can cause is one
// InputError line naming the URL. Skips without radosgw, unless BACH_REQUIRE_S3=1.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, test, type TestContext } from "node:test";
import { InputError } from "../core/errors";
import { S3Store, parseS3Url } from "../core/s3";
import { putObjects, startS3, type S3Server } from "./s3";

const bucket = "bach-test";
const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let server: S3Server | null = null;
let store: S3Store;

before(async () => {
  server = await startS3();
  if (!server) return;
  Object.assign(process.env, server.env);
  store = await S3Store.open();
  await putObjects(server, bucket, {
    "many/sub/": Buffer.alloc(0), // a "folder" marker, as consoles make them
    "many/sub/x": Buffer.from("under the marker"),
    "other/y": Buffer.from("elsewhere"),
    "bytes/hundred": Buffer.from(Array.from({ length: 100 }, (_, i) => i)),
  });
});

after(() => server?.stop());

function serverOrSkip(t: TestContext): boolean {
  if (server) return true;
  t.skip("radosgw is not installed");
  return false;
}

/** Runs `fn` with these environment variables set (undefined: unset), then puts them back. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(vars);
  try {
    return await fn();
  } finally {
    set(saved);
  }
}

/** The promise fails with an InputError of one line: exactly `expected`. */
async function failsWith(promise: Promise<unknown>, expected: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof InputError, `not an InputError: ${(err as Error)?.stack ?? String(err)}`);
    assert.equal(err.message, expected);
    assert.ok(!err.message.includes("\n"));
    return true;
  });
}

test("an s3:// URL names a bucket and a key, or a prefix", () => {
  assert.equal(parseS3Url("/data/events.tsv"), null);
  assert.equal(parseS3Url("https://example.com/x"), null);
  assert.deepEqual(parseS3Url("s3://bucket/dir/events.tsv"), { bucket: "bucket", key: "dir/events.tsv" });
  assert.deepEqual(parseS3Url("s3://bucket/dir/"), { bucket: "bucket", key: "dir/" });
  assert.deepEqual(parseS3Url("s3://bucket"), { bucket: "bucket", key: "" });
  assert.throws(() => parseS3Url("s3://"), InputError);
  assert.throws(() => parseS3Url("s3:///key"), InputError);
  assert.throws(() => parseS3Url("s3://ab/key"), /"ab" is not a bucket name/);
});

test("loading core/s3 does not load the AWS SDK (the CLI starts without it)", () => {
  const r = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(path.join(__dirname, "..", "core", "s3.js"))}); console.log(Object.keys(require.cache).filter((k) => k.includes("aws-sdk")).length)`], { encoding: "utf8" });
  assert.equal(r.stderr, "");
  assert.equal(r.stdout.trim(), "0");
});

test("head and list see what was put: 1,500 keys over pages, by prefix, in key order, without folder markers", async (t) => {
  if (!serverOrSkip(t)) return;
  t.diagnostic(`scripts/s3-server started in ${server?.startMs} ms`);
  // 1,500 numbered keys, put last first, and a few whose byte order is not their order of insertion.
  const many: Record<string, Buffer> = { "many/sub/x": Buffer.from("under the marker") };
  for (let i = 1499; i >= 0; i--) many[`many/k${String(i).padStart(4, "0")}`] = Buffer.from(`record ${i}\n`);
  for (const key of ["many/ü", "many/a b", "many/Z"]) many[key] = Buffer.from(key);
  const began = Date.now();
  await putObjects(server as S3Server, bucket, many);
  t.diagnostic(`put ${Object.keys(many).length} objects in ${Date.now() - began} ms`);
  assert.deepEqual(await store.head(bucket, "many/k0042"), { size: many["many/k0042"].length, etag: md5(many["many/k0042"]) });
  const listed = await store.list(bucket, "many/");
  const expected = Object.keys(many).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  assert.equal(listed.length, 1504);
  assert.deepEqual(
    listed.map((o) => o.key),
    expected,
  );
  assert.deepEqual(listed.slice(0, 3).map((o) => o.key), ["many/Z", "many/a b", "many/k0000"]);
  assert.equal(listed.at(-1)?.key, "many/ü");
  for (const o of listed) assert.deepEqual(o, { key: o.key, size: many[o.key].length, etag: md5(many[o.key]) });
  assert.deepEqual((await store.list(bucket, "many/sub/")).map((o) => o.key), ["many/sub/x"]);
  assert.deepEqual((await store.list(bucket, "many/k149")).map((o) => o.key), Array.from({ length: 10 }, (_, i) => `many/k149${i}`));
});

test("resolve names one object, or every object under a prefix or in the bucket", async (t) => {
  if (!serverOrSkip(t)) return;
  const one = await store.resolve(`s3://${bucket}/other/y`);
  assert.deepEqual(one, [{ name: `s3://${bucket}/other/y`, bucket, key: "other/y", size: 9, etag: md5(Buffer.from("elsewhere")) }]);
  const sub = await store.resolve(`s3://${bucket}/many/sub/`);
  assert.deepEqual(sub.map((o) => o.name), [`s3://${bucket}/many/sub/x`]);
  const all = await store.resolve(`s3://${bucket}`);
  const names = new Set(all.map((o) => o.name));
  for (const key of ["bytes/hundred", "many/sub/x", "other/y"]) assert.ok(names.has(`s3://${bucket}/${key}`), key);
  assert.ok(!names.has(`s3://${bucket}/many/sub/`), "a folder marker is no object to read");
});

test("a presigned GET serves a byte range (206), and is refused (403) once it expires", async (t) => {
  if (!serverOrSkip(t)) return;
  const url = await store.presignGet(bucket, "bytes/hundred", 60);
  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.equal(Buffer.from(await whole.arrayBuffer()).length, 100);
  const range = await fetch(url, { headers: { Range: "bytes=10-19" } });
  assert.equal(range.status, 206);
  assert.deepEqual(Buffer.from(await range.arrayBuffer()), Buffer.from(Array.from({ length: 10 }, (_, i) => 10 + i)));

  const brief = await store.presignGet(bucket, "bytes/hundred", 1);
  // The server's clock decides: a URL valid for 1 s is past it 2 s later.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const expired = await fetch(brief);
  await expired.arrayBuffer();
  assert.equal(expired.status, 403);
});

test("a presigned PUT uploads an object", async (t) => {
  if (!serverOrSkip(t)) return;
  const url = await store.presignPut(bucket, "uploads/presigned", 60);
  const body = Buffer.from("uploaded through a presigned URL\n");
  const r = await fetch(url, { method: "PUT", body });
  await r.arrayBuffer();
  assert.equal(r.status, 200);
  assert.deepEqual(await store.head(bucket, "uploads/presigned"), { size: body.length, etag: md5(body) });
  assert.deepEqual(await buffer(await store.get(bucket, "uploads/presigned")), body);
});

test("put and get carry buffers and streams of known and unknown length; delete removes", async (t) => {
  if (!serverOrSkip(t)) return;
  const small = Buffer.from("a buffer\n");
  await store.put(bucket, "io/buffer", small);
  assert.deepEqual(await buffer(await store.get(bucket, "io/buffer")), small);

  const known = Buffer.alloc(3 << 20, "known length ");
  await store.put(bucket, "io/known", Readable.from(pieces(known, 65536)), known.length);
  assert.deepEqual(await store.head(bucket, "io/known"), { size: known.length, etag: md5(known) });

  // Unknown length, under one part: one PutObject. Over one part (16 MiB): a multipart upload, whose ETag
  // Ceph's CompleteMultipartUpload leaves empty (bug 58879); head() reads the real one.
  const short = Buffer.from("short stream\n");
  await store.put(bucket, "io/short", Readable.from(pieces(short, 5)));
  assert.deepEqual(await store.head(bucket, "io/short"), { size: short.length, etag: md5(short) });
  const long = Buffer.alloc((20 << 20) + 5);
  for (let i = 0; i < long.length; i += 4096) long.writeUInt32LE(i, i);
  await store.put(bucket, "io/long", Readable.from(pieces(long, 1 << 20)));
  const head = await store.head(bucket, "io/long");
  assert.equal(head.size, long.length);
  assert.match(head.etag, /^[0-9a-f]{32}-2$/);
  assert.equal(sha256(await buffer(await store.get(bucket, "io/long"))), sha256(long));
  await store.put(bucket, "io/empty", Readable.from([]));
  assert.deepEqual(await store.head(bucket, "io/empty"), { size: 0, etag: md5(Buffer.alloc(0)) });

  await store.delete(bucket, ["io/buffer", "io/long", "io/never-there"]);
  await failsWith(store.head(bucket, "io/buffer"), `s3://${bucket}/io/buffer: no such key`);
  assert.deepEqual((await store.list(bucket, "io/")).map((o) => o.key), ["io/empty", "io/known", "io/short"]);
});

test("every failure a user can cause is one InputError line naming the URL", async (t) => {
  if (!serverOrSkip(t)) return;
  await t.test("a wrong secret: access denied", async () => {
    // The SDK reads the credentials at a store's first request, so the environment stays changed meanwhile.
    await withEnv({ AWS_SECRET_ACCESS_KEY: "not-the-secret" }, async () => {
      const wrong = await S3Store.open();
      await failsWith(wrong.head(bucket, "other/y"), `s3://${bucket}/other/y: access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions)`);
      await failsWith(wrong.resolve(`s3://${bucket}/many/`), `s3://${bucket}/many/: access denied: the store refused the signature (check AWS_SECRET_ACCESS_KEY)`);
    });
    await withEnv({ AWS_ACCESS_KEY_ID: "nobody" }, async () => {
      const unknown = await S3Store.open();
      await failsWith(unknown.list(bucket, ""), `s3://${bucket}/: access denied: the store does not know this access key (check AWS_ACCESS_KEY_ID)`);
    });
  });
  await t.test("a bucket that does not exist", async () => {
    await failsWith(store.head("no-such-bucket", "k"), "s3://no-such-bucket/k: bucket no-such-bucket does not exist");
    await failsWith(store.resolve("s3://no-such-bucket/dir/"), "s3://no-such-bucket/dir/: bucket no-such-bucket does not exist");
    await failsWith(store.get("no-such-bucket", "k"), "s3://no-such-bucket/k: bucket no-such-bucket does not exist");
  });
  await t.test("a key that does not exist", async () => {
    await failsWith(store.head(bucket, "nope"), `s3://${bucket}/nope: no such key`);
    await failsWith(store.get(bucket, "nope"), `s3://${bucket}/nope: no such key`);
    await failsWith(store.resolve(`s3://${bucket}/many`), `s3://${bucket}/many: no such key; s3://${bucket}/many/ holds objects (a prefix ends with /)`);
  });
  await t.test("a prefix with nothing under it", async () => {
    await failsWith(store.resolve(`s3://${bucket}/empty/`), `no objects under s3://${bucket}/empty/`);
  });
  await t.test("no credentials anywhere (and ~/.aws not consulted)", async () => {
    const none = {
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_SESSION_TOKEN: undefined,
      AWS_PROFILE: undefined,
      AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
      AWS_CONFIG_FILE: "/nonexistent",
      // On a cloud machine the instance's own role would answer.
      AWS_EC2_METADATA_DISABLED: "true",
    };
    await withEnv(none, async () => {
      const anonymous = await S3Store.open();
      const message = `s3://${bucket}/other/y: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`;
      await failsWith(anonymous.resolve(`s3://${bucket}/other/y`), message);
      await failsWith(anonymous.presignGet(bucket, "other/y", 60), message);
    });
  });
  await t.test("an endpoint nothing listens on, or that is not a URL", async () => {
    const nowhere = await S3Store.open({ endpoint: "http://127.0.0.1:1" });
    await failsWith(nowhere.head(bucket, "other/y"), `s3://${bucket}/other/y: cannot reach the S3 endpoint http://127.0.0.1:1: connection refused`);
    await failsWith(nowhere.list(bucket, "many/"), `s3://${bucket}/many/: cannot reach the S3 endpoint http://127.0.0.1:1: connection refused`);
    await failsWith(S3Store.open({ endpoint: "127.0.0.1:7480" }), "S3 endpoint 127.0.0.1:7480 is not an http:// or https:// URL (AWS_ENDPOINT_URL)");
  });
});

/** The buffer in pieces of `size` bytes, as a stream would bring it. */
function* pieces(b: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}
