// A worker's GET of a byte range over plain http (a presigned S3 URL on the LAN), read straight into a
// ring of reused buffers (core/frames.ts) rather than through Node's http client, which allocates a
// fresh buffer for every 64 KiB read: measured here, 1 GiB through http.get cost 1.9 CPU-s, through
// the ring 0.45. The answer's head is read and checked as openHttpRange checks it; its body is passed
// on as the ring's frames, each valid only until the next is asked for. The connection, with its
// ring, is kept alive for the next GET to the same server.
//
// Only the plain case comes this way: an http: URL answered with a Content-Length. https, or an answer
// without a length (chunked), goes through openHttpRange, so nothing here has to speak more of HTTP
// than a status line, header lines and a counted body.
import net from "node:net";
import { FRAME_BYTES } from "./rpc";
import { ringReader } from "./frames";
import { ANSWER_MS, openHttpRange, quotedEtag, rangeAnswerFault, rangeHeaders, redactUrl, RetryableReadError, type ByteSource, type WindowOpener } from "./ranged-read";

/** A head longer than this is not an object store's answer. */
const MAX_HEAD = 64 * 1024;

/** An answer this reader cannot take: asking again would get the same. */
class BadAnswerError extends Error {}

interface Head {
  version: string;
  status: number;
  statusMessage: string;
  headers: Record<string, string>;
}

/**
 * A kept-alive connection to a server and the ring it reads into, both used again by the next GET to
 * that server: reading 1 MiB objects one after another, a connection and a ring each cost more than
 * Node's client with its pooled connections, and Node's client copies every piece of a body into a
 * fresh buffer.
 */
interface Connection {
  key: string;
  socket: net.Socket;
  frames: AsyncGenerator<Buffer>;
  idleTimer?: NodeJS.Timeout;
}

/** Resting connections by host:port, the one used last at the end. */
const resting = new Map<string, Connection[]>();
/** A connection that rested this long is closed: servers close theirs after 5 s or more. */
const REST_MS = 4000;
/** At most this many resting connections to one server. */
const MAX_RESTING = 8;

function connect(key: string, host: string, port: number): Connection {
  const { socket, frames } = ringReader((onread) => net.connect({ host, port, onread }), FRAME_BYTES, 0);
  socket.on("timeout", () => socket.destroy(new Error(socket.connecting ? `connect ETIMEDOUT: no connection in ${ANSWER_MS / 1000} s` : `no answer in ${ANSWER_MS / 1000} s`)));
  return { key, socket, frames };
}

function close(c: Connection): void {
  c.socket.destroy();
  void c.frames.return(undefined);
}

/** A resting connection to the server that is still open, or null. */
function takeResting(key: string): Connection | null {
  const list = resting.get(key) ?? [];
  for (let c = list.pop(); c; c = list.pop()) {
    clearTimeout(c.idleTimer);
    if (!c.socket.destroyed && !c.socket.readableEnded) {
      c.socket.ref();
      return c;
    }
    close(c);
  }
  return null;
}

/** Keeps a connection whose answer was read to its last byte for the next GET; it holds no process open. */
function putToRest(c: Connection): void {
  const list = resting.get(c.key) ?? [];
  resting.set(c.key, list);
  if (list.length >= MAX_RESTING) return close(c);
  c.socket.unref();
  c.idleTimer = setTimeout(() => {
    list.splice(list.indexOf(c), 1);
    close(c);
  }, REST_MS).unref();
  list.push(c);
}

/**
 * Opens ranges of `url` as openHttpRange does, with the same checks and failures, each read as frames
 * of reused buffers over kept-alive connections when the URL is plain http.
 */
