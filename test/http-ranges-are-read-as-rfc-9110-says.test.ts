// HTTP ranges are read as RFC 9110 says: against a real server on loopback that implements Range
// (bytes=N- and bytes=N-M, 206 with Content-Range, 416 past the end, ETag and If-Match with 412), and
// against servers that ignore Range, answer 503 to every other request, cut the connection mid-body,
// or change the object under the reader. Every URL carries a presigned-style signature in its query,
// and no message, error or retry reason may show it.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { once } from "node:events";
import fc from "fast-check";
import { alignedBytes, openHttpRange, probeHttp, readAligned, recordStart, redactUrl, type WindowOpener } from "../core/ranged-read";
import { openHttpFrames } from "../core/http-frames";
import { windowed } from "../core/input-objects";

const SECRET = "secret";
const QUERY = `?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=${SECRET}`;
const D = Buffer.from("\r\n");

interface Behaviour {
  /** Always 200 with the whole body, while saying Accept-Ranges: bytes (servers do). */
  ignoreRange?: boolean;
  /** 503 to the 1st, 3rd, 5th ... request. */
  busyEveryOther?: boolean;
  /** Closes the connection after this many bytes of each body. */
  cutAfter?: number;
  /** After this many requests the object is replaced (and so is its ETag). */
  changeAfter?: number;
  /** 405 to HEAD, as a presigned GET URL does (there it is 403). */
  refuseHead?: boolean;
  /** Every request gets this status. */
  status?: number;
  /** Says its bodies are encoded so (ignoring Accept-Encoding: identity). */
  encoding?: string;
  /** Sends bodies without a Content-Length (Transfer-Encoding: chunked). */
  chunked?: boolean;
}

interface Served {
  url: string;
  requests: { method: string; range?: string; ifMatch?: string; acceptEncoding?: string; status: number }[];
  /** How many connections the server was opened so far. */
  connections(): number;
  close(): Promise<void>;
}

const etagOf = (b: Buffer) => `"${createHash("sha256").update(b).digest("hex").slice(0, 16)}"`;

