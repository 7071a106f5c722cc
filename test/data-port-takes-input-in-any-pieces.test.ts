// The coordinator's data port (streamed input and output over plain TCP) reads each connection into
// reused buffers and cuts its blocks out of them: whatever pieces the bytes arrive in (a header line
// split in two, a block's 4-byte length split across reads, blocks of any size), the input arrives
// whole, and `bach task-output` reads it back whole over the same port; a connection it refuses gets
// one answer and closes when its client does, or after 10 s if its client goes on sending; one that
// does not send its header within 10 s is closed.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { startCluster, taskFolder, runBach, waitFor, tempDir, type Cluster } from "./harness";
import { RemoteApi } from "../cli/api";
import { prepareTask, uploadTask } from "../cli/prepare";
import { decodeEvents, type OutputFailure } from "../core/output-wire";

const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A cat task on the cluster, taking streamed input; its id. */
async function streamedTask(cluster: Cluster): Promise<string> {
  // prepareTask packs the bundle under BACH_HOME.
  process.env.BACH_HOME ??= tempDir("bach-home-");
  const api = new RemoteApi(cluster.address, cluster.token);
  try {
    await api.ready();
    const prepared = await prepareTask(taskFolder({ "logical-name": "cat", binary: "cat" }));
    await uploadTask(api, prepared, false);
    const created = await api.createTask({
      bachfile: prepared.bachfile,
      bundleHash: prepared.bundle.hash,
      imageId: "",
      parallelism: 0,
      chunkSize: 256 * 1024,
      input: { kind: "stream" },
      dataStreams: 0,
    });
    return created.id;
  } finally {
    api.close();
  }
}

/** Sends `pieces` over a new connection to the data port, one write each with a pause between; the answer line. */
async function send(port: number, pieces: Buffer[]): Promise<string> {
  const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  let answer = "";
  socket.on("data", (b: Buffer) => (answer += b.toString()));
  const closed = once(socket, "close");
  await once(socket, "connect");
  for (const piece of pieces) {
    if (!socket.write(piece)) await once(socket, "drain");
    await pause();
  }
  socket.end();
  await closed;
  return answer.trim();
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

test("data port: input in awkward pieces arrives whole; a wrong token is refused in one line", async (t) => {
  const cluster = await startCluster({ workers: 1 });
  t.after(() => cluster.stop());
  const port = Number(await waitFor("the data port in the coordinator's log", () => /"dataPort":(\d+)/.exec(cluster.coordinator.stderr())?.[1]));

  await t.test("blocks of every size, split anywhere, header included", async () => {
    const task = await streamedTask(cluster);
    const lines = Array.from({ length: 40_000 }, (_, i) => `${i}\t${randomBytes(20 + (i % 50)).toString("hex")}\n`);
    const input = Buffer.from(lines.join(""));
    // The wire: the header line, then blocks of 1 byte to 1.5 MiB, then the empty block.
    const wire: Buffer[] = [Buffer.from(`${JSON.stringify({ token: cluster.token, task, offset: 0 })}\n`)];
    const sizes = [1, 3, 4, 5, 4096, 65_535, 65_536, 65_537, 1 << 20, (1 << 20) + 1, 1_500_000];
    for (let at = 0, i = 0; at < input.length; i++) {
      const n = Math.min(sizes[i % sizes.length] as number, input.length - at);
      wire.push(u32(n), input.subarray(at, at + n));
      at += n;
    }
    wire.push(u32(0));
    const all = Buffer.concat(wire);
    // Cut the wire into pieces of 1 to 9 bytes at the start (splitting the header and the first
    // lengths), then of ~300 KiB at offsets that fall inside lengths as often as not.
    const pieces: Buffer[] = [];
    let at = 0;
    for (let k = 1; at < all.length && pieces.length < 200; k = (k % 9) + 1) {
      pieces.push(all.subarray(at, at + k));
      at += k;
    }
    for (let k = 0; at < all.length; k++) {
      const n = 300_000 + (k % 7);
      pieces.push(all.subarray(at, at + n));
      at += n;
    }
    assert.deepEqual(JSON.parse(await send(port, pieces)), { ok: true, bytes: input.length });
    const out = await runBach(["task-output", task, "--coordinator", cluster.address, "--token", cluster.token], { cwd: process.cwd() });
    assert.equal(out.code, 0, out.stderr);
    assert.ok(out.stdout.equals(input), "the output of cat is the input, byte for byte");
  });

  await t.test("a wrong token gets one line and the connection closes, however much the client sends", async () => {
    const task = await streamedTask(cluster);
    const header = Buffer.from(`${JSON.stringify({ token: "not-the-token", task, offset: 0 })}\n`);
    const blocks = Array.from({ length: 8 }, () => [u32(1 << 20), randomBytes(1 << 20)]).flat();
    const answer = await send(port, [header, ...blocks, u32(0)]);
    assert.match(answer, /^\{"error":"wrong token/);
    assert.equal(answer.split("\n").length, 1);
  });

  /** Sends `header` as a reader does; the failure that ends the answer (failing if any event comes first). */
  async function readerRefused(header: object): Promise<OutputFailure | undefined> {
    const socket = net.connect({ host: "127.0.0.1", port });
    await once(socket, "connect");
    socket.write(`${JSON.stringify(header)}\n`);
    try {
      for await (const ev of decodeEvents(socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>, (f) => Object.assign(new Error("refused"), { f }), () => new Error("lost"))) {
        assert.fail(`no event was expected, got ${ev.kind}`);
      }
    } catch (err) {
      return (err as Error & { f?: OutputFailure }).f;
    } finally {
      socket.destroy();
    }
    return undefined;
  }

  await t.test("an output reader with a wrong token is refused, as refused (not as a lost coordinator)", async () => {
    const task = await streamedTask(cluster);
    const failure = await readerRefused({ token: "not-the-token", task, offset: 0, output: { fromChunk: 0, keepOrder: true, skipBytes: 0 } });
    assert.equal(failure?.refused, true);
    assert.match(failure?.error ?? "", /wrong token/);
  });

  await t.test("a connection that never finishes its header is closed after 10 s, and one refused is not held open by a client that keeps sending", async () => {
    const silent = net.connect({ host: "127.0.0.1", port });
    const half = net.connect({ host: "127.0.0.1", port });
    await Promise.all([once(silent, "connect"), once(half, "connect")]);
    half.write('{"token":"');
    const started = Date.now();
    await Promise.all([once(silent, "close"), once(half, "close")]);
    const took = Date.now() - started;
    assert.ok(took >= 9000 && took < 15_000, `closed after ${took} ms`);
    // A refused client that goes on sending forever is cut off, not drained for as long as it sends.
    const endless = net.connect({ host: "127.0.0.1", port });
    await once(endless, "connect");
    endless.on("error", () => undefined);
    endless.write(`${JSON.stringify({ token: "not-the-token", task: "x", offset: 0 })}\n`);
    const feed = setInterval(() => endless.writable && endless.write(randomBytes(64 * 1024), () => undefined), 50);
    try {
      const refusedAt = Date.now();
      // Not once(): the client's writes meet the closed connection, and once() would reject on that error.
      await new Promise((resolve) => endless.once("close", resolve));
      assert.ok(Date.now() - refusedAt < 15_000);
    } finally {
      clearInterval(feed);
    }
  });

  await t.test("a worker asking for the chunk of an attempt that is not running gets a failure, not bytes", async () => {
    const failure = await readerRefused({ token: cluster.token, chunk: 987654 });
    assert.equal(failure?.refused, false);
    assert.match(failure?.error ?? "", /attempt 987654/);
  });
});
