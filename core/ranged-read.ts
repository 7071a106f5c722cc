// A worker's read of its own byte range of a remote object, aligned to whole records, as Hadoop input
// splits are. It owns the alignment rule and the HTTP Range reads; it never holds a record in memory.
//
// The contract. An object of `size` bytes is a sequence of records cut greedily left to right by the
// delimiter D: a record ends just after an occurrence of D, and the last record may lack D. Let
// start(x) = 0 when x = 0, else the smallest record start p >= x (a record start is 0 or the end of an
// occurrence of D), or `size` when there is none. A range [s, e) yields exactly the bytes
// [start(s), start(e)) (start(size) = size). So neighbouring ranges give neighbouring bytes, their
// concatenation is the object, no record is lost or doubled at any edge, and a record longer than a
// range belongs to the range holding its first byte (the others yield nothing).
//
// Sound only for a D without a border (no proper prefix of D equals a suffix of D): "\n", "\r\n", "<|>";
// not "\n\n", "aa", "abab", nor "|~|", whose "|" is a border (in "a|~|~|b" the greedy cut ends a record
// after the "|~|" at byte 1; a search from byte 3 finds one there). Occurrences of a border-free D cannot
// overlap, so every occurrence a search finds from the middle of the object is one the greedy cut from
// byte 0 finds too. For D with a border only a scan from byte 0 knows where records start, and
// readAligned refuses such a D.
import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { delimiterOverlapsItself } from "./chunker";

/**
 * Bytes read from a store: a Readable, or frames of reused buffers (core/http-frames.ts), each valid
 * only until the next is asked for. destroy() stops a read at once, a pending one included.
 */
export interface ByteSource extends AsyncIterable<Buffer> {
  destroy(): void;
}

/** Opens the object's bytes from `from` to its end; the stream may end early or fail (a cut connection). */
export type RangeOpener = (from: number) => Promise<ByteSource>;
/** The object is not the version the task planned: no retry can read that version again. */
export class ObjectChangedError extends Error {
  readonly outcome = "changed";
}

/** Opens the bytes [from, to] of an object (to inclusive, as Range has it; absent: to its end). */
export type WindowOpener = (from: number, to?: number) => Promise<ByteSource>;

/** A failure that may pass if the same bytes are asked for again (a 503, a refused connection). */
export class RetryableReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RetryableReadError";
  }
}

/** True when a proper prefix of d is also its suffix ("\n\n", "aa", "abab"): occurrences may then overlap. */
export const delimiterHasBorder = delimiterOverlapsItself;

/** start(x) over a whole object held in `data`: the contract's reference, found by the greedy cut from byte 0. */
export function recordStart(data: Buffer, x: number, d: Buffer): number {
  if (x <= 0) return 0;
  for (let i = data.indexOf(d); i >= 0; i = data.indexOf(d, i + d.length)) {
    if (i + d.length >= x) return i + d.length;
  }
  return data.length;
}

/**
 * Finds occurrences of a border-free delimiter in an object read in pieces, in order, keeping only the
 * last D.length-1 bytes read (to see an occurrence split across two pieces, or across a reopen).
 */
class OccurrenceFinder {
  private carry = Buffer.alloc(0);

  constructor(private readonly d: Buffer) {}

  /** The end of the first occurrence starting at or after `from` that ends within `piece` (read at `at`), or -1. */
  find(piece: Buffer, at: number, from: number): number {
    const len = this.d.length;
    if (this.carry.length > 0) {
      // Every occurrence starting in the carry ends in this piece: the carry is shorter than D.
      const base = at - this.carry.length;
      const head = Buffer.concat([this.carry, piece.subarray(0, len - 1)]);
      const i = head.indexOf(this.d, Math.max(0, from - base));
      if (i >= 0 && i < this.carry.length) return base + i + len;
    }
    const i = piece.indexOf(this.d, Math.max(0, from - at));
    return i >= 0 ? at + i + len : -1;
  }

