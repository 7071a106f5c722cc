// Where a task's output goes: stdout (the default), a folder (`--output DIR/`) or an S3 prefix
// (`--output s3://bucket/prefix/`). In a folder or a prefix each chunk's output becomes one part,
// `part-000000`, `part-000001`... in input order, written once and whole, and `_SUCCESS.json` last: the
// parts, their sizes and sha256s, as Hadoop's output committers do. A task that does not succeed leaves
// no manifest and none of its parts. A folder is replaced atomically (two renames); a prefix, whose
// objects cannot all change at once, loses its old manifest first, so a reader that trusts only
// `_SUCCESS.json` never reads a mix of two runs.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { InputError } from "../core/errors";
import { formatBytes } from "../core/sizes";
import type { S3Store } from "../core/s3";

export interface OutputSink {
  write(data: Buffer): Promise<void>;
  /** Every byte of the current chunk has been written: its part is done. */
  chunkDone(): Promise<void>;
  /** The task ended: the manifest and a line saying where the output is, or nothing left behind. */
  finish(task: string, succeeded: boolean): Promise<string | null>;
}

export interface Part {
  name: string;
  bytes: number;
  sha256: string;
}

const MANIFEST = "_SUCCESS.json";
const partName = (i: number) => `part-${String(i).padStart(6, "0")}`;
const isBachOutput = (name: string) => name === MANIFEST || /^part-\d{6,}$/.test(name);

export function manifest(task: string, parts: Part[]): string {
  return `${JSON.stringify({ task, parts, bytes: parts.reduce((n, p) => n + p.bytes, 0), writtenAt: new Date().toISOString() }, null, 2)}\n`;
}

/** Opens `target` (a folder, or s3://bucket/prefix/), checking first that it may be written. */
export async function openOutput(target: string, overwrite: boolean): Promise<OutputSink> {
  return /^s3:\/\//i.test(target) ? S3Sink.open(target, overwrite) : FolderSink.open(target, overwrite);
}

/** Parts of a folder, written in a sibling folder and swapped in whole when the task succeeds. */
class FolderSink implements OutputSink {
  private readonly parts: Part[] = [];
  private fd: number | null = null;
  private hash = createHash("sha256");
  private bytes = 0;

  private constructor(
    private readonly dir: string,
    private readonly temp: string,
  ) {}