async function serve(object: Buffer, b: Behaviour = {}): Promise<Served> {
  let current = object;
  const requests: Served["requests"] = [];
  const server = http.createServer((req, res) => {
    const seen = { method: req.method ?? "", range: req.headers.range, ifMatch: req.headers["if-match"], acceptEncoding: req.headers["accept-encoding"], status: 0 };
    requests.push(seen);
    if (b.changeAfter !== undefined && requests.length > b.changeAfter) current = Buffer.from(object).reverse();
    const answer = (status: number, headers: http.OutgoingHttpHeaders = {}, body?: Buffer) => {
      seen.status = status;
      const encoded = b.encoding && status < 300 ? { "content-encoding": b.encoding } : {};
      const sent: http.OutgoingHttpHeaders = { "accept-ranges": "bytes", etag: etagOf(current), ...encoded, ...headers };
      if (b.chunked) delete sent["content-length"];
      res.writeHead(status, sent);
      if (!body || req.method === "HEAD") return res.end();
      if (b.cutAfter === undefined || body.length <= b.cutAfter) return res.end(body);
      res.write(body.subarray(0, b.cutAfter), () => res.socket?.destroy());
    };
    if (b.status) return answer(b.status, {}, Buffer.from("no"));
    if (b.busyEveryOther && requests.length % 2 === 1) return answer(503, {}, Buffer.from("busy"));
    if (req.method === "HEAD" && b.refuseHead) return answer(405, { allow: "GET" });
    if (req.method !== "GET" && req.method !== "HEAD") return answer(405, { allow: "GET, HEAD" });
    // RFC 9110 13.2.2: If-Match is evaluated before Range.
    const ifMatch = req.headers["if-match"];
    if (ifMatch && ifMatch !== "*" && !ifMatch.split(",").some((t) => t.trim() === etagOf(current))) return answer(412);
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (req.method === "GET" && range && !b.ignoreRange) {
      const first = Number(range[1]);
      const last = Math.min(range[2] === "" ? Infinity : Number(range[2]), current.length - 1);
      if (first >= current.length) return answer(416, { "content-range": `bytes */${current.length}` });
      // A last byte before the first makes the range invalid: the field is then ignored (14.1.1).
      if (last >= first) return answer(206, { "content-range": `bytes ${first}-${last}/${current.length}`, "content-length": last - first + 1 }, current.subarray(first, last + 1));
    }
    answer(200, { "content-length": current.length }, current);
  });
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/bucket/events.tsv${QUERY}`,
    requests,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Deterministic bytes: records of 0-300 bytes (bytes above 0x7f, stray "\r" and "\n"), joined by "\r\n". */
function recordsObject(seed: number, count: number): Buffer {
  let a = seed >>> 0;
  const rand = (n: number) => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a % n;
  };
  const records: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const r = Buffer.alloc(rand(300));
    for (let k = 0; k < r.length; k++) r[k] = rand(10) === 0 ? [0x0d, 0x0a, 0xe9][rand(3)] : rand(256);
    records.push(r, D);
  }
  return Buffer.concat(records);
}

/** Sorted cut points with 0 and the size: random ones, plus ones at, before and after a delimiter. */
function cutsOf(object: Buffer, seed: number, n: number): number[] {
  let a = seed >>> 0;
  const cuts = [0, object.length];
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    const p = a % (object.length + 1);
    const at = object.indexOf(D, p);
    cuts.push(p, at < 0 ? p : Math.min(object.length, at + ((a >>> 8) % 4)));
  }
  return cuts.sort((x, y) => x - y);
}

/** Each part copied as it comes: reused frames are valid only until the next is asked for. */
async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * Both ways a worker reads ranges: Node's http client into a Readable, and reused frames
 * (core/http-frames.ts) passed on unbuffered; each opener test runs with both.
 */
const READERS: [string, (url: string, opts?: { etag?: string }) => WindowOpener, typeof readAligned | typeof alignedBytes][] = [
  ["node's http client", openHttpRange, readAligned],
  ["reused frames", openHttpFrames, alignedBytes],
];

/** Every message a test sees passes through here: none may show the URL's query. */
const seenMessages: string[] = [];
function message(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  seenMessages.push(text);
  return text;
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return message(err);
  }
  assert.fail("expected a failure");
}

test("probeHttp learns the size, the ETag, and whether Range truly works", async () => {
  const object = recordsObject(1, 50);
  const servers = {
    rfc: await serve(object),
    ignoresRange: await serve(object, { ignoreRange: true }),
    refusesHead: await serve(object, { refuseHead: true }),
    busy: await serve(object, { busyEveryOther: true }),
    empty: await serve(Buffer.alloc(0)),
  };
  try {
    assert.deepEqual(await probeHttp(servers.rfc.url), { size: object.length, etag: etagOf(object), ranges: true });
    assert.deepEqual(servers.rfc.requests.map((r) => [r.method, r.range, r.status]), [["HEAD", undefined, 200], ["GET", "bytes=0-0", 206]]);
    assert.deepEqual(await probeHttp(servers.ignoresRange.url), { size: object.length, etag: etagOf(object), ranges: false }, "Accept-Ranges: bytes proves nothing");
    assert.deepEqual(await probeHttp(servers.refusesHead.url), { size: object.length, etag: etagOf(object), ranges: true });
    assert.deepEqual(await probeHttp(servers.busy.url), { size: object.length, etag: etagOf(object), ranges: true }, "a 503 to HEAD: the GET probe tells all");
    assert.deepEqual(await probeHttp(servers.empty.url), { size: 0, etag: etagOf(Buffer.alloc(0)), ranges: false });
  } finally {
    for (const s of Object.values(servers)) await s.close();
  }
});

for (const [label, opener, aligned] of READERS) {
  test(`ranged reads over HTTP equal the reference's slices, through 503s and cut connections (${label})`, async (t) => {
    const object = recordsObject(7, 150);
    const kinds: [string, Behaviour][] = [
      ["rfc", {}],
      ["busy every other request", { busyEveryOther: true }],
      ["cuts every body after 1000 bytes", { cutAfter: 1000 }],
    ];
    for (const [kind, behaviour] of kinds) {
      const server = await serve(object, behaviour);
      try {
        const { size: known, etag } = await probeHttp(server.url);
        const size = known ?? assert.fail("the probe learns the size");
        assert.ok(etag);
        const open = opener(server.url, { etag });
        let retries = 0;
        let ranges = 0;
        const whole: Buffer[] = [];
        for (const seed of [1, 2, 3]) {
          const bounds = cutsOf(object, seed * 31 + kind.length, 6);
          const parts: Buffer[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) {
            const [s, e] = [bounds[i], bounds[i + 1]];
            const got = await collect(
              aligned({ open, start: s, end: e, size, delimiter: D, backoffMs: () => 1, onRetry: (why) => (retries++, message(new Error(why))) }),
            );
            assert.deepEqual(got, object.subarray(recordStart(object, s, D), Math.max(recordStart(object, s, D), recordStart(object, e, D))), `${kind}: range [${s}, ${e})`);
            parts.push(got);
            ranges++;
          }
          whole.push(Buffer.concat(parts));
        }
        for (const w of whole) assert.deepEqual(w, object, `${kind}: the ranges concatenate to the object`);
        const reads = server.requests.filter((r) => r.method === "GET" && r.range !== "bytes=0-0");
        assert.ok(reads.every((r) => /^bytes=\d+-$/.test(r.range ?? "") && r.ifMatch === etag), "every read asks bytes=FROM- with If-Match");
        t.diagnostic(`${kind}: ${ranges} ranges, ${reads.length} requests, ${retries} retries`);
        if (kind === "rfc") assert.equal(retries, 0);
        else assert.ok(retries > 0, `${kind}: the reads were retried`);
      } finally {
        await server.close();
      }
    }
  });
}

