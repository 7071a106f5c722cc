// What `--data` names when it lives where workers can reach it: s3:// objects and prefixes, http(s)
// URLs. The coordinator learns each object's size and version, lays them end to end (core/input-objects)
// and hands workers URLs to read their own ranges: presigned for s3 (workers hold no secrets), as given
// for http. Input that cannot be read by ranges goes through the coordinator instead, and says why.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { delimiterOverlapsItself } from "../core/chunker";
import { InputError } from "../core/errors";
import { fileVersion, type InputObject } from "../core/input-objects";
import { compressionOf } from "../core/decompress";
import { probeHttp, redactUrl } from "../core/ranged-read";
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
  for (const source of sources) {
    if (localFiles && path.isAbsolute(source)) {
      // A file on this machine, read in place by this machine's workers (an embedded run).
      const stat = fs.statSync(source, { throwIfNoEntry: false });
      if (!stat?.isFile()) throw new InputError(`--data ${source}: no such file`, { path: source });
      objects.push({ name: source, url: pathToFileURL(source).href, size: stat.size, etag: fileVersion(stat), base });
      base += stat.size;
    } else if (/^s3:\/\//i.test(source)) {
      for (const o of await (await s3()).resolve(source)) {
        objects.push({ name: `s3://${o.bucket}/${o.key}`, url: `s3://${o.bucket}/${o.key}`, size: o.size, etag: o.etag, base });
        base += o.size;
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
      if (probe.size === null || (!probe.ranges && probe.size > 0)) return streamed(`${name} does not answer Range requests`, input);
      objects.push({ name, url: source, size: probe.size, etag: probe.etag ?? "", base });
      base += probe.size;
    } else {
      throw new InputError(`--data ${source}: not an s3:// or http(s):// URL`, { path: source });
    }
  }
  const splittable = input === "records" && objects.some((o) => compressionOf(o.name) === null);
  if (splittable && delimiterOverlapsItself(Buffer.from(delimiter, "utf8"))) {
    return streamed(`the delimiter ${JSON.stringify(delimiter)} can overlap itself, so a worker cannot find where a record starts from the middle of an object`, input);
  }
  return { kind: "objects", objects };
}

/** Input that must go through the coordinator instead; objects as records cannot (their edges are lost). */
function streamed(why: string, input: "records" | "objects"): Resolved {
  if (input === "objects") throw new InputError(`"input": "objects" needs every object read where it lives, and ${why}`, { field: "input" });
  return { kind: "stream", why };
}

/**
 * Presigned GET URLs for a task's s3 objects, made afresh every quarter of their lifetime, so a URL
 * handed to an attempt stays valid for at least three quarters of it. An attempt that outlives its URL
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
