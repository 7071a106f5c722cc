// The worker's bundle cache: each task's code, fetched from the coordinator once per hash and unpacked
// under the worker's data dir. A bundle no attempt has used for `keepMs` is removed; one that an
// attempt is using (or that is being fetched) never is.
import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { unpackBundle } from "../core/bundle";
import { MAX_SWEEP_EVERY_MS, sweepEveryMs } from "../core/sizes";


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
    const tarFile = `${dir}.tar`;
    await pipeline(this.fetch(hash), fs.createWriteStream(tarFile));
    await unpackBundle(tarFile, dir);
    await fs.promises.rm(tarFile, { force: true });
    return dir;
  }

  /** Removes bundles unused for keepMs, and leftovers of fetches a stopped worker left half done. */
  sweep(): void {
    const before = this.now() - this.keepMs;
    for (const name of fs.readdirSync(this.dir)) {
      const hash = /^[0-9a-f]{64}/.exec(name)?.[0];
      if (!hash || (this.users.get(hash) ?? 0) > 0) continue;
      const file = path.join(this.dir, name);
      const whole = name === hash;
      const stat = fs.statSync(file, { throwIfNoEntry: false });
      // A fetch under way writes HASH.tar or HASH.*.partial: only stale ones are leftovers.
      if (!stat || stat.mtimeMs >= (whole ? before : this.now() - MAX_SWEEP_EVERY_MS)) continue;
      if (whole) this.unpacked.delete(hash);
      fs.rmSync(file, { recursive: true, force: true });
    }
  }
}