for (const [label, opener, aligned] of READERS) {
  test(`an object that changes during the task fails the read with 'changed', not mixed bytes (${label})`, async () => {
    const object = recordsObject(3, 80);
    // The probe takes 2 requests, the read's first 1; that one is cut, and the object changes before the next.
    const server = await serve(object, { cutAfter: 2000, changeAfter: 3 });
    try {
      const { size: known, etag } = await probeHttp(server.url);
      const size = known ?? assert.fail("the probe learns the size");
      const whys: string[] = [];
      const text = await failure(
        collect(aligned({ open: opener(server.url, { etag: etag ?? undefined }), start: 0, end: size, size, delimiter: D, backoffMs: () => 1, onRetry: (why) => whys.push(why) })),
      );
      assert.match(text, /the object changed during the task \(HTTP 412/);
      assert.ok(text.includes(redactUrl(server.url)), "names the object");
      assert.equal(whys.length, 1, "the cut was retried, the 412 was not");
      assert.deepEqual(server.requests.map((r) => r.status), [200, 206, 206, 412]);
    } finally {
      await server.close();
    }
  });
}

for (const [label, opener, aligned] of READERS) {
  test(`a server that ignores Range serves a read from byte 0 and fails one from further on (${label})`, async () => {
    const object = recordsObject(4, 40);
    const server = await serve(object, { ignoreRange: true });
    try {
      const open = opener(server.url);
      const first = recordStart(object, 100, D);
      assert.deepEqual(await collect(aligned({ open, start: 0, end: 100, size: object.length, delimiter: D })), object.subarray(0, first));
      const text = await failure(collect(aligned({ open, start: 100, end: object.length, size: object.length, delimiter: D })));
      assert.match(text, /does not honour Range/);
      assert.equal(server.requests.length, 2, "not retried");
    } finally {
      await server.close();
    }
  });
}

for (const [label, opener, aligned] of READERS) {
  test(`a server that encodes its bodies anyway has no usable byte ranges (${label})`, async () => {
    const object = recordsObject(8, 20);
    const server = await serve(object, { encoding: "gzip" });
    try {
      assert.deepEqual(await probeHttp(server.url), { size: object.length, etag: etagOf(object), ranges: false });
      const text = await failure(collect(aligned({ open: opener(server.url), start: 10, end: 20, size: object.length, delimiter: D })));
      assert.match(text, /served encoded \(Content-Encoding: gzip\)/);
      assert.ok(server.requests.every((r) => r.acceptEncoding === "identity"), "every request asked for the bytes as stored");
    } finally {
      await server.close();
    }
  });
}

for (const [label, opener, aligned] of READERS) {
  test(`403 says a presigned URL may have expired; a refused connection names its cause (${label})`, async () => {
    const server = await serve(recordsObject(5, 10), { status: 403 });
    try {
      assert.match(await failure(probeHttp(server.url)), /: HTTP 403 Forbidden$/);
      const text = await failure(collect(aligned({ open: opener(server.url), start: 0, end: 10, size: 100, delimiter: D })));
      assert.match(text, /access denied \(a presigned URL may have expired\)/);
    } finally {
      await server.close();
    }
    // A port nobody listens on (not the one just closed: fetch may hold a pooled connection to it).
    const idle = http.createServer();
    await new Promise<void>((resolve) => idle.listen(0, "127.0.0.1", resolve));
    const { port } = idle.address() as AddressInfo;
    await new Promise((resolve) => idle.close(resolve));
    const url = `http://127.0.0.1:${port}/bucket/events.tsv${QUERY}`;
    const probe = await failure(probeHttp(url));
    assert.match(probe, /^\w+: http:\/\/127\.0\.0\.1:\d+\/bucket\/events\.tsv: connect ECONNREFUSED/);
    const whys: string[] = [];
    const read = await failure(
      collect(aligned({ open: opener(url), start: 50, end: 60, size: 100, delimiter: D, retries: 2, backoffMs: () => 1, onRetry: (why) => whys.push(message(new Error(why))) })),
    );
    assert.match(read, /could not read byte 48 of 100 \(3 tries in a row\): .*ECONNREFUSED/);
    assert.equal(whys.length, 2);
  });
}

test("an aborted read stops without retrying", async () => {
  const object = recordsObject(6, 20);
  const server = await serve(object);
  try {
    const stop = new AbortController();
    stop.abort();
    const whys: string[] = [];
    const text = await failure(collect(readAligned({ open: openHttpRange(server.url, { signal: stop.signal }), start: 0, end: 10, size: object.length, delimiter: D, onRetry: (why) => whys.push(why) })));
    assert.match(text, /AbortError/);
    assert.deepEqual(whys, []);
  } finally {
    await server.close();
  }
});

/** Deterministic bytes of any value, records of up to 200 bytes ended by "\n". */
function bytesOf(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    b[i] = a % 200 === 0 ? 0x0a : a >>> 24;
  }
  return b;
}

