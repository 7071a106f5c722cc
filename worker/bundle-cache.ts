// The worker's bundle cache: each task's code, fetched from the coordinator once per hash and unpacked
// under the worker's data dir. A bundle no attempt has used for `keepMs` is removed; one that an
// attempt is using (or that is being fetched) never is. Several workers on one machine may share the
// folder, so nothing here writes a file another worker could be reading.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { unpackBundle } from "../core/bundle";
import { MAX_SWEEP_EVERY_MS, sweepEveryMs } from "../core/sizes";

/**
 * What a fetch or an unpack under way writes (each under a name of its own): HASH.<random>.tar.partial
 * and HASH.<random>.partial; and HASH.tar, which workers wrote before the names were their own.
 */
const LEFTOVER = /^([0-9a-f]{64})\.(?:[0-9a-f]+\.(?:tar\.)?partial|tar)$/;
const WHOLE = /^[0-9a-f]{64}$/;

export interface BundleUse {
  /** The unpacked bundle: the attempt's working directory. */
  dir: string;
  release(): void;
}

export class BundleCache {
  private readonly unpacked = new Map<string, Promise<string>>();
  private readonly users = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly dir: string,
    private readonly fetch: (hash: string) => AsyncIterable<Buffer>,
    private readonly keepMs: number,
    private readonly now: () => number = Date.now,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    this.sweep();
    this.timer = setInterval(() => this.sweep(), sweepEveryMs(keepMs));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The bundle's folder, held until `release` (a sweep leaves it alone meanwhile). */
  async use(hash: string): Promise<BundleUse> {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not a bundle hash: ${hash}`);
    this.users.set(hash, (this.users.get(hash) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.users.get(hash) ?? 1) - 1;
      if (left > 0) this.users.set(hash, left);
      else this.users.delete(hash);
    };
    try {
      const dir = await this.folder(hash);
      const now = new Date(this.now());
      fs.utimesSync(dir, now, now);
      return { dir, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  private folder(hash: string): Promise<string> {
    let p = this.unpacked.get(hash);
    if (!p) {
      p = this.fetchAndUnpack(hash);
      this.unpacked.set(hash, p);
      p.catch(() => this.unpacked.delete(hash));
    }
    return p;
  }

  private async fetchAndUnpack(hash: string): Promise<string> {
    const dir = path.join(this.dir, hash);
    if (fs.existsSync(dir)) return dir;
    // A file of its own: another worker on this data dir may be fetching, unpacking or removing the
    // same bundle's file right now. Its unpack's rename keeps whichever folder arrived first.
    const tarFile = `${dir}.${randomBytes(6).toString("hex")}.tar.partial`;
    try {
      const digest = createHash("sha256");
      await pipeline(
        this.fetch(hash),
        async function* (frames: AsyncIterable<Buffer>) {
          for await (const frame of frames) {
            digest.update(frame);
            yield frame;
          }
        },
        fs.createWriteStream(tarFile),
      );
      // Checked, so that a tar that will not unpack is the bundle's fault (final), not the fetch's.
      const got = digest.digest("hex");
      if (got !== hash) throw new Error(`bundle ${hash.slice(0, 12)} arrived damaged: its bytes hash to ${got.slice(0, 12)}`);
      await unpackBundle(tarFile, dir);
    } finally {
      await fs.promises.rm(tarFile, { force: true });
    }
    return dir;
  }

  /** Removes bundles unused for keepMs, and leftovers of fetches a stopped worker left half done. */
  sweep(): void {
    const before = this.now() - this.keepMs;
    for (const name of fs.readdirSync(this.dir)) {
      const whole = WHOLE.test(name);
      const hash = whole ? name : LEFTOVER.exec(name)?.[1];
      if (!hash || (this.users.get(hash) ?? 0) > 0) continue;
      const file = path.join(this.dir, name);
      const stat = fs.statSync(file, { throwIfNoEntry: false });
      // A fetch or unpack under way (here or in another worker on this folder) keeps its file fresh:
      // only a stale one is a leftover.
      if (!stat || stat.mtimeMs >= (whole ? before : this.now() - MAX_SWEEP_EVERY_MS)) continue;
      if (whole) this.unpacked.delete(hash);
      fs.rmSync(file, { recursive: true, force: true });
    }
  }
}
