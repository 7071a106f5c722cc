// Byte frames for the data path: whatever sizes a stream yields (a pipe gives 64 KiB at a time),
// frames of about FRAME_BYTES come out, so the spool takes one write per MiB rather than per 64 KiB.
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
