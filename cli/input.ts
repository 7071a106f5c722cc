// What `bach task-run` reads: stdin, one file, or several inputs named by --data (repeated), globs and
// --data-list, in order. Input that lives where workers can reach it (s3://, http(s) URLs) is offered to
// the coordinator as objects, which workers read themselves; anything else, or what the coordinator
// cannot read by ranges, goes through this process as one stream: the inputs concatenated, with the
// delimiter added after an input that does not end with one (a record never spans two inputs).
import fs from "node:fs";
import path from "node:path";
import tty from "node:tty";
import { Readable } from "node:stream";
import { InputError } from "../core/errors";
import { filePieces } from "../core/file-pieces";
import { frames, pipeFrames } from "../core/frames";
import { redactUrl } from "../core/ranged-read";
import { compressionOf, CorruptInputError, decompress, type Compression } from "../core/decompress";
import { archivePieces, isRemoteSource } from "../coordinator/input-sources";
import { isZip } from "../core/zip";
import { datasetSources } from "./storage";
import { joinRecords, piecesBytes } from "../core/input-objects";

export type Input =
  | { kind: "stdin" }
  | { kind: "file"; path: string; size: number }
  /** Several inputs, or URLs: `sources` in order, each a path or an s3:// or http(s) URL. */
  | { kind: "sources"; sources: string[]; size: number | null };

/** Stdin redirected from a regular file (`bach task-run < f`) is that file: it can be read in place. */
function stdinFile(): Input | null {
  const stat = fs.fstatSync(0, { bigint: true });
  if (!stat.isFile()) return null;
  const file = fs.readlinkSync("/proc/self/fd/0", { encoding: "utf8" });
  const same = fs.statSync(file, { throwIfNoEntry: false, bigint: true });
  return same && same.ino === stat.ino && same.dev === stat.dev ? { kind: "file", path: file, size: Number(stat.size) } : null;
}

