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
 * frames(), gathered into one buffer used over and over instead of a fresh one a frame: for a consumer
 * done with each frame before it asks for the next (the coordinator's intake). Fresh memory for every
 * MiB of a stream costs page faults and garbage collections that, measured, slowed intake by half.
 */
export async function* reusedFrames(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const frame = Buffer.allocUnsafeSlow(FRAME_BYTES);
  let fill = 0;
  for await (const piece of source) {
    for (let at = 0; at < piece.length; ) {
      const n = Math.min(FRAME_BYTES - fill, piece.length - at);
      piece.copy(frame, fill, at, at + n);
      fill += n;
      at += n;
      if (fill === FRAME_BYTES) {
        yield frame;
        fill = 0;
      }
    }
  }
  if (fill > 0) yield frame.subarray(0, fill);
}

/** Frames a pipe reader may fill ahead of the one its consumer holds. */
const RING = 4;

/**
 * Frames of a pipe or socket (stdin from `cat FILE |`), read straight into a ring of buffers that are
 * used over and over: no buffer is allocated per read and none is copied into a frame, which on the
 * machines measured cut the CPU a GiB of stdin costs by two thirds (fresh memory is dear on a VM).
 * A frame yielded is valid only until the consumer asks for the next one: whatever it keeps, it copies.
 */
export async function* pipeFrames(fd: number, frameBytes = FRAME_BYTES): AsyncGenerator<Buffer> {
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafeSlow(frameBytes));
  /** Filled frames waiting for the consumer, oldest first, as [buffer index, length]. */
  const filled: [number, number][] = [];
  let writing = 0;
  let fill = 0;
  let held = -1;
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const poke = () => {
    wake?.();
    wake = null;
  };
  /** The buffer being written may not be one the consumer holds or has yet to take. */
  const blocked = () => writing === held || filled.some(([i]) => i === writing);
  // The constructor takes onread as connect() does (Node >= 12); @types/node lists it under connect only.
  const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: () => (ring[writing] as Buffer).subarray(fill),
      callback: (n: number) => {
        fill += n;
        if (fill < frameBytes) return true;
        filled.push([writing, fill]);
        writing = (writing + 1) % RING;
        fill = 0;
        poke();
        // Stop reading until the consumer frees the next buffer. socket.pause() (not just returning
        // false) so that resume() starts reading again.
        if (blocked()) socket.pause();
        return true;
      },
    },
  };
  const socket = new net.Socket(options);
  socket.on("end", () => {
    if (fill > 0) filled.push([writing, fill]);
    fill = 0;
    ended = true;
    poke();
  });
  socket.on("error", (err) => {
    failure = err;
    poke();
  });
  try {
    for (;;) {
      const next = filled.shift();
      if (next) {
        held = next[0];
        yield (ring[held] as Buffer).subarray(0, next[1]);
        held = -1;
        if (socket.isPaused() && !ended && !blocked()) socket.resume();
        continue;
      }
      if (failure) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    socket.destroy();
  }
}