  static async open(target: string, overwrite: boolean): Promise<FolderSink> {
    const dir = path.resolve(target);
    const there = fs.statSync(dir, { throwIfNoEntry: false });
    if (there && !there.isDirectory()) throw new InputError(`--output ${target}: not a folder`, { path: target });
    const names = there ? fs.readdirSync(dir) : [];
    if (names.some((n) => !isBachOutput(n))) throw new InputError(`--output ${target}: the folder holds other files than a Bach output; name a new or empty folder`, { path: target });
    if (names.length > 0 && !overwrite) throw new InputError(`--output ${target}: holds the output of an earlier run; add --overwrite to replace it`, { path: target });
    const temp = `${dir}.bach-${randomBytes(4).toString("hex")}`;
    try {
      fs.mkdirSync(temp, { recursive: false });
    } catch (err) {
      throw new InputError(`--output ${target}: cannot write beside it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { path: target });
    }
    return new FolderSink(dir, temp);
  }

  async write(data: Buffer): Promise<void> {
    this.fd ??= fs.openSync(path.join(this.temp, partName(this.parts.length)), "wx");
    fs.writeSync(this.fd, data);
    this.hash.update(data);
    this.bytes += data.length;
  }

  async chunkDone(): Promise<void> {
    const name = partName(this.parts.length);
    // A chunk with no output is an empty part: part i is always chunk i of the output.
    this.fd ??= fs.openSync(path.join(this.temp, name), "wx");
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.parts.push({ name, bytes: this.bytes, sha256: this.hash.digest("hex") });
    this.fd = null;
    this.hash = createHash("sha256");
    this.bytes = 0;
  }

  async finish(task: string, succeeded: boolean): Promise<string | null> {
    if (this.fd !== null) fs.closeSync(this.fd);
    if (!succeeded) {
      fs.rmSync(this.temp, { recursive: true, force: true });
      return null;
    }
    fs.writeFileSync(path.join(this.temp, MANIFEST), manifest(task, this.parts));
    const old = fs.existsSync(this.dir) ? `${this.temp}-old` : null;
    if (old) fs.renameSync(this.dir, old);
    fs.renameSync(this.temp, this.dir);
    if (old) fs.rmSync(old, { recursive: true, force: true });
    return `output: ${this.parts.length} parts, ${formatBytes(this.parts.reduce((n, p) => n + p.bytes, 0))} in ${this.dir}/ (${MANIFEST} lists them)`;
  }
}

/**
 * A part kept in memory up to this size is put whole (one request: it appears whole or not at all);
 * a bigger one streams as a multipart upload, which appears only when completed.
 */
const SMALL_PART = 8 * 1024 * 1024;

/** Parts as objects under an S3 prefix, uploaded with this process's credentials. */
class S3Sink implements OutputSink {
  private readonly parts: Part[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private stream: { body: PassThrough; done: Promise<void> } | null = null;
  private hash = createHash("sha256");
  private bytes = 0;

  private constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly stale: string[],
  ) {}

  static async open(target: string, overwrite: boolean): Promise<S3Sink> {
    const { S3Store, parseS3Url } = await import("../core/s3");
    const at = parseS3Url(target);
    if (!at) throw new InputError(`--output ${target}: not an s3:// URL`, { path: target });
    const prefix = at.key === "" || at.key.endsWith("/") ? at.key : `${at.key}/`;
    const store = await S3Store.open({});
    const existing = (await store.list(at.bucket, prefix).catch((err: Error) => {
      throw new InputError(`--output ${err.message}`, { path: target });
    })).map((o) => o.key.slice(prefix.length));
    if (existing.some((n) => !isBachOutput(n))) throw new InputError(`--output ${target}: the prefix holds other objects than a Bach output; name a new or empty prefix`, { path: target });
    if (existing.length > 0 && !overwrite) throw new InputError(`--output ${target}: holds the output of an earlier run; add --overwrite to replace it`, { path: target });
    // The old manifest goes first: from now on the prefix does not claim to hold a whole output.
    if (existing.includes(MANIFEST)) await store.delete(at.bucket, [prefix + MANIFEST]);
    return new S3Sink(store, at.bucket, prefix, existing.filter((n) => n !== MANIFEST));
  }

  async write(data: Buffer): Promise<void> {
    this.hash.update(data);
    this.bytes += data.length;
    if (!this.stream) {
      this.pending.push(Buffer.from(data));
      this.pendingBytes += data.length;
      if (this.pendingBytes <= SMALL_PART) return;
      const body = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
      this.stream = { body, done: this.store.put(this.bucket, this.prefix + partName(this.parts.length), body) };
      for (const b of this.pending) await writeTo(this.stream, b);
      this.pending = [];
      return;
    }
    await writeTo(this.stream, data);
  }

  async chunkDone(): Promise<void> {
    const name = partName(this.parts.length);
    if (this.stream) {
      this.stream.body.end();
      await this.stream.done;
    } else {
      await this.store.put(this.bucket, this.prefix + name, Buffer.concat(this.pending));
    }
    this.parts.push({ name, bytes: this.bytes, sha256: this.hash.digest("hex") });
    this.stream = null;
    this.pending = [];
    this.pendingBytes = 0;
    this.hash = createHash("sha256");
    this.bytes = 0;
  }

  async finish(task: string, succeeded: boolean): Promise<string | null> {
    const written = this.parts.map((p) => this.prefix + p.name);
    if (!succeeded) {
      this.stream?.body.destroy(new Error("the task did not succeed"));
      await this.stream?.done.catch(() => undefined);
      if (written.length) await this.store.delete(this.bucket, written);
      return null;
    }
    const names = new Set(this.parts.map((p) => p.name));
    const stale = this.stale.filter((n) => !names.has(n)).map((n) => this.prefix + n);
    if (stale.length) await this.store.delete(this.bucket, stale);
    await this.store.put(this.bucket, this.prefix + MANIFEST, Buffer.from(manifest(task, this.parts)));
    return `output: ${this.parts.length} parts, ${formatBytes(this.parts.reduce((n, p) => n + p.bytes, 0))} in s3://${this.bucket}/${this.prefix} (${MANIFEST} lists them)`;
  }
}

/** Writes into an upload's body; an upload that failed fails the write instead of leaving it waiting. */
function writeTo(upload: { body: PassThrough; done: Promise<void> }, data: Buffer): Promise<void> {
  if (upload.body.write(data)) return Promise.resolve();
  return Promise.race([
    new Promise<void>((resolve) => upload.body.once("drain", resolve)),
    upload.done.then(() => {
      throw new Error("the part's upload ended before its bytes did");
    }),
  ]);
}