const GLOB = /[*?[{]/;

/**
 * The inputs `--data` (in the order given) and `--data-list` (one a line, after them) name: paths
 * checked, globs expanded (sorted; one that matches nothing is an error), URLs kept as they are.
 */
export async function resolveInput(data: readonly string[], dataList: string | null = null, store?: string): Promise<Input> {
  const named: string[] = [];
  for (const d of [...data, ...(dataList !== null ? readList(dataList) : [])]) {
    // A stored dataset (bach storage put) is its pages, in order.
    if (/^bach:\/\//i.test(d)) named.push(...(await datasetSources(d, store)));
    else named.push(d);
  }
  if (named.length === 0 || (named.length === 1 && named[0] === "-")) {
    // isatty, not process.stdin.isTTY: the getter would open fd 0 as a stream that pipeFrames must not share.
    if (named.length === 0 && tty.isatty(0)) {
      throw new InputError("no input: give --data FILE or --data URL, or pipe the records in (cat FILE | bach task-run)");
    }
    return (process.platform === "linux" && stdinFile()) || { kind: "stdin" };
  }
  if (named.includes("-")) throw new InputError("--data -: stdin cannot be one of several inputs (give it alone, or name files)");
  const sources: string[] = [];
  let size: number | null = 0;
  for (const name of named) {
    if (isRemoteSource(name)) {
      sources.push(name);
      size = null;
      continue;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(name)) throw new InputError(`--data ${name}: Bach reads files, s3:// and http(s):// URLs, not ${name.split(":")[0]}://`, { path: name });
    const files = GLOB.test(name) ? await expandGlob(name) : [name];
    for (const file of files) {
      const stat = fs.statSync(file, { throwIfNoEntry: false });
      if (!stat) throw new InputError(`--data ${file}: no such file`, { path: file });
      if (!stat.isFile()) throw new InputError(`--data ${file}: not a regular file`, { path: file });
      fs.accessSync(file, fs.constants.R_OK);
      sources.push(path.resolve(file));
      if (size !== null) size += stat.size;
    }
  }
  // A compressed file is not read in place by ranges: it is read whole, decompressed; an archive is its members.
  if (sources.length === 1 && !isRemoteSource(sources[0]) && compressionOf(sources[0]) === null && !isZip(sources[0])) return { kind: "file", path: sources[0], size: size ?? 0 };
  return { kind: "sources", sources, size };
}

function readList(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new InputError(`--data-list ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, { path: file });
  }
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (lines.length === 0) throw new InputError(`--data-list ${file}: names no input (one path or URL a line)`, { path: file });
  // Relative paths in a list are relative to the list, as they are in a playlist.
  return lines.map((l) => (isRemoteSource(l) || path.isAbsolute(l) ? l : path.join(path.dirname(file), l)));
}

async function expandGlob(pattern: string): Promise<string[]> {
  const { glob } = await import("tinyglobby");
  const files = (await glob(pattern, { absolute: true, onlyFiles: true, expandDirectories: false })).sort();
  if (files.length === 0) throw new InputError(`--data ${pattern}: the glob matches no file`, { path: pattern });
  return files;
}

/** The local files among the inputs (what stays out of the task's bundle). */
export function localFiles(input: Input): string[] {
  if (input.kind === "file") return [input.path];
  if (input.kind === "sources") return input.sources.filter((s) => !isRemoteSource(s));
  return [];
}

/**
 * The input as frames, each valid until the next is asked for: stdin that is a pipe or a socket is
 * read into buffers used over and over (see pipeFrames). Both consumers are done with a frame by
 * then: the embedded coordinator has spooled it, a remote run's ReplayableInput has copied it.
 */
export async function openInput(input: Input, delimiter: string): Promise<AsyncIterable<Buffer>> {
  if (input.kind === "stdin") {
    const stat = fs.fstatSync(0);
    return stat.isFIFO() || stat.isSocket() ? pipeFrames(0) : frames(process.stdin);
  }
  if (input.kind === "file") return filePieces(input.path);
  return concatenated(input.sources, Buffer.from(delimiter, "utf8"));
}

function concatenated(sources: readonly string[], delimiter: Buffer): AsyncGenerator<Buffer> {
  return joinRecords(
    sources.map((source) => async () => {
      if (isZip(source)) return members(source, delimiter);
      const compression = compressionOf(source);
      const raw = await openOne(source);
      return compression ? decompressed(raw, compression, source) : raw;
    }),
    delimiter,
  );
}

/** A local input that cannot be decoded is the user's to mend: one line, exit 2. */
async function* decompressed(source: AsyncIterable<Buffer>, compression: Compression, name: string): AsyncGenerator<Buffer> {
  try {
    yield* decompress(source, compression, redactUrl(name));
  } catch (err) {
    if (err instanceof CorruptInputError) throw new InputError(`--data ${err.message}`, { path: redactUrl(name) });
    throw err;
  }
}

/** A zip archive's members, in order, read whole and checked; an archive or member that cannot be read is the user's to mend. */
async function* members(source: string, delimiter: Buffer): AsyncGenerator<Buffer> {
  try {
    const s3 = async () => (await import("../core/s3")).S3Store.open({});
    yield* piecesBytes(await archivePieces(source, s3), delimiter.toString("utf8"), true);
  } catch (err) {
    if (err instanceof CorruptInputError) throw new InputError(`--data ${err.message}`, { path: redactUrl(source) });
    throw err;
  }
}

async function openOne(source: string): Promise<AsyncIterable<Buffer>> {
  if (/^s3:\/\//i.test(source)) return s3Objects(source);
  if (!/^https?:\/\//i.test(source)) return filePieces(source);
  const name = redactUrl(source);
  let res: Response;
  try {
    res = await fetch(source);
  } catch (err) {
    throw new InputError(`--data ${name}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`, { path: name });
  }
  if (!res.ok || !res.body) throw new InputError(`--data ${name}: HTTP ${res.status} ${res.statusText}`, { path: name });
  return frames(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>));
}

/** An s3:// object, or every object under a prefix in key order, read with this machine's credentials. */
async function* s3Objects(url: string): AsyncGenerator<Buffer> {
  const { S3Store } = await import("../core/s3");
  const store = await S3Store.open({});
  for (const o of await store.resolve(url)) yield* frames(await store.get(o.bucket, o.key));
}
