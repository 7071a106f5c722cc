// What the worker and the container keeper (worker/keeper.c) say to each other: where the keeper is,
// the lines written to its stdin, and its reports read out of its stderr from between the program's
// own bytes. It starts no container and opens no file.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Built next to this file by scripts/build-keeper (npm run build). */
export const KEEPER = path.join(__dirname, "bach-keeper");
/** Where containers see it: outside every folder an image is likely to have. */
export const KEEPER_IN_CONTAINER = "/.bach-keeper";

/** Why no container can run on this machine (the keeper was not built), or "". */
export function keeperMissing(): string {
  return fs.existsSync(KEEPER) ? "" : `the container keeper ${KEEPER} was not built: install a C compiler and static libc (apt-get install gcc libc6-dev), then npm run build`;
}

/** What the keeper reports after an attempt: "ID STATUS STEP ERRNO SCRATCH_ERRNO" after the marker. */
export interface KeeperReport {
  /** The exit code, or 128+N for signal N. */
  status: number;
  /** "-", or the step that failed before the program ran: env, stdin, stdout, chdir, exec. */
  step: string;
  errno: number;
  /** Why /scratch could not be emptied, or 0. */
  scratchErrno: number;
}

/** The keeper's first line: the word that marks its reports (never in its argv: see keeper.c). */
export function tokenLine(token: string): string {
  return `${token}\n`;
}

/** The marker that starts each of the keeper's reports on its stderr. */
export function reportMarker(token: string): Buffer {
  return Buffer.from(`\x1e${token} `);
}

/** The line for one attempt: its id and each NAME=VALUE in hex, so no value can break the line. */
export function controlLine(attemptId: number, env: Record<string, string>): string {
  return [String(attemptId), ...Object.entries(env).map(([k, v]) => Buffer.from(`${k}=${v}`).toString("hex"))].join(" ") + "\n";
}

/**
 * Reads the keeper's stderr during one attempt: the program's bytes go to `program` as they come
 * (under "stderr": "fail" the first one fails the attempt, so only what could be the start of the
 * marker waits for the next read), and the report for `attemptId` to `report`, once; a report for
 * another attempt (an earlier one, ended by a kill) is skipped. Returns the function to feed.
 */
export function reportReader(marker: Buffer, attemptId: number, program: (b: Buffer) => void, report: (r: KeeperReport) => void): (b: Buffer) => void {
  let tail: Buffer = Buffer.alloc(0);
  let reported = false;
  const read = (b: Buffer): void => {
    if (reported) return;
    tail = tail.length ? Buffer.concat([tail, b]) : b;
    const at = tail.indexOf(marker);
    if (at < 0) {
      const keep = markerStartAtEnd(tail, marker);
      if (tail.length > keep) program(tail.subarray(0, tail.length - keep));
      tail = tail.subarray(tail.length - keep);
      return;
    }
    if (at > 0) program(tail.subarray(0, at));
    const line = tail.subarray(at + marker.length);
    const nl = line.indexOf(10);
    if (nl < 0) {
      tail = tail.subarray(at);
      return;
    }
    tail = line.subarray(nl + 1);
    const [id, status, step, errno, scratchErrno] = line.subarray(0, nl).toString().split(" ");
    if (Number(id) === attemptId) {
      reported = true;
      report({ status: Number(status), step: step ?? "-", errno: Number(errno), scratchErrno: Number(scratchErrno) });
      return;
    }
    if (tail.length > 0) {
      const rest = tail;
      tail = Buffer.alloc(0);
      read(rest);
    }
  };
  return read;
}

/** How many bytes at the end of `b` could be the start of `marker`. */
function markerStartAtEnd(b: Buffer, marker: Buffer): number {
  for (let n = Math.min(b.length, marker.length - 1); n > 0; n--) {
    if (b.subarray(b.length - n).equals(marker.subarray(0, n))) return n;
  }
  return 0;
}

/** ENOENT for 2: the keeper reports errno numbers, which are this machine's too (same kernel). */
export function errnoName(errno: number): string {
  const entry = Object.entries(os.constants.errno).find(([, n]) => n === errno);
  return entry ? entry[0] : `errno ${errno}`;
}
