// Code bundles: a task folder packed into a deterministic tar (sorted paths, fixed times, honouring
// .bachignore), named by the sha256 of its bytes, and unpacked by workers into a cache by that hash.
// Packing the same folder twice gives the same hash; unpacking never writes outside its target.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { once } from "node:events";
import ignore from "ignore";
import tar from "tar-stream";

/** A bundle that cannot be unpacked safely: every worker would refuse it, so no retry can help. */
export class BadBundleError extends Error {}

/** Never part of a bundle: version control and Bach's own build state. */
const ALWAYS_IGNORED = [".git/", ".bach/"];

export interface Bundle {
  hash: string;
  file: string;
  files: number;
  bytes: number;
}

export function listTaskFiles(dir: string): string[] {
  const ig = ignore().add(ALWAYS_IGNORED);
  const ignoreFile = path.join(dir, ".bachignore");
  if (fs.existsSync(ignoreFile)) ig.add(fs.readFileSync(ignoreFile, "utf8"));
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!ig.ignores(`${name}/`)) walk(name);
      } else if ((e.isFile() || e.isSymbolicLink()) && !ig.ignores(name)) {
        out.push(name);
      }
    }
  };
  walk("");
  return out.sort();
}

/**
 * Packs `dir` into `cacheDir/<hash>.tar` and returns the bundle. `extra` adds generated files (say, the
 * digest of the task's image) after the folder's own, so they are part of what the hash names.
 */
export async function packBundle(dir: string, cacheDir: string, extra: Record<string, string> = {}): Promise<Bundle> {
  fs.mkdirSync(cacheDir, { recursive: true });
  const files = listTaskFiles(dir);
  const part = path.join(cacheDir, `pack-${randomBytes(6).toString("hex")}.part`);
  const pack = tar.pack();
  const writing = pipeline(pack, fs.createWriteStream(part));
  for (const name of files) {
    const full = path.join(dir, name);
    const stat = fs.statSync(full);
    const mode = stat.mode & 0o111 ? 0o755 : 0o644;
    const entry = pack.entry({ name, size: stat.size, mode, mtime: new Date(0), uid: 0, gid: 0 });
    await pipeline(fs.createReadStream(full), entry);
  }
  for (const name of Object.keys(extra).sort()) {
    pack.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, extra[name]);
  }
  pack.finalize();
  await writing;
  const hash = createHash("sha256");
  await pipeline(fs.createReadStream(part), hash);
  const digest = hash.digest("hex");
  const bytes = fs.statSync(part).size;
  const file = path.join(cacheDir, `${digest}.tar`);
  fs.renameSync(part, file);
  return { hash: digest, file, files: files.length + Object.keys(extra).length, bytes };
}

/** Unpacks a bundle tar into `target` (atomically: a half-unpacked bundle is never seen). */
export async function unpackBundle(tarFile: string, target: string): Promise<void> {
  if (fs.existsSync(target)) return;
  const staging = `${target}.${randomBytes(4).toString("hex")}.partial`;
  fs.mkdirSync(staging, { recursive: true });
  const extract = tar.extract();
  const done = pipeline(fs.createReadStream(tarFile), extract);
  for await (const entry of extract) {
    const dest = path.resolve(staging, entry.header.name);
    if (!dest.startsWith(path.resolve(staging) + path.sep)) throw new BadBundleError(`bundle entry escapes its folder: ${entry.header.name}`);
    if (entry.header.type === "directory") {
      fs.mkdirSync(dest, { recursive: true });
      entry.resume();
      continue;
    }
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const out = fs.createWriteStream(dest, { mode: entry.header.mode ?? 0o644 });
    entry.pipe(out);
    await once(out, "close");
  }
  await done;
  try {
    fs.renameSync(staging, target);
  } catch (err) {
    // Another attempt unpacked the same bundle first: theirs is as good as ours.
    fs.rmSync(staging, { recursive: true, force: true });
    if (!fs.existsSync(target)) throw err;
  }
}
