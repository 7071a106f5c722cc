// Byte frames for the data path: whatever sizes a stream yields (a pipe gives 64 KiB at a time),
// frames of about FRAME_BYTES come out, so the spool takes one write per MiB rather than per 64 KiB.
import net from "node:net";
import { FRAME_BYTES } from "./rpc";

export async function* frames(source: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (size === 0 && b.length >= FRAME_BYTES) {
      for (let i = 0; i < b.length; i += FRAME_BYTES) yield b.subarray(i, i + FRAME_BYTES);
      continue;
    }
    pending.push(b);
    size += b.length;
    if (size >= FRAME_BYTES) {
      const frame = Buffer.concat(pending, size);
      pending = [];
      size = 0;
      for (let i = 0; i < frame.length; i += FRAME_BYTES) yield frame.subarray(i, i + FRAME_BYTES);
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}

/**
 * Moves bytes from the front of `buf` onto `head` until it holds `size` (a length prefix that may
 * arrive split across frames); returns the head so far and what is left of `buf`.
 */
export function gatherHead(head: Buffer, buf: Buffer, size: number): { head: Buffer; rest: Buffer } {
  const take = Math.min(size - head.length, buf.length);
  return { head: Buffer.concat([head, buf.subarray(0, take)]), rest: buf.subarray(take) };
}

/**
 * Writes the pieces in one go (a header and the bytes after it), resolving once the last is written:
 * their buffers are then free to be used again.
 */
export function writePieces(socket: net.Socket, pieces: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.cork();
    pieces.forEach((piece, i) => (i < pieces.length - 1 ? socket.write(piece) : socket.write(piece, (err) => (err ? reject(err) : resolve()))));
    socket.uncork();
  });
}

/** Frames a pipe reader may fill ahead of the one its consumer holds. */
const RING = 4;
/** How long input may wait for its frame to fill before it is passed on anyway. */
export const FLUSH_AFTER_MS = 200;

/**
 * Frames of a pipe or socket (stdin from `cat FILE |`), read straight into a ring of buffers that are
 * used over and over: no buffer is allocated per read and none is copied into a frame, which on the
 * machines measured cut the CPU a GiB of stdin costs by two thirds (fresh memory is dear on a VM).
 * A frame yielded is valid only until the consumer asks for the next one: whatever it keeps, it copies.
 */
export async function* pipeFrames(fd: number, frameBytes = FRAME_BYTES, flushAfterMs = FLUSH_AFTER_MS): AsyncGenerator<Buffer> {
  const reader = ringReader((onread) => new net.Socket({ fd, readable: true, writable: false, onread } as net.SocketConstructorOpts), frameBytes, flushAfterMs);
  try {
    yield* reader.frames;
  } finally {
    reader.socket.destroy();
  }
}

/**
 * Reads the socket that `open` makes (handing it `onread`, which Node takes only when a socket is
 * made) into a ring of reused buffers, as pipeFrames does, and gives its frames; bytes that waited
 * flushAfterMs for their frame to fill are passed on as they are (0: whenever the consumer asks). The
 * socket stays the caller's: its end and errors end the frames, and the caller destroys it or writes
 * an answer on it.
 */
export function ringReader(open: (onread: net.OnReadOpts) => net.Socket, frameBytes = FRAME_BYTES, flushAfterMs = FLUSH_AFTER_MS): { socket: net.Socket; frames: AsyncGenerator<Buffer> } {
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafeSlow(frameBytes));
  /** Frames waiting for the consumer, oldest first, as [buffer index, from, to]. */
  const filled: [number, number, number][] = [];
  /** The buffer being read into: bytes before `start` were passed on already, reading goes on at `fill`. */
  let writing = 0;
  let start = 0;
  let fill = 0;
  let held = -1;
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  /** When the first byte not yet passed on arrived. */
  let firstByteAt = 0;
  let flushTimer: NodeJS.Timeout | undefined;
  const poke = () => {
    wake?.();
    wake = null;
  };
  /** Wakes the consumer in `ms`, when bytes waiting that long are to be passed on anyway. */
  const pokeIn = (ms: number) => {
    clearTimeout(flushTimer);
    flushTimer = setTimeout(poke, ms);
  };
  /** The buffer being written may not be one the consumer holds or has yet to take. */
  const blocked = () => writing === held || filled.some(([i]) => i === writing);
  /** Passes on what the buffer being read into holds, which stays in use: reading goes on after it. */
  const pass = () => {
    filled.push([writing, start, fill]);
    start = fill;
  };
  const socket = open({
    buffer: () => (ring[writing] as Buffer).subarray(fill),
    callback: (n: number) => {
      if (fill === start && n > 0) {
        firstByteAt = Date.now();
        // A consumer waiting for input gets these bytes within flushAfterMs, a full frame or not.
        if (wake) pokeIn(flushAfterMs);
      }
      fill += n;
      if (fill < frameBytes) return true;
      pass();
      writing = (writing + 1) % RING;
      start = fill = 0;
      poke();
      // Stop reading until the consumer frees the next buffer. socket.pause() (not just returning
      // false) so that resume() starts reading again.
      if (blocked()) socket.pause();
      return true;
    },
  });
  // "close" too: a socket destroyed on our side (an answer written, the peer gone) never sends "end".
  const end = () => {
    if (ended) return;
    if (fill > start) pass();
    ended = true;
    poke();
  };
  socket.on("end", end);
  socket.on("close", end);
  socket.on("error", (err) => {
    failure = err;
    poke();
  });
  async function* frames(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        const next = filled.shift();
        if (next) {
          held = next[0];
          yield (ring[held] as Buffer).subarray(next[1], next[2]);
          held = -1;
          if (socket.isPaused() && !ended && !blocked()) socket.resume();
          continue;
        }
        if (failure) throw failure;
        if (ended) return;
        // A slow stream (a log followed with tail -f) is passed on in pieces rather than held back
        // until a whole frame fills: bytes that waited flushAfterMs go as they are.
        const waited = Date.now() - firstByteAt;
        if (fill > start && waited >= flushAfterMs) {
          pass();
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (fill > start) pokeIn(flushAfterMs - waited);
        });
        clearTimeout(flushTimer);
      }
    } finally {
      clearTimeout(flushTimer);
    }
  }
  return { socket, frames: frames() };
}

/**
 * Reads a socket that cannot read into our buffers itself (a server-side TLS socket, whose bytes are
 * decrypted into buffers of its own) as `onread` would have it: each chunk is copied into the buffers
 * `onread` gives, one copy more than plain TCP. ringReader pauses the socket when its ring is full:
 * the rest of a chunk waits here until it resumes the socket.
 */
export function readByCopy<S extends net.Socket>(socket: S, onread: net.OnReadOpts): S {
  let rest: Buffer = Buffer.alloc(0);
  let held = false;
  const pause = socket.pause.bind(socket);
  const resume = socket.resume.bind(socket);
  const give = () => {
    while (rest.length > 0 && !held) {
      const target = typeof onread.buffer === "function" ? onread.buffer() : onread.buffer;
      const n = rest.copy(target);
      rest = rest.subarray(n);
      onread.callback(n, target);
    }
  };
  socket.pause = () => {
    held = true;
    pause();
    return socket;
  };
  socket.resume = () => {
    held = false;
    give();
    if (!held) resume();
    return socket;
  };
  socket.isPaused = () => held;
  socket.on("data", (chunk: Buffer) => {
    rest = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    give();
  });
  return socket;
}