  /** Remembers the tail of a piece read whole. */
  passed(piece: Buffer): void {
    const keep = this.d.length - 1;
    if (keep === 0) return;
    const tail = piece.length >= keep ? piece.subarray(piece.length - keep) : Buffer.concat([this.carry, piece]).subarray(-keep);
    this.carry = Buffer.from(tail); // a copy: the piece itself must not be kept alive
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Where the read of [s, e) stands: seeking start(s), passing on bytes until start(e), or done. It
 * reads from max(0, s - D.length) (an occurrence ending at or after s starts there or later) and
 * stops at start(e), or at e when start(s) turns out to be e or later.
 */
class RangeScan {
  /** The next byte of the object to read. */
  next: number;
  done: boolean;
  /** start(s) once found, -1 while seeking it. */
  private first: number;
  private readonly finder: OccurrenceFinder;

  constructor(
    private readonly start: number,
    private readonly end: number,
    readonly size: number,
    private readonly d: Buffer,
  ) {
    this.finder = new OccurrenceFinder(d);
    this.done = start === end;
    this.first = start === 0 ? 0 : -1;
    this.next = Math.max(0, start - d.length);
  }

  /** The bytes of `whole` (the object's next bytes, from `this.next` on) that belong to the range. */
  take(whole: Buffer): Buffer {
    const at = this.next;
    const piece = whole.subarray(0, this.size - at); // bytes past the known size are not the object's
    if (this.first < 0) {
      const a = this.finder.find(piece, at, Math.max(0, this.start - this.d.length));
      // start(s) >= e: start(s) = start(e), and the range is empty. No occurrence starting at or
      // before e - D.length means none ends at or before e.
      if (a < 0 ? at + piece.length >= this.end : a >= this.end) return this.finish(EMPTY);
      if (a < 0) return this.pass(piece, EMPTY);
      this.first = a;
    }
    const b = this.finder.find(piece, at, Math.max(this.first, this.end - this.d.length));
    const to = b >= 0 ? b : at + piece.length;
    const out = piece.subarray(Math.max(this.first, at) - at, to - at);
    return b >= 0 || to >= this.size ? this.finish(out) : this.pass(piece, out);
  }

  private pass(piece: Buffer, out: Buffer): Buffer {
    this.finder.passed(piece);
    this.next += piece.length;
    return out;
  }

  private finish(out: Buffer): Buffer {
    this.done = true;
    return out;
  }
}

interface AlignedReadOptions {
  open: RangeOpener;
  start: number;
  end: number;
  size: number;
  delimiter: Buffer;
  /** Reopens after failures in a row before giving up (default 5); a try that brought a byte starts the count again. */
  retries?: number;
  onRetry?: (why: string, at: number) => void;
  /** The pause before the n-th reopen in a row, in ms (default 100, 200, 400, ... at most 2000). */
  backoffMs?: (n: number) => number;
}

/**
 * The bytes [start(s), start(e)) of the object, streamed with backpressure: at most one piece of the
 * source, D.length-1 carried bytes and this stream's 64 KiB buffer are held, whatever the record length.
 * A source that fails or ends early is reopened at the next byte needed; the count of failures resets
 * whenever a byte arrives, so a long read over a flaky link goes on while a dead one fails.
 */
export function readAligned(opts: AlignedReadOptions): Readable {
  checkAligned(opts);
  return pullStream((signal) => alignedPieces(opts, signal));
}

function checkAligned({ start, end, size, delimiter }: AlignedReadOptions): void {
  if (delimiter.length === 0) throw new Error("readAligned: empty delimiter");
  if (delimiterHasBorder(delimiter)) throw new Error(`readAligned: delimiter ${JSON.stringify(delimiter.toString("latin1"))} overlaps itself; only a scan from byte 0 can cut its records`);
  if (![start, end, size].every(Number.isSafeInteger) || !(0 <= start && start <= end && end <= size)) {
    throw new Error(`readAligned: bad range [${start}, ${end}) of ${size} bytes`);
  }
}

/**
 * The same bytes as readAligned, as the opener's own buffers, unbuffered: when those are reused frames,
 * each piece given is valid only until the next is asked for. Stopped by `return()` between pieces.
 */
export function alignedBytes(opts: AlignedReadOptions): AsyncGenerator<Buffer> {
  checkAligned(opts);
  return stoppable((signal) => alignedPieces(opts, signal));
}

async function* stoppable(make: (signal: AbortSignal) => AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  const stop = new AbortController();
  try {
    yield* make(stop.signal);
  } finally {
    stop.abort();
  }
}

async function* alignedPieces(opts: AlignedReadOptions, signal: AbortSignal): AsyncGenerator<Buffer> {
  const retries = opts.retries ?? 5;
  const backoffMs = opts.backoffMs ?? ((n: number) => Math.min(2000, 100 * 2 ** (n - 1)));
  const scan = new RangeScan(opts.start, opts.end, opts.size, opts.delimiter);
  let failures = 0;
  while (!scan.done) {
    const { why, progressed } = yield* readOnce(opts.open, scan, signal);
    if (scan.done || signal.aborted) return;
    failures = progressed ? 1 : failures + 1;
    if (failures > retries) throw new Error(`could not read byte ${scan.next} of ${opts.size} (${failures} tries in a row): ${why}`);
    opts.onRetry?.(why, scan.next);
    await pause(backoffMs(failures), signal);
  }
}

/** One open of the object at the next byte the scan needs: yields the range's bytes, and returns why it stopped short. */
async function* readOnce(open: RangeOpener, scan: RangeScan, signal: AbortSignal): AsyncGenerator<Buffer, { why: string; progressed: boolean }> {
  let progressed = false;
  let source: ByteSource;
  try {
    source = await open(scan.next);
  } catch (err) {
    if (err instanceof RetryableReadError || signal.aborted) return { why: describe(err), progressed };
    throw err;
  }
  const stop = () => source.destroy();
  signal.addEventListener("abort", stop);
  try {
    const pieces = source[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
    while (!signal.aborted) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await pieces.next();
      } catch (err) {
        // A later window's answer saying the object changed: no read of it can give the planned version.
        if (err instanceof ObjectChangedError) throw err;
        // An error of the source itself: a cut connection, worth reading again from here.
        return { why: describe(err), progressed };
      }
      if (r.done) return { why: `the stream ended at byte ${scan.next} of ${scan.size}`, progressed };
      const piece = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      progressed ||= piece.length > 0;
      const out = scan.take(piece);
      if (out.length > 0) yield out;
      if (scan.done) break;
    }
    return { why: "", progressed };
  } finally {
    signal.removeEventListener("abort", stop);
    source.destroy(); // at once: the rest of the object is not ours to read
  }
}

/**
 * A Readable pulling from `make`'s pieces only while its reader wants more (as Readable.from does),
 * which, when destroyed, aborts the signal first, so a read waiting on the network stops at once.
 */
function pullStream(make: (signal: AbortSignal) => AsyncGenerator<Buffer>): Readable {
  const stop = new AbortController();
  const pieces = make(stop.signal);
  let pulling = false;
  const stream: Readable = new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (pulling) return;
      pulling = true;
      pull().catch((err: Error) => stream.destroy(err));
    },
    destroy(err, cb) {
      stop.abort();
      pieces.return(undefined).then(
        () => cb(err),
        (e: Error) => cb(err ?? e),
      );
    },
  });
  async function pull(): Promise<void> {
    try {
      for (;;) {
        const r = await pieces.next();
        if (r.done) {
          stream.push(null);
          return;
        }
        if (!stream.push(r.value)) return;
      }
    } finally {
      pulling = false;
    }
  }
  return stream;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : "";
  return cause && cause !== err.message ? `${err.message}: ${cause}` : err.message;
}

