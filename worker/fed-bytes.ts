// How far a process has read an open file: what a running attempt has been fed when its chunk is a
// range of a file read by the program itself or by dd (a stream's bytes are counted as they are written).
// Linux's /proc only; it never changes anything.
import fs from "node:fs";

/** The file position of `pid`'s descriptor `fd` (/proc/PID/fdinfo/FD "pos:"), or null when it cannot be read. */
export function filePosition(pid: number | undefined, fd: number): number | null {
  if (!pid) return null;
  let info: string;
  try {
    info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
  } catch (err) {
    // The process has ended, or this is not Linux: there is nothing to say, not a fault.
    if (["ENOENT", "ESRCH", "EACCES", "EPERM"].includes((err as NodeJS.ErrnoException).code ?? "")) return null;
    throw err;
  }
  const m = /^pos:\s*(\d+)/m.exec(info);
  return m ? Number(m[1]) : null;
}

/**
 * Bytes of a range `offset`..`offset+length` fed so far, from the reader's position in the file (dd
 * and a program given the whole file both read it as their descriptor 0); `last` when it cannot be read.
 */
export function rangeFed(pid: number | undefined, offset: number, length: number, last: number): number {
  const pos = filePosition(pid, 0);
  return pos === null ? last : Math.max(last, Math.min(length, Math.max(0, pos - offset)));
}
