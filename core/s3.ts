// Bach's access to S3 stores of any vendor (AWS, Ceph, MinIO, R2): s3:// URLs, head, list, presigned
// URLs, put, get, delete. Every failure a user can cause becomes one InputError line naming the URL.
// It never loads the AWS SDK at start-up: the SDK is imported inside functions, once an s3:// path is used.
import type { Readable } from "node:stream";
import type { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { InputError } from "./errors";

type Sdk = typeof import("@aws-sdk/client-s3");

export interface S3Object {
  key: string;
  size: number;
  /** Without its quotes. */
  etag: string;
}

/** `{ bucket, key }` of an s3:// URL, or null for anything else. An empty key or one ending in "/" is a prefix. */
export function parseS3Url(url: string): { bucket: string; key: string } | null {
  if (!url.startsWith("s3://")) return null;
  const rest = url.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? "" : rest.slice(slash + 1);
  if (!bucket) throw new InputError(`${url}: no bucket (s3://BUCKET/KEY names an object, s3://BUCKET/PREFIX/ every object under it)`, { path: url });
  if (bucket.length < 3) throw new InputError(`${url}: "${bucket}" is not a bucket name (they have 3 to 63 characters)`, { path: url });
  return { bucket, key };
}

/** A key that names every object under it rather than one object. */
export const isS3Prefix = (key: string): boolean => key === "" || key.endsWith("/");

export const s3Url = (bucket: string, key: string): string => `s3://${bucket}/${key}`;

export interface S3Options {
  /** The store's URL, e.g. http://127.0.0.1:7480; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS. */
  endpoint?: string;
  /** URLs as endpoint/bucket/key instead of bucket.endpoint/key; default BACH_S3_PATH_STYLE=1, or when an endpoint is set. */
  pathStyle?: boolean;
}

/** S3 allows 10,000 parts; at 16 MiB, an object of unknown length may reach 156 GiB. */
const PART_BYTES = 16 << 20;
const MAX_PARTS = 10_000;
/** The most one PutObject takes. */
const SINGLE_PUT_BYTES = 5 * 1024 ** 3;
/** The most keys one DeleteObjects takes. */
const DELETE_BATCH = 1000;

export class S3Store {
  private constructor(
    private readonly sdk: Sdk,
    private readonly client: S3Client,
    /** The store as a user would name it in a message. */
    readonly endpoint: string,
  ) {}

  static async open(opts: S3Options = {}): Promise<S3Store> {
    // The SDK warns on every Node before 22 through process.emitWarning, a stray paragraph on bach's stderr
    // that a user can do nothing about (Bach supports Node 20).
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    const sdk = await import("@aws-sdk/client-s3");
    // The SDK reads these itself too; read here so that this file says what is used, in the SDK's order.
    const endpoint = opts.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined);
    if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) {
      throw new InputError(`S3 endpoint ${endpoint} is not an http:// or https:// URL (AWS_ENDPOINT_URL)`, { field: "AWS_ENDPOINT_URL" });
    }
    const region = process.env.AWS_REGION || "us-east-1";
    const client = new sdk.S3Client({
      region,
      endpoint,
      // Stores other than AWS mostly serve no bucket-named hosts (bucket.127.0.0.1 cannot resolve): with an
      // endpoint, name the bucket in the path.
      forcePathStyle: opts.pathStyle ?? (process.env.BACH_S3_PATH_STYLE === "1" || endpoint !== undefined),
      // Since 2025 the SDK adds CRC32 checksums by default: a streamed PutObject then goes out as aws-chunked
      // with a trailer, which Ceph 16 refuses (411), and a presigned PUT carries the checksum of an empty
      // body. Only where an operation requires one.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // Without a logger the SDK writes warnings to the console; each one it writes here precedes an error
      // that this file turns into a line of its own.
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
      // A black-holed endpoint would otherwise hang: Node's connect has no timeout.
      requestHandler: { connectionTimeout: 10_000 },
    });
    return new S3Store(sdk, client, endpoint ?? `AWS S3 (${region})`);
  }

  /** Size and ETag of one object. */
  async head(bucket: string, key: string): Promise<{ size: number; etag: string }> {
    const found = await this.headOrMissing(bucket, key);
    if (found === "no-such-key") throw new InputError(`${s3Url(bucket, key)}: no such key`, { path: s3Url(bucket, key) });
    return found;
  }

  /** Every object under the prefix, in key order; "folder" markers (a key ending in "/", 0 bytes) left out. */
  async list(bucket: string, prefix: string): Promise<S3Object[]> {
    const url = s3Url(bucket, prefix);
    const objects: S3Object[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })).catch((err: unknown) => this.fail(url, err));
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || (o.Key.endsWith("/") && !o.Size)) continue;
        objects.push({ key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag) });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  /** A URL that anyone may GET (with a Range header too) for `expiresSeconds` (at most 7 days: SigV4's limit). */
  async presignGet(bucket: string, key: string, expiresSeconds: number): Promise<string> {
    return this.presign(s3Url(bucket, key), new this.sdk.GetObjectCommand({ Bucket: bucket, Key: key }), expiresSeconds);
  }

  /** A URL that anyone may PUT the object's bytes to (with a Content-Length) for `expiresSeconds`. */
  async presignPut(bucket: string, key: string, expiresSeconds: number): Promise<string> {
    return this.presign(s3Url(bucket, key), new this.sdk.PutObjectCommand({ Bucket: bucket, Key: key }), expiresSeconds);
  }

  /**
   * Writes an object. A stream of unknown length (or over 5 GiB) goes up in parts of 16 MiB or more, one
   * at a time, so it holds at most two parts in memory. The ETag is not returned: Ceph answers a multipart
   * upload with an empty one (Ceph bug 58879), so a caller that needs it asks head().
   */
  async put(bucket: string, key: string, body: Buffer | Readable, length?: number): Promise<void> {
    const url = s3Url(bucket, key);
    const bytes = Buffer.isBuffer(body) ? body.length : length;
    if (bytes !== undefined && bytes <= SINGLE_PUT_BYTES) {
      await this.client.send(new this.sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: bytes })).catch((err: unknown) => this.fail(url, err));
      return;
    }
    await this.putInParts(bucket, key, body as Readable, bytes);
  }

  /** The object's bytes. The stream's errors are the SDK's: the caller handles its `error` event. */
  async get(bucket: string, key: string): Promise<Readable> {
    const url = s3Url(bucket, key);
    const response = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: bucket, Key: key })).catch((err: unknown) => this.fail(url, err));
    if (!response.Body) throw new Error(`GetObject of ${url} answered without a body`);
    return response.Body as Readable;
  }

  /** Deletes the keys (absent ones are no error, as in S3). */
  async delete(bucket: string, keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const url = s3Url(bucket, batch[0]);
      const answer = await this.client
        .send(new this.sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }))
        .catch((err: unknown) => this.fail(url, err));
      const failed = answer.Errors ?? [];
      if (failed.length) {
        const first = failed[0];
        const more = failed.length > 1 ? ` (and ${failed.length - 1} more keys)` : "";
        throw new InputError(`${s3Url(bucket, first.Key ?? "")}: cannot delete: ${first.Code ?? "error"}${first.Message ? `: ${first.Message}` : ""}${more}`);
      }
    }
  }

  /**
   * The objects an s3:// URL names: s3://b/key one object (HeadObject), s3://b/prefix/ or s3://b every
   * object under it, in key order. `name` is each object's own s3:// URL.
   */
  async resolve(url: string): Promise<{ name: string; bucket: string; key: string; size: number; etag: string }[]> {
    const parsed = parseS3Url(url);
    if (!parsed) throw new InputError(`${url}: not an s3:// URL`, { path: url });
    const { bucket, key } = parsed;
    if (isS3Prefix(key)) {
      const objects = await this.list(bucket, key);
      if (!objects.length) throw new InputError(`no objects under ${url}`, { path: url });
      return objects.map((o) => ({ name: s3Url(bucket, o.key), bucket, ...o }));
    }
    const found = await this.headOrMissing(bucket, key);
    if (found !== "no-such-key") return [{ name: url, bucket, key, ...found }];
    // s3://b/logs for s3://b/logs/: say what was meant.
    const under = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${key}/`, MaxKeys: 1 })).catch((err: unknown) => this.fail(url, err));
    const hint = under.KeyCount ? `; ${url}/ holds objects (a prefix ends with /)` : "";
    throw new InputError(`${url}: no such key${hint}`, { path: url });
  }

  /** HeadObject answers a bare 404 for a missing bucket and a missing key alike; HeadBucket tells them apart. */
  private async headOrMissing(bucket: string, key: string): Promise<{ size: number; etag: string } | "no-such-key"> {
    const url = s3Url(bucket, key);
    try {
      const h = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { size: h.ContentLength ?? 0, etag: unquote(h.ETag) };
    } catch (err) {
      if (statusOf(err) !== 404) this.fail(url, err);
    }
    await this.client.send(new this.sdk.HeadBucketCommand({ Bucket: bucket })).catch((err: unknown) => {
      this.fail(url, statusOf(err) === 404 ? noSuchBucket(url, bucket) : err);
    });
    return "no-such-key";
  }

  private async presign(url: string, command: GetObjectCommand | PutObjectCommand, expiresSeconds: number): Promise<string> {
    const { getSignedUrl } = await import("@aws-sdk/s3-request-presigner");
    return getSignedUrl(this.client, command, { expiresIn: expiresSeconds }).catch((err: unknown) => this.fail(url, err));
  }

  /** Reads the stream into parts and uploads each as it fills; one part in all is a plain PutObject. */
  private async putInParts(bucket: string, key: string, body: Readable, length: number | undefined): Promise<void> {
    const url = s3Url(bucket, key);
    const partBytes = Math.max(PART_BYTES, Math.ceil((length ?? 0) / MAX_PARTS));
    const upload: { id?: string; parts: { PartNumber: number; ETag?: string }[] } = { parts: [] };
    const sendPart = async (part: Buffer) => {
      if (upload.parts.length === MAX_PARTS) {
        throw new InputError(`${url}: more than ${MAX_PARTS} parts of ${partBytes} bytes: give the object's length to put()`, { path: url });
      }
      upload.id ??= (await this.client.send(new this.sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))).UploadId;
      const PartNumber = upload.parts.length + 1;
      const { ETag } = await this.client.send(new this.sdk.UploadPartCommand({ Bucket: bucket, Key: key, UploadId: upload.id, PartNumber, Body: part, ContentLength: part.length }));
      upload.parts.push({ PartNumber, ETag });
    };
    try {
      // A part is sent once the next one has begun to fill, so the last part is known when the stream ends.
      let pending: Buffer | null = null;
      for await (const part of inParts(body, partBytes)) {
        if (pending) await sendPart(pending);
        pending = part;
      }
      pending ??= Buffer.alloc(0);
      if (upload.id === undefined) {
        await this.client.send(new this.sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: pending, ContentLength: pending.length }));
        return;
      }
      await sendPart(pending);
      await this.client.send(new this.sdk.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.id, MultipartUpload: { Parts: upload.parts } }));
    } catch (err) {
      if (upload.id !== undefined) {
        // The upload's own error is the one to report. Parts an abort could not remove cost storage until
        // the bucket's lifecycle rule for incomplete uploads clears them; nothing here can do better.
        await this.client.send(new this.sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.id })).catch(() => undefined);
      }
      this.fail(url, err);
    }
  }

  /** Throws what a user should read about `err`, which happened on `url`: an InputError, or `err` itself when it is a bug. */
  private fail(url: string, err: unknown): never {
    throw userError(url, this.endpoint, err);
  }
}