/** The url without its query, fragment or user info: a presigned URL carries its signature in the query. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    // Not a URL at all: cut what would be its query and user info all the same.
    return url.replace(/[?#].*$/s, "").replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1");
  }
}

interface HttpRangeOptions {
  /** The ETag probeHttp saw: every read then asks If-Match, so a changed object fails instead of mixing. */
  etag?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * Opens `url` from a byte on with `Range: bytes=FROM-` (or `bytes=FROM-TO`). It accepts only a 206 whose Content-Range
 * starts at FROM (or a 200 for FROM = 0); 5xx, 429 and network failures are RetryableReadErrors;
 * 412 (the ETag no longer matches), 403 and the rest are final. Messages never carry the query.
 *
 * Node's own http client, not fetch: the body comes as the socket's own buffers, with none of the web
 * streams fetch would put between them and the program's stdin (at a GiB a task, fetch cost a worker
 * about a CPU-second more per GiB). Connections are kept alive between ranges.
 */
export function openHttpRange(url: string, opts: HttpRangeOptions = {}): WindowOpener {
  const where = checkedUrl(url);
  const etag = quotedEtag(opts.etag);
  return async (from, to) => {
    const res = await get(url, rangeHeaders(opts.headers, from, to, etag), opts.signal);
    const fault = rangeAnswerFault(where, { status: res.statusCode ?? 0, statusMessage: res.statusMessage ?? "", headers: res.headers }, from, etag);
    if (fault) {
      res.destroy();
      throw fault;
    }
    return res;
  };
}

