// The spool: the coordinator's directory of bytes. Streamed input is appended to one log file per task
// (chunks are byte ranges of it, so a re-run can read them again), attempt outputs are written aside
// under their attempt id, code bundles are stored by content hash, and images by their digest. It never decides what is committed.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { InputError } from "../core/errors";

/**
 * Room the spool keeps in reserve, as a file of zeros: when the disk fills up, it is given back so the
 * ledger (SQLite needs a little room for any write) can still record the failure of the task that
 * ran out, and made again once there is room.
 */
export const RESERVE_BYTES = 4 * 1024 * 1024;

export class Spool {
  /** A random token in a file of the spool: a worker that can read it shares this filesystem. */
  readonly probeToken = randomBytes(16).toString("hex");
  readonly probeFile: string;

  constructor(readonly dir: string) {
    for (const sub of ["input", "attempts", "bundles", "images"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    this.probeFile = path.join(dir, "probe");
    fs.writeFileSync(this.probeFile, this.probeToken);
    this.reserveFile = path.join(dir, "reserve");
    this.keepReserve();
  }

  private readonly reserveFile: string;

  /** Makes the reserve when it is missing and the disk has room for it several times over. */
  keepReserve(): void {
    if (fs.statSync(this.reserveFile, { throwIfNoEntry: false })?.size === RESERVE_BYTES) return;
    const { bavail, bsize } = fs.statfsSync(this.dir);
    if (bavail * bsize < 4 * RESERVE_BYTES) return;
    try {
      fs.writeFileSync(this.reserveFile, Buffer.alloc(RESERVE_BYTES));
    } catch (err) {
      fs.rmSync(this.reserveFile, { force: true });
      if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
    }
  }

  /** Gives the reserve back to the file system (at once: the caller writes next). */
  releaseReserve(): void {
    fs.rmSync(this.reserveFile, { force: true });
  }

  /** Streamed input is kept one file per chunk, under a folder per task. */
  inputChunk(task: string, seq: number): string {
    return path.join(this.dir, "input", task, `${seq}`);
  }

  removeInput(task: string): void {
    this.removeQuietly(path.join(this.dir, "input", task));
  }

  attemptOutput(attempt: number): string {
    return path.join(this.dir, "attempts", `${attempt}.out`);
  }

  /** A hash or digest comes from a caller: one that is not of the form is its mistake, never a path. */
  bundle(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new InputError(`not a bundle hash: ${JSON.stringify(hash)}`);
    return path.join(this.dir, "bundles", `${hash}.tar`);
  }

  /** True when the bundle is stored; asking counts as a use (see `stored`), so a sweep leaves it be. */
  hasBundle(hash: string): boolean {
    return touched(this.bundle(hash));
  }

  /** A `docker save` tar of an image, named by the image's digest. */
  image(id: string): string {
    const m = /^sha256:([0-9a-f]{64})$/.exec(id);
    if (!m) throw new InputError(`not an image digest: ${JSON.stringify(id)}`);
    return path.join(this.dir, "images", `${m[1]}.tar`);
  }

  hasImage(id: string): boolean {
    return touched(this.image(id));
  }

  /** Stored bundles (by hash) and images (by digest), with when each was last stored or asked for. */
  stored(): { kind: "bundle" | "image"; key: string; file: string; usedAt: number }[] {
    const found: { kind: "bundle" | "image"; key: string; file: string; usedAt: number }[] = [];
    for (const [kind, sub, prefix] of [["bundle", "bundles", ""], ["image", "images", "sha256:"]] as const) {
      for (const name of fs.readdirSync(path.join(this.dir, sub))) {
        const m = /^([0-9a-f]{64})\.tar$/.exec(name);
        if (!m) continue; // an upload still being written (.part) is not a stored artifact yet
        const file = path.join(this.dir, sub, name);
        const stat = fs.statSync(file, { throwIfNoEntry: false });
        if (stat) found.push({ kind, key: `${prefix}${m[1]}`, file, usedAt: stat.mtimeMs });
      }
    }
    return found;
  }

  removeQuietly(file: string): void {
    fs.rm(file, { force: true, recursive: true }, (err) => {
      // A leftover file costs disk, not correctness; the ledger never points at an uncommitted one.
      if (err) process.emitWarning(`bach: could not remove ${file}: ${err.message}`);
    });
  }
}

/** Whether `file` exists; if it does, its time becomes now (the retention sweep keeps what is used). */
function touched(file: string): boolean {
  const now = new Date();
  try {
    fs.utimesSync(file, now, now);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
