// What `--data` names when it lives where workers can reach it: s3:// objects and prefixes, http(s)
// URLs. The coordinator learns each object's size and version, lays them end to end (core/input-objects)
// and hands workers URLs to read their own ranges: presigned for s3 (workers hold no secrets), as given
// for http. Input that cannot be read by ranges goes through the coordinator instead, and says why.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { delimiterOverlapsItself } from "../core/chunker";
import { InputError } from "../core/errors";
import { fileVersion, openFileRange, readWhole, zipToWire, type InputObject, type PieceSource } from "../core/input-objects";
import { openHttpRange, probeHttp, redactUrl, type WindowOpener } from "../core/ranged-read";
import { isZip, zipMembers } from "../core/zip";
import type { S3Store } from "../core/s3";

export type Resolved = { kind: "objects"; objects: InputObject[] } | { kind: "stream"; why: string };

export function isRemoteSource(source: string): boolean {
  return /^(s3|https?):\/\//i.test(source);
}

/**
 * The objects `sources` name, in order (a prefix: its objects in key order), or why they must be
 * streamed instead. A source that does not exist, is empty or cannot be read is an InputError.
 */
export async function resolveSources(sources: readonly string[], delimiter: string, input: "records" | "objects", s3: () => Promise<S3Store>, localFiles = false): Promise<Resolved> {
  const objects: InputObject[] = [];
  let base = 0;
  const add = async (o: Omit<InputObject, "base">) => {
    // A zip archive is its members, each an object of its own.
    for (const member of isZip(o.name) ? await archiveMembers(o, s3) : [o]) {
      objects.push({ ...member, base });
      base += member.size;
    }
  };
  for (const source of sources) {
    if (localFiles && path.isAbsolute(source)) {
      // A file on this machine, read in place by this machine's workers (an embedded run).
      const stat = fs.statSync(source, { throwIfNoEntry: false });
      if (!stat?.isFile()) throw new InputError(`--data ${source}: no such file`, { path: source });
      await add({ name: source, url: pathToFileURL(source).href, size: stat.size, etag: fileVersion(stat) });
    } else if (/^s3:\/\//i.test(source)) {
      for (const o of await (await s3()).resolve(source)) {
        await add({ name: `s3://${o.bucket}/${o.key}`, url: `s3://${o.bucket}/${o.key}`, size: o.size, etag: o.etag });
      }
    } else if (/^https?:\/\//i.test(source)) {
      const name = redactUrl(source);
      let probe: Awaited<ReturnType<typeof probeHttp>>;
      try {
        probe = await probeHttp(source);
      } catch (err) {
        throw new InputError(`--data ${name}: ${(err as Error).message}`, { path: name });
      }
      // An empty object has no ranges to read: a server answers its bytes=0-0 with 416.
      if (probe.size === null || (!probe.ranges && probe.size > 0)) {
        if (isZip(name)) throw new InputError(`--data ${name}: a zip archive is read by ranges, and this server does not answer Range requests`, { path: name });
        return streamed(`${name} does not answer Range requests`, input);
      }
      await add({ name, url: source, size: probe.size, etag: probe.etag ?? "" });
    } else {
      throw new InputError(`--data ${source}: not an s3:// or http(s):// URL`, { path: source });
    }
  }
  const splittable = input === "records" && objects.some((o) => !readWhole(o));
  if (splittable && delimiterOverlapsItself(Buffer.from(delimiter, "utf8"))) {
    return streamed(`the delimiter ${JSON.stringify(delimiter)} can overlap itself, so a worker cannot find where a record starts from the middle of an object`, input);
  }
  return { kind: "objects", objects };
}

/**
 * The members of the zip archive `archive` (a file, an s3 object or an http(s) URL), each an object
 * whose bytes are a range of the archive's.
 */