/** An ETag as If-Match wants it: quoted. */
export function quotedEtag(etag: string | undefined): string | undefined {
  return etag === undefined ? undefined : /^".*"$/.test(etag) ? etag : `"${etag}"`;
}

/** The headers of a GET of bytes [from, to] (to absent: to the end), lower-cased. */
export function rangeHeaders(extra: Record<string, string> | undefined, from: number, to: number | undefined, etag: string | undefined): Record<string, string> {
  // The bytes as stored: a server may encode a body for a request that does not say (RFC 9110 12.5.3).
  const headers: Record<string, string> = { ...lowerCased(extra), range: `bytes=${from}-${to ?? ""}`, "accept-encoding": "identity" };
  if (etag) headers["if-match"] = etag;
  return headers;
}

/**
 * What is wrong with an answer to a GET of bytes from `from` on, as the error to throw, or null when
 * its body is those bytes: only a 206 whose Content-Range starts at FROM (or a 200 for FROM = 0) is.
 * 5xx, 429 are RetryableReadErrors; 412 (the ETag no longer matches) and 416 are ObjectChangedErrors;
 * 403 and the rest are final.
 */
export function rangeAnswerFault(where: string, answer: { status: number; statusMessage: string; headers: http.IncomingHttpHeaders }, from: number, etag: string | undefined): Error | null {
  const { status, headers } = answer;
  const fault = (message: string, Kind: new (m: string) => Error = Error) => new Kind(`${where}: ${message}`);
  const statusLine = `HTTP ${status} ${answer.statusMessage}`.trim();
  const seen = headers.etag;
  if (status === 412 || (status >= 200 && status < 300 && etag && seen && !seen.startsWith("W/") && seen !== etag)) {
    return fault(`the object changed during the task (HTTP ${status}: its ETag is no longer ${etag ?? "the one asked for"})`, ObjectChangedError);
  }
  if (status === 403) return fault("HTTP 403: access denied (a presigned URL may have expired)");
  if (status === 416) return fault(`no bytes at ${from} (HTTP 416): the object is shorter than it was; it changed during the task`, ObjectChangedError);
  if (status >= 500 || status === 429) return fault(statusLine, RetryableReadError);
  if (status === 200 && from > 0) return fault(`the server does not honour Range (HTTP 200 to bytes=${from}-)`);
  if (status !== 200 && status !== 206) return fault(statusLine);
  const encoding = headers["content-encoding"];
  if (encoding && encoding !== "identity") return fault(`served encoded (Content-Encoding: ${encoding}): its byte ranges are not the object's bytes`);
  if (status === 206) {
    const range = contentRange(headers["content-range"] ?? null);
    if (range?.first !== from) return fault(`asked for bytes=${from}-, got Content-Range ${headers["content-range"] ?? "(none)"}`);
  }
  return null;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** How long a GET may wait to connect, then for its response's head. */
export const ANSWER_MS = 30_000;

/** A GET of `url`, its response once its head has come; a network failure is a one-line RetryableReadError. */
function get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<http.IncomingMessage> {
  const secure = url.startsWith("https:");
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).get(url, { headers, agent: secure ? agents.https : agents.http, signal }, (res) => {
      // From here the socket may rest for as long as the program takes to read what came: no timeout.
      req.setTimeout(0);
      resolve(res);
    });
    req.setTimeout(ANSWER_MS, () => {
      const connecting = req.socket?.connecting ?? true;
      req.destroy(new Error(connecting ? `connect ETIMEDOUT: no connection in ${ANSWER_MS / 1000} s` : `no answer in ${ANSWER_MS / 1000} s`));
    });
    req.once("error", (err: Error) => {
      if (signal?.aborted) reject(err);
      else reject(new RetryableReadError(`${redactUrl(url)}: ${err.message.split(url).join(redactUrl(url))}`));
    });
  });
}

