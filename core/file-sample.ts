// A file's sample: what a CLI and a coordinator compare to learn that they see the same input file,
// so that the coordinator may read it in place instead of having its bytes streamed to it. To name a
// file's sample a CLI must know its size, time and sampled bytes, which in practice means having read
// it: reading in place then gives a CLI nothing it could not have sent itself.
import { createHash } from "node:crypto";
import fs from "node:fs";

const PIECE = 64 * 1024;

/**
 * sha256 over the size, the modification time and 64 KiB at the start, the middle and the end; null
 * for what cannot be opened or read (a reader then streams it instead).
 */
export function fileSample(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return null;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return null;
    const hash = createHash("sha256").update(`${stat.size} ${Math.trunc(stat.mtimeMs)}\n`);
    const buffer = Buffer.allocUnsafe(PIECE);
    for (const at of new Set([0, Math.max(0, Math.floor(stat.size / 2) - PIECE / 2), Math.max(0, stat.size - PIECE)])) {
      const n = fs.readSync(fd, buffer, 0, PIECE, at);
      hash.update(buffer.subarray(0, n));
    }
    return hash.digest("hex");
  } catch (err) {
    // A file that opens but cannot be read (EIO from /proc/self/mem, a failing disk) cannot be compared
    // either: that is the caller's path, not a bug. Anything but a system call's error still is.
    if (typeof (err as NodeJS.ErrnoException).code !== "string") throw err;
    return null;
  } finally {
    fs.closeSync(fd);
  }
}