/**
 * A server speaking HTTP by hand, to write an answer in the pieces a test chooses (a head a byte at a
 * time, a body in odd sizes), or answers no library would send. `answer` gets the request's Range.
 */
async function rawServer(answer: (first: number, last: number | null) => Buffer[]): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    let got = Buffer.alloc(0);
    const onData = (b: Buffer) => {
      got = Buffer.concat([got, b]);
      if (got.indexOf("\r\n\r\n") < 0) return;
      socket.off("data", onData);
      const m = /\r\nrange: bytes=(\d+)-(\d*)\r\n/i.exec(got.toString("latin1"));
      void (async () => {
        for (const piece of answer(Number(m?.[1] ?? 0), m?.[2] ? Number(m[2]) : null)) {
          if (socket.destroyed) return;
          if (!socket.write(piece)) await once(socket, "drain");
          // A turn of the event loop between pieces: each tends to arrive as a read of its own.
          await new Promise((resolve) => setImmediate(resolve));
        }
        socket.end();
      })().catch(() => socket.destroy());
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/bucket/events.tsv${QUERY}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Cuts `b` into pieces of the given sizes (cycled), the rest in one. */
function cut(b: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < b.length && sizes.length > 0 && i < 64; i++) {
    const n = sizes[i % sizes.length];
    pieces.push(b.subarray(at, at + n));
    at += n;
  }
  if (at < b.length) pieces.push(b.subarray(at));
  return pieces;
}