/** Buffers of at least `bytes` (the last one shorter), from the stream's own chunks. */
async function* inParts(body: Readable, bytes: number): AsyncGenerator<Buffer> {
  let chunks: Buffer[] = [];
  let held = 0;
  for await (const chunk of body) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(b);
    held += b.length;
    if (held >= bytes) {
      yield Buffer.concat(chunks, held);
      chunks = [];
      held = 0;
    }
  }
  if (held) yield Buffer.concat(chunks, held);
}

const noSuchBucket = (url: string, bucket: string) => new InputError(`${url}: bucket ${bucket} does not exist`, { path: url });

const unquote = (etag: string | undefined): string => (etag ?? "").replace(/^"|"$/g, "");

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

const statusOf = (err: unknown): number | undefined => (err as SdkError | null)?.$metadata?.httpStatusCode;

/** Node's codes for a store that cannot be reached, and what each means to a user. */
const UNREACHABLE: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "no such host",
  EAI_AGAIN: "its name does not resolve now",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed",
};

/** One line for a user, naming the URL; `err` itself when it is not the store's or the user's doing. */
export function userError(url: string, endpoint: string, err: unknown): unknown {
  if (err instanceof InputError) return err;
  const e = (err ?? {}) as SdkError;
  const at = (message: string) => new InputError(`${url}: ${message}`, { path: url });
  if (e.name === "CredentialsProviderError") {
    // The default chain's last link says only this; any other link's message names what it found wrong.
    if (e.message === "Could not load credentials from any providers") return at("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE");
    return at(`AWS credentials: ${e.message ?? "not usable"}`);
  }
  const code = e.code ?? (err as { errors?: { code?: string }[] } | null)?.errors?.[0]?.code;
  if (code !== undefined && code in UNREACHABLE) return at(`cannot reach the S3 endpoint ${endpoint}: ${UNREACHABLE[code]}`);
  if (e.name === "TimeoutError") return at(`cannot reach the S3 endpoint ${endpoint}: timed out`);
  const status = statusOf(err);
  if (status === undefined) return err;
  const bucket = parseS3Url(url)?.bucket ?? "";
  switch (e.name) {
    case "NoSuchBucket":
      return noSuchBucket(url, bucket);
    case "NoSuchKey":
      return at("no such key");
    case "SignatureDoesNotMatch":
      return at("access denied: the store refused the signature (check AWS_SECRET_ACCESS_KEY)");
    case "InvalidAccessKeyId":
      return at("access denied: the store does not know this access key (check AWS_ACCESS_KEY_ID)");
  }
  if (status === 403) {
    // HEAD answers have no body, so no code: AWS also answers 403 for a missing key to whom may not list the bucket.
    return at("access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions)");
  }
  if (status === 301 || e.name === "PermanentRedirect") {
    const region = e.$response?.headers?.["x-amz-bucket-region"];
    return at(`bucket ${bucket} is in another region: set AWS_REGION${region ? `=${region}` : ""}`);
  }
  // Ceph's error bodies have no Message, which the SDK then calls "UnknownError".
  const detail = e.message && e.message !== "UnknownError" ? `: ${e.message}` : "";
  return at(`the S3 store answered ${status} ${e.name ?? ""}${detail}`.trimEnd());
}
