// Compressed input: a file or object named *.gz, *.bz2, *.xz or *.zst is decompressed where it is read
// (on the worker for objects, in the CLI for local files), and the program gets the plain bytes. A
// compressed stream cannot be entered in the middle, so such an input is one chunk, read whole. gzip
// is Node's own zlib; the others run the format's own program (bzip2, xz, zstd), which the machine
// that reads the input must have.
import { spawn } from "node:child_process";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createInflateRaw } from "node:zlib";

/** "deflate": raw deflate, as a zip archive's members are stored (core/zip.ts); no name says it. */
export type Compression = "gzip" | "bzip2" | "xz" | "zstd" | "deflate";

const SUFFIXES: [RegExp, Compression][] = [
  [/\.gz$/i, "gzip"],
  [/\.bz2$/i, "bzip2"],
  [/\.xz$/i, "xz"],
  [/\.zst$/i, "zstd"],
];

/** The programs that decompress each format but gzip, with their arguments. */
const PROGRAMS: Record<Exclude<Compression, "gzip" | "deflate">, [string, string[]]> = {
  bzip2: ["bzip2", ["-dc"]],
  xz: ["xz", ["-dc"]],
  zstd: ["zstd", ["-dcq"]],
};

/** The compression a name says (its path's suffix; a URL's query is not part of it), or null. */
export function compressionOf(name: string): Compression | null {
  const pathPart = name.replace(/[?#].*$/s, "");
  return SUFFIXES.find(([suffix]) => suffix.test(pathPart))?.[1] ?? null;
}

/**
 * Bytes that cannot be decoded as their name says (a corrupt or truncated .gz): every retry would read
 * the same bytes, so the attempt's outcome says so (see core/outcome.ts).
 */
export class CorruptInputError extends Error {
  readonly outcome = "corrupt";
}

/** `source`'s bytes decompressed; a decoding failure is a CorruptInputError naming `name`. */
export async function* decompress(source: AsyncIterable<Buffer>, compression: Compression, name: string): AsyncGenerator<Buffer> {
  // A failure to read the source (a cut connection) is its own error, not the data's fault.
  let sourceError = null as Error | null;
  const input = Readable.from(source).on("error", (err: Error) => (sourceError = err));
  if (compression === "gzip" || compression === "deflate") {
    const gunzip = compression === "gzip" ? createGunzip() : createInflateRaw();
    const feeding = pipeline(input, gunzip).catch((err: Error) => gunzip.destroy(err));
    try {
      for await (const data of gunzip) yield data as Buffer;
    } catch (err) {
      throw sourceError ?? new CorruptInputError(`${name}: not valid ${compression} data (${(err as Error).message})`);
    } finally {
      gunzip.destroy();
      await feeding;
    }
    return;
  }
  const [program, args] = PROGRAMS[compression];
  const child = spawn(program, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const started = new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (err: NodeJS.ErrnoException) => reject(new Error(err.code === "ENOENT" ? `${name}: decompressing it needs the ${program} program, which is not installed here` : `${name}: ${program}: ${err.message}`)));
  });
  await started;
  const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
  // The decompressor may stop reading early (it failed): its stdin's EPIPE is not the error to report.
  child.stdin.on("error", () => undefined);
  const feeding = pipeline(input, child.stdin).catch(() => child.kill("SIGKILL"));
  let whole = false;
  try {
    for await (const data of child.stdout) yield data as Buffer;
    whole = true;
  } finally {
    // A reader that stopped early (or failed) leaves the decompressor nothing to do.
    if (!whole) child.kill("SIGKILL");
    await feeding;
  }
  const code = await closed;
  if (sourceError) throw sourceError;
  if (code !== 0) throw new CorruptInputError(`${name}: not valid ${compression} data (${program}: ${stderr.trim().split("\n").pop() || `exit ${code}`})`);
}