function lowerCased(headers: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

/**
 * What a reader needs to know before cutting `url` into ranges: its size, its (strong) ETag, and
 * whether Range works, which only a 206 to `bytes=0-0` whose Content-Range total is the size proves:
 * servers send Accept-Ranges: bytes and then ignore Range. HEAD first (a presigned GET URL refuses it:
 * the GET probe then tells all).
 */
export async function probeHttp(url: string, opts: { headers?: Record<string, string> } = {}): Promise<{ size: number | null; etag: string | null; ranges: boolean }> {
  const where = checkedUrl(url);
  const head = await send(url, { method: "HEAD", headers: plainHeaders(opts.headers, null) });
  let size = head.ok ? contentLength(head) : null;
  let etag = head.ok ? strongEtag(head) : null;
  const res = await send(url, { headers: plainHeaders(opts.headers, "bytes=0-0") });
  await res.body?.cancel();
  const range = contentRange(res.headers.get("content-range"));
  const encoding = res.headers.get("content-encoding");
  let ranges = false;
  if (res.status === 206 && range?.first === 0 && range.total !== null && (size === null || size === range.total) && (!encoding || encoding === "identity")) {
    ranges = true;
    size = range.total;
    etag = strongEtag(res) ?? etag;
  } else if (res.status === 200) {
    size ??= contentLength(res);
    etag ??= strongEtag(res);
  } else if (res.status === 416 && range?.total === 0) {
    size = 0; // an empty object: nothing to range over
  } else if (res.status !== 206) {
    throw new Error(`${where}: HTTP ${res.status} ${res.statusText}`);
  }
  // A server that says no size (a chunked stream) cannot be read by ranges: the caller streams it.
  return { size, etag, ranges: ranges && size !== null };
}

/**
 * Asks for the bytes as stored: fetch would otherwise ask for gzip and undo it, and ranges would count
 * other bytes. With a Range, fetch adds Accept-Encoding: identity itself (the Fetch standard says so;
 * undici appends it even to ours, sending "identity, identity"), so ours is only for a request without.
 */
function plainHeaders(extra: Record<string, string> | undefined, range: string | null): Headers {
  const headers = new Headers(extra);
  headers.delete("accept-encoding");
  if (range) headers.set("range", range);
  else headers.set("accept-encoding", "identity");
  return headers;
}

function checkedUrl(url: string): string {
  const where = redactUrl(url);
  if (!URL.canParse(url)) throw new Error(`${where}: not a URL`);
  return where;
}

/** fetch, with a network failure as a one-line RetryableReadError (the caller's abort passes as it is). */
async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (init.signal?.aborted) throw err;
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : describe(err);
    throw new RetryableReadError(`${redactUrl(url)}: ${cause.split(url).join(redactUrl(url))}`);
  }
}

function contentRange(value: string | null): { first: number; total: number | null } | null {
  const m = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(value?.trim() ?? "");
  if (!m) return null;
  return { first: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === "*" ? null : Number(m[2]) };
}

function contentLength(res: Response): number | null {
  const value = res.headers.get("content-length");
  const n = value === null ? NaN : Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** A weak ETag (W/"…") can never pass If-Match, which compares strongly (RFC 9110 13.1.1): none then. */
function strongEtag(res: Response): string | null {
  const value = res.headers.get("etag");
  return value && !value.startsWith("W/") ? value : null;
}
