// pipeFrames reads a pipe into a ring of reused buffers; a frame must stay intact until its consumer
// asks for the next one, however slow the consumer and however the writer's pieces fall.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import path from "node:path";

const frames = path.resolve(__dirname, "..", "core", "frames.js");

/**
 * A process whose stdin is a real pipe reads it with pipeFrames (frames of 64 KiB, passed on part-full
 * only after a minute's wait), dawdling now and then and checking that a frame it holds does not
 * change meanwhile; it prints what it saw.
 */
const reader = `
const { pipeFrames } = require(${JSON.stringify(frames)});
const { createHash } = require("node:crypto");
(async () => {
  const hash = createHash("sha256"); let count = 0, short = 0, bytes = 0;
  for await (const f of pipeFrames(0, 65536, 60000)) {
    const before = Buffer.from(f);
    if (count % 7 === 0) await new Promise((r) => setTimeout(r, 2));
    if (!before.equals(f)) throw new Error("frame " + count + " changed while held");
    hash.update(f); count++; bytes += f.length; if (f.length < 65536) short++;
  }
  process.stdout.write(JSON.stringify({ sha: hash.digest("hex"), count, short, bytes }));
})();`;

test("pipe frames: every byte once, in order, each frame intact while held, all full but the last", async () => {
  const input = randomBytes(5 * 1024 * 1024 + 12345);
  const child = spawn(process.execPath, ["-e", reader], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  // Uneven pieces, as a writer would send them.
  for (let at = 0; at < input.length; ) {
    const n = Math.min(input.length - at, 1 + Math.floor(Math.random() * 200_000));
    if (!child.stdin.write(input.subarray(at, at + n))) await new Promise((r) => child.stdin.once("drain", r));
    at += n;
  }
  child.stdin.end();
  const code = await new Promise((resolve) => child.on("close", resolve));
  assert.equal(code, 0);
  const seen = JSON.parse(out) as { sha: string; count: number; short: number; bytes: number };
  assert.equal(seen.bytes, input.length);
  assert.equal(seen.sha, createHash("sha256").update(input).digest("hex"));
  assert.equal(seen.count, Math.ceil(input.length / 65536));
  assert.equal(seen.short, 1, "only the last frame is short");
});

test("pipe frames: empty input gives no frames", async () => {
  const child = spawn(process.execPath, ["-e", reader], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stdin.end();
  await new Promise((resolve) => child.on("close", resolve));
  assert.deepEqual(JSON.parse(out), { sha: createHash("sha256").digest("hex"), count: 0, short: 0, bytes: 0 });
});

test("pipe frames: a slow writer's bytes are passed on part-full after the wait, not held for a full frame", async () => {
  const slow = `
const { pipeFrames } = require(${JSON.stringify(frames)});
(async () => {
  for await (const f of pipeFrames(0, 65536, 100)) process.stdout.write(JSON.stringify({ at: Date.now(), text: f.toString() }) + "\\n");
})();`;
  const child = spawn(process.execPath, ["-e", slow], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  const seen = () => out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { at: number; text: string });
  child.stdin.write("one\n");
  const deadline = Date.now() + 10_000;
  while (seen().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seen().map((f) => f.text), ["one\n"], "the first bytes came through while the pipe stayed open");
  child.stdin.write("two\n");
  child.stdin.end("three\n");
  await new Promise((resolve) => child.on("close", resolve));
  assert.equal(seen().map((f) => f.text).join(""), "one\ntwo\nthree\n");
});