test("reused frames: a head in one-byte pieces, a body in odd ones, several frames long, give exactly the range's bytes", async () => {
  let answer: (first: number, last: number | null) => Buffer[] = () => [];
  const server = await rawServer((first, last) => answer(first, last));
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 * 2 ** 20 }),
        fc.integer(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 300_000 }), { maxLength: 8 }),
        async (size, seed, f, t, byteHead, sizes) => {
          const object = bytesOf(seed, size);
          const from = Math.floor(f * (size - 1));
          const to = t === null ? undefined : from + Math.floor(t * (size - 1 - from));
          answer = (first, last) => {
            const end = last ?? size - 1;
            const head = Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${first}-${end}/${size}\r\nContent-Length: ${end - first + 1}\r\nETag: "v1"\r\n\r\n`);
            return [...(byteHead ? cut(head, [1]) : [head]), ...cut(object.subarray(first, end + 1), sizes)];
          };
          const got = await collect(await openHttpFrames(server.url, { etag: "v1" })(from, to));
          assert.deepEqual(got, object.subarray(from, to === undefined ? size : to + 1));
          // And aligned to records, as a worker reads its range.
          const start = Math.floor(f * size);
          const end = start + Math.floor((t ?? 1) * (size - start));
          const aligned = await collect(alignedBytes({ open: openHttpFrames(server.url), start, end, size, delimiter: Buffer.from("\n") }));
          const d = Buffer.from("\n");
          assert.deepEqual(aligned, object.subarray(recordStart(object, start, d), Math.max(recordStart(object, start, d), recordStart(object, end, d))));
        },
      ),
      { numRuns: 25 },
    );
  } finally {
    await server.close();
  }
});

test("reused frames: one kept-alive connection serves read after read; one the server closed while it rested is replaced, not failed", async () => {
  // Over 1 MiB: a read stopped after its first frame stops before its answer's end.
  const object = recordsObject(13, 20_000);
  const keeps = await serve(object);
  // Answers once on each connection, then closes it: the resting connection is gone when the next GET comes.
  const closes = await rawServer((first, last) => {
    const end = last ?? object.length - 1;
    return [Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${first}-${end}/${object.length}\r\nContent-Length: ${end - first + 1}\r\n\r\n`), object.subarray(first, end + 1)];
  });
  try {
    assert.ok(object.length > 2 ** 21);
    for (const [i, server] of [keeps, closes, keeps, closes, keeps, closes].entries()) {
      for (const from of [i * 100, i * 100 + 7]) {
        const read = await collect(await openHttpFrames(server.url, { etag: server === keeps ? etagOf(object) : undefined })(from, from + 9999));
        assert.deepEqual(read, object.subarray(from, from + 10_000));
      }
      // A read stopped before its answer's end (the reader found its record's end) closes its connection.
      const source = await openHttpFrames(server.url)(i);
      for await (const frame of source) if (frame.length > 0) break;
      source.destroy();
    }
    assert.equal(keeps.requests.filter((r) => r.method === "GET").length, 9);
    assert.equal(keeps.connections(), 3, "each connection served two whole reads and one stopped early");
  } finally {
    await keeps.close();
    await closes.close();
  }
});

test("reused frames: an answer without a Content-Length is read by Node's client instead", async () => {
  const object = recordsObject(9, 60);
  const server = await serve(object, { chunked: true });
  try {
    const got = await collect(alignedBytes({ open: openHttpFrames(server.url, { etag: etagOf(object) }), start: 100, end: 2000, size: object.length, delimiter: D }));
    assert.deepEqual(got, object.subarray(recordStart(object, 100, D), recordStart(object, 2000, D)));
    const gets = server.requests.filter((r) => r.method === "GET");
    assert.equal(gets.length, 2, "one read by frames, then the same by Node's client");
    assert.ok(gets.every((r) => r.range === gets[0].range && r.ifMatch === etagOf(object) && r.acceptEncoding === "identity"));
  } finally {
    await server.close();
  }
});