export function openHttpFrames(url: string, opts: { etag?: string; headers?: Record<string, string> } = {}): WindowOpener {
  const fallback = openHttpRange(url, opts);
  if (!URL.canParse(url) || new URL(url).protocol !== "http:") return fallback;
  const u = new URL(url);
  const where = redactUrl(url);
  const etag = quotedEtag(opts.etag);
  const extra = Object.entries(opts.headers ?? {});
  if (extra.some(([k, v]) => /[\r\n:]/.test(k) || /[\r\n]/.test(v))) throw new Error(`${where}: a header with a line break`);
  const port = Number(u.port || 80);
  const key = `${u.hostname}:${port}`;
  return async (from, to) => {
    const lines = Object.entries({ host: u.host, ...rangeHeaders(opts.headers, from, to, etag) }).map(([k, v]) => `${k}: ${v}\r\n`);
    const request = `GET ${u.pathname}${u.search} HTTP/1.1\r\n${lines.join("")}\r\n`;
    for (let again = false; ; again = true) {
      const reused = again ? null : takeResting(key);
      const c = reused ?? connect(key, u.hostname, port);
      c.socket.write(request);
      c.socket.setTimeout(ANSWER_MS);
      let head: Head;
      let rest: Buffer;
      try {
        ({ head, rest } = await readHead(c.frames, where));
      } catch (err) {
        close(c);
        // A kept-alive connection the server closed (or spoiled) while it rested: ask once more on a new
        // one, as browsers do for a GET.
        if (reused) continue;
        // As openHttpRange's: a network failure may pass on another try, its message without the query.
        if (err instanceof RetryableReadError || err instanceof BadAnswerError || !(err instanceof Error)) throw err;
        throw new RetryableReadError(`${where}: ${err.message.split(url).join(where)}`);
      }
      // From here the socket may rest for as long as the program takes to read what came.
      c.socket.setTimeout(0);
      const fault = head.status >= 200 ? rangeAnswerFault(where, head, from, etag) : null;
      const length = Number(head.headers["content-length"] ?? NaN);
      const plain = head.status >= 200 && head.headers["transfer-encoding"] === undefined && Number.isSafeInteger(length) && length >= 0;
      if (fault || !plain) {
        close(c);
        if (fault) throw fault;
        // Not the plain case (an interim answer, a body without a length): Node's own client speaks the rest of HTTP.
        return fallback(from, to);
      }
      const keepAlive = head.version === "1.1" && !/(^|,)\s*close\s*($|,)/i.test(head.headers.connection ?? "");
      return countedBody(c, rest, length, where, keepAlive);
    }
  };
}

/** The answer's head, and the first bytes of its body (in the ring: valid until the next frame is asked for). */
async function readHead(frames: AsyncGenerator<Buffer>, where: string): Promise<{ head: Head; rest: Buffer }> {
  /** The head's bytes in the frames before this one (only those are copied: a frame may hold the whole body). */
  let seen = Buffer.alloc(0);
  for (;;) {
    const r = await frames.next();
    if (r.done) throw new RetryableReadError(`${where}: the connection closed before the answer's head (after ${seen.length} bytes)`);
    const frame = r.value;
    // Where the blank line ends, counted in this frame: it may have begun in the last frame's bytes.
    const carried = Math.min(3, seen.length);
    const joint = carried > 0 ? Buffer.concat([seen.subarray(-carried), frame.subarray(0, 3)]).indexOf("\r\n\r\n") : -1;
    const inFrame = joint >= 0 ? -1 : frame.indexOf("\r\n\r\n");
    const end = joint >= 0 ? joint + 4 - carried : inFrame >= 0 ? inFrame + 4 : -1;
    if ((end < 0 ? seen.length + frame.length : seen.length + end - 4) > MAX_HEAD) throw new BadAnswerError(`${where}: an answer whose head is over ${MAX_HEAD} bytes`);
    if (end < 0) {
      seen = Buffer.concat([seen, frame]);
      continue;
    }
    const head = Buffer.concat([seen, frame.subarray(0, Math.max(0, end - 4))]).subarray(0, seen.length + end - 4);
    return { head: parseHead(head.toString("latin1"), where), rest: frame.subarray(end) };
  }
}

function parseHead(text: string, where: string): Head {
  const [statusLine = "", ...lines] = text.split("\r\n");
  const m = /^HTTP\/(1\.[01]) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new BadAnswerError(`${where}: not an HTTP/1.1 answer (${JSON.stringify(statusLine.slice(0, 40))})`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BadAnswerError(`${where}: a malformed header line in its answer (${JSON.stringify(line.slice(0, 40))})`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    // Two Content-Lengths that differ cannot both be believed (RFC 9112 6.3).
    if (name === "content-length" && headers[name] !== undefined && headers[name] !== value) throw new BadAnswerError(`${where}: two different Content-Lengths in its answer`);
    headers[name] = headers[name] === undefined || name === "content-length" ? value : `${headers[name]}, ${value}`;
  }
  return { version: m[1], status: Number(m[2]), statusMessage: m[3] ?? "", headers };
}

/**
 * Exactly `length` bytes of body, `first` of them already read; fewer is a cut connection, which a
 * reader retries. The connection rests for the next GET once the body was read to its last byte and
 * nothing came after it; a read stopped before that closes it.
 */
function countedBody(c: Connection, first: Buffer, length: number, where: string, keepAlive: boolean): ByteSource {
  let left = length;
  let overrun = false;
  let owned = true;
  const release = () => {
    if (!owned) return;
    owned = false;
    if (keepAlive && left === 0 && !overrun) putToRest(c);
    else close(c);
  };
  async function* body(): AsyncGenerator<Buffer> {
    try {
      let piece = first;
      for (;;) {
        const b = piece.subarray(0, left);
        left -= b.length;
        overrun ||= b.length < piece.length;
        if (b.length > 0) yield b;
        if (left === 0) return;
        const r = await c.frames.next();
        if (r.done) throw new RetryableReadError(`${where}: the connection closed ${left} bytes before the end of the answer`);
        piece = r.value;
      }
    } finally {
      release();
    }
  }
  return { [Symbol.asyncIterator]: body, destroy: release };
}
