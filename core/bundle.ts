// Code bundles: a task folder packed into a deterministic tar (sorted paths, fixed times, honouring
// .bachignore), named by the sha256 of its bytes, and unpacked by workers into a cache by that hash.
// Packing the same folder twice gives the same hash; unpacking never writes outside its target.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
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

/**
 * The task folder's files, sorted, minus .bachignore's and `leaveOut`: absolute paths of files or
 * folders that are never the program's (Bach's own home, the task's input), wherever they sit.
 */
export function listTaskFiles(dir: string, leaveOut: readonly string[] = []): string[] {
  const ig = ignore().add(ALWAYS_IGNORED);
  const root = path.resolve(dir);
  for (const p of leaveOut) {
    const rel = path.relative(root, path.resolve(p));
    if (rel && !rel.startsWith("..") && !path.isAbsolute(rel)) ig.add(`/${rel.split(path.sep).join("/")}`);
  }
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
 * digest of the task's image) after the folder's own, so they are part of what the hash names. The cache
 * itself, and whatever `leaveOut` names, stay out even when they lie inside `dir`.
 */
export async function packBundle(dir: string, cacheDir: string, extra: Record<string, string> = {}, leaveOut: readonly string[] = []): Promise<Bundle> {
  fs.mkdirSync(cacheDir, { recursive: true });
  const files = listTaskFiles(dir, [cacheDir, ...leaveOut]);
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

/**
 * Unpacks a bundle tar into `target` (atomically: a half-unpacked bundle is never seen). A bundle is
 * whatever someone uploaded, so only regular files and folders are taken, named inside the target, with
 * no mode bit beyond rwx; anything else is a BadBundleError naming the entry, and nothing is left behind.
 */
export async function unpackBundle(tarFile: string, target: string): Promise<void> {
  if (fs.existsSync(target)) return;
  const staging = `${target}.${randomBytes(4).toString("hex")}.partial`;
  fs.mkdirSync(staging, { recursive: true });
  try {
    await extractInto(tarFile, staging);
  } catch (err) {
    await fs.promises.rm(staging, { recursive: true, force: true });
    throw err;
  }
  try {
    fs.renameSync(staging, target);
  } catch (err) {
    // Another attempt (or another worker on this data dir) unpacked the same bundle first: theirs is
    // as good as ours, and is kept.
    fs.rmSync(staging, { recursive: true, force: true });
    if (!fs.existsSync(target)) throw err;
  }
}

async function extractInto(tarFile: string, staging: string): Promise<void> {
  const extract = tar.extract();
  // Settles with the reading's error, if any, so that it is never left unhandled while the loop below
  // waits on a write, nor when the loop throws (leaving the loop destroys the extract, and the reading
  // then fails with a premature close that says nothing).
  const reading = pipeline(fs.createReadStream(tarFile), extract).then(
    () => null,
    (err: unknown) => err,
  );
  let failure: unknown = null;
  try {
    for await (const entry of extract) await writeEntry(entry, staging);
  } catch (err) {
    failure = err;
  }
  const readFailure = await reading;
  failure ??= readFailure;
  if (failure === null) return;
  // An error without a system code comes from tar-stream: the bytes are not a tar (the cache checked
  // them against their hash, so another fetch would bring the same bytes).
  if (failure instanceof Error && !(failure instanceof BadBundleError) && !(failure as NodeJS.ErrnoException).code) {
    throw new BadBundleError(`bundle is not a readable tar: ${failure.message}`);
  }
  throw failure;
}

/** The errors of an entry that clashes with an earlier one (a file where a folder is, or under a file). */
const CLASHES = new Set(["EEXIST", "ENOTDIR", "EISDIR"]);

/** One entry of a tar being read: its header and a stream of its bytes. */
type TarEntry = tar.Extract extends AsyncIterable<infer E> ? E : never;

async function writeEntry(entry: TarEntry, staging: string): Promise<void> {
  const { name } = entry.header;
  // tar-stream gives null for a type flag it does not know, whatever its types say.
  const type: string | null = entry.header.type;
  const shown = JSON.stringify(name);
  if (type !== "file" && type !== "directory") throw new BadBundleError(`bundle entry ${shown} is a ${type ?? "entry of unknown type"}: a bundle holds only files and folders`);
  const parts = name.split("/");
  if (name.startsWith("/") || parts.includes("..")) throw new BadBundleError(`bundle entry ${shown} names a place outside its folder`);
  const inside = parts.filter((p) => p !== "" && p !== ".");
  if (inside.length === 0) throw new BadBundleError(`bundle entry ${shown} has no name`);
  const dest = path.join(staging, ...inside);
  try {
    if (type === "directory") {
      fs.mkdirSync(dest, { recursive: true });
      fs.chmodSync(dest, 0o755);
      entry.resume();
      return;
    }
    // As packBundle writes them: executable or not, and nothing else (no setuid, setgid or sticky bit).
    const mode = (entry.header.mode ?? 0) & 0o111 ? 0o755 : 0o644;
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    await pipeline(entry, fs.createWriteStream(dest, { mode }));
    fs.chmodSync(dest, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && CLASHES.has(code)) throw new BadBundleError(`bundle entry ${shown} clashes with an earlier entry (${code})`);
    throw err;
  }
}