test("reused frames: a body cut short is retried; a head too long, or not HTTP, is one line", async () => {
  const object = bytesOf(5, 5000);
  const head = (first: number, end: number) => Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${first}-${end}/${object.length}\r\nContent-Length: ${end - first + 1}\r\n\r\n`);
  let answers = 0;
  const shortThenWhole = await rawServer((first, last) => {
    const end = last ?? object.length - 1;
    // The first answer says its length and sends half of it.
    return answers++ === 0 ? [head(first, end), object.subarray(first, first + (end - first + 1) / 2)] : [head(first, end), object.subarray(first, end + 1)];
  });
  const tooLong = await rawServer(() => [Buffer.from(`HTTP/1.1 206 Partial Content\r\nX-Padding: ${"x".repeat(70_000)}\r\n\r\n`)]);
  const notHttp = await rawServer(() => [Buffer.from("SSH-2.0-OpenSSH_9.2\r\n\r\n")]);
  try {
    const cutShort = await failure(collect(await openHttpFrames(shortThenWhole.url)(0, 999)));
    assert.match(cutShort, /^RetryableReadError: http:\/\/127\.0\.0\.1:\d+\/bucket\/events\.tsv: the connection closed 500 bytes before the end of the answer$/);
    const whys: string[] = [];
    const got = await collect(alignedBytes({ open: openHttpFrames(shortThenWhole.url), start: 0, end: object.length, size: object.length, delimiter: D, backoffMs: () => 1, onRetry: (why) => whys.push(message(new Error(why))) }));
    assert.deepEqual(got, object);
    assert.equal(whys.length, 0, "the second server answer was whole");
    answers = 0;
    const retried = await collect(alignedBytes({ open: openHttpFrames(shortThenWhole.url), start: 0, end: object.length, size: object.length, delimiter: D, backoffMs: () => 1, onRetry: (why) => whys.push(message(new Error(why))) }));
    assert.deepEqual(retried, object, "read on from where the cut answer stopped");
    assert.equal(whys.length, 1);
    const where = redactUrl(tooLong.url);
    assert.equal(await failure(openHttpFrames(tooLong.url)(0, 10)), `Error: ${where}: an answer whose head is over 65536 bytes`);
    assert.equal(await failure(openHttpFrames(notHttp.url)(0, 10)), `Error: ${redactUrl(notHttp.url)}: not an HTTP/1.1 answer ("SSH-2.0-OpenSSH_9.2")`);
  } finally {
    await shortThenWhole.close();
    await tooLong.close();
    await notHttp.close();
  }
});

test("a piece read in windows fails at once on a changed object or a 403, and retries a 503", async () => {
  const object = recordsObject(11, 60);
  const changed = await serve(object, { changeAfter: 0 });
  const denied = await serve(object, { status: 403 });
  const busy = await serve(object, { busyEveryOther: true });
  try {
    const read = (url: string, whys: string[]) =>
      collect(readAligned({ open: windowed(openHttpRange(url, { etag: etagOf(object) }), 100, 900, object.length), start: 100, end: 900, size: object.length, delimiter: D, backoffMs: () => 1, onRetry: (why) => whys.push(why) }));
    const whys: string[] = [];
    assert.match(await failure(read(changed.url, whys)), /^Error: .*: the object changed during the task \(HTTP 412/);
    assert.match(await failure(read(denied.url, whys)), /access denied \(a presigned URL may have expired\)$/);
    assert.deepEqual(whys, [], "neither is retried");
    assert.equal(changed.requests.length + denied.requests.length, 2);
    assert.deepEqual(await read(busy.url, whys), object.subarray(recordStart(object, 100, D), recordStart(object, 900, D)));
    assert.equal(whys.length, 1, "the 503 is");
  } finally {
    await changed.close();
    await denied.close();
    await busy.close();
  }
});

test("redactUrl keeps scheme, host and path only", () => {
  assert.equal(redactUrl(`https://bucket.s3.amazonaws.com/a/b.tsv${QUERY}#frag`), "https://bucket.s3.amazonaws.com/a/b.tsv");
  assert.equal(redactUrl("https://user:pass@example.com:8443/x"), "https://example.com:8443/x");
  assert.equal(redactUrl(`not a url${QUERY}`), "not a url");
});

test("no message seen in these tests shows the URL's query", () => {
  assert.ok(seenMessages.length >= 8, `${seenMessages.length} messages seen`);
  for (const text of seenMessages) assert.ok(!text.includes(SECRET) && !text.includes("X-Amz"), text);
});