export async function archiveMembers(archive: Omit<InputObject, "base">, s3: () => Promise<S3Store>): Promise<Omit<InputObject, "base">[]> {
  let open: WindowOpener;
  if (archive.url.startsWith("file:")) open = openFileRange(archive.url, archive.etag);
  else {
    const s3url = /^s3:\/\/([^/]+)\/(.*)$/s.exec(archive.url);
    const url = s3url ? await (await s3()).presignGet(s3url[1], s3url[2], 3600) : archive.url;
    open = openHttpRange(url, { etag: archive.etag || undefined });
  }
  const members = await zipMembers(archive.name, archive.size, open);
  return members.map((m) => ({ name: m.name, url: archive.url, size: m.size, etag: archive.etag, zip: { offset: m.offset, codec: m.codec, crc32: m.crc32 } }));
}

/**
 * A zip archive the CLI streams (a file, an s3:// object or an http(s) URL that honours Range) as
 * pieces that read its members whole, in order, each checked against its CRC-32.
 */
export async function archivePieces(source: string, s3: () => Promise<S3Store>): Promise<PieceSource[]> {
  const name = redactUrl(source);
  let archive: Omit<InputObject, "base">;
  let url = source;
  if (/^s3:\/\//i.test(source)) {
    const [o] = await (await s3()).resolve(source);
    archive = { name, url: source, size: o.size, etag: o.etag };
    url = await (await s3()).presignGet(o.bucket, o.key, 3600);
  } else if (/^https?:\/\//i.test(source)) {
    const probe = await probeHttp(source).catch((err: Error) => {
      throw new InputError(`--data ${name}: ${err.message}`, { path: name });
    });
    if (probe.size === null || !probe.ranges) throw new InputError(`--data ${name}: a zip archive is read by ranges, and this server does not answer Range requests`, { path: name });
    archive = { name, url: source, size: probe.size, etag: probe.etag ?? "" };
  } else {
    const stat = fs.statSync(source);
    url = pathToFileURL(source).href;
    archive = { name, url, size: stat.size, etag: fileVersion(stat) };
  }
  return (await archiveMembers(archive, s3)).map((m) => ({ url, start: 0, end: m.size, size: m.size, etag: m.etag, name: m.name, ...zipToWire(m.zip), delimitEnd: false }));
}

/** Input that must go through the coordinator instead; objects as records cannot (their edges are lost). */
function streamed(why: string, input: "records" | "objects"): Resolved {
  if (input === "objects") throw new InputError(`"input": "objects" needs every object read where it lives, and ${why}`, { field: "input" });
  return { kind: "stream", why };
}

/**
 * Presigned GET URLs for a task's s3 objects, made afresh every quarter of their lifetime, so a URL
 * handed to an attempt stays valid for at least three quarters of it, less up to a second (a signature's
 * time counts whole seconds). An attempt that outlives its URL
 * fails its read (403) and its retry gets a fresh one.
 */
export class PresignedUrls {
  private urls: string[] | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly objects: readonly InputObject[],
    private readonly s3: () => Promise<S3Store>,
    private readonly lifetimeSeconds: number,
    private readonly failed: (err: Error) => void,
  ) {}

  /** Makes the first URLs and keeps them fresh until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh().catch(this.failed), (this.lifetimeSeconds * 1000) / 4);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The URL a worker reads object `i` by; null until the first URLs are made. */
  urlOf(i: number): string | null {
    return this.urls?.[i] ?? null;
  }

  get ready(): boolean {
    return this.urls !== null;
  }

  private async refresh(): Promise<void> {
    const store = this.objects.some((o) => o.url.startsWith("s3://")) ? await this.s3() : null;
    const urls: string[] = [];
    for (const o of this.objects) {
      const s3 = /^s3:\/\/([^/]+)\/(.*)$/s.exec(o.url);
      urls.push(s3 && store ? await store.presignGet(s3[1], s3[2], this.lifetimeSeconds) : o.url);
    }
    this.urls = urls;
  }
}

/** How long a presigned URL lives: BACH_PRESIGN_SECONDS, or an hour. */
export function presignSeconds(): number {
  const v = Number(process.env.BACH_PRESIGN_SECONDS ?? "");
  return Number.isInteger(v) && v > 0 ? v : 3600;
}
