// `bach storage`: datasets kept in a store, in pages of about 1 GiB cut at record ends, each page named
// by the sha256 of its bytes, and a manifest a dataset listing its pages. A second `put` of the same
// file, or of one that grew, uploads only the pages not already there, and says so. `--data bach://NAME`
// reads a stored dataset: its pages are the task's objects, so each worker reads its own.
//
// The store is a folder (by default $BACH_HOME/storage: an embedded run reads its pages in place) or an
// S3 prefix (`--store s3://bucket/prefix/` or $BACH_STORE: a cluster's workers read them by presigned
// URLs). Layout: pages/<sha256>, datasets/<NAME>.json.
import fs from "node:fs";
import path from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { InputError } from "../core/errors";
import { filePieces } from "../core/file-pieces";
import { frames } from "../core/frames";
import { formatBytes, parseSize } from "../core/sizes";
import type { S3Store } from "../core/s3";
import { bachHome } from "./embedded";

export interface DatasetManifest {
  name: string;
  delimiter: string;
  bytes: number;
  pages: { sha256: string; bytes: number }[];
  storedAt: string;
}

interface Store {
  /** Where it is, for messages. */
  where: string;
  hasPage(sha: string): Promise<boolean>;
  putPage(sha: string, data: Buffer): Promise<void>;
  readPage(sha: string): Promise<AsyncIterable<Buffer>>;
  deletePages(shas: string[]): Promise<void>;
  /** The page as a --data source: a path or an s3:// URL. */
  pageSource(sha: string): string;
  getManifest(name: string): Promise<DatasetManifest | null>;
  putManifest(m: DatasetManifest): Promise<void>;
  deleteManifest(name: string): Promise<void>;
  manifests(): Promise<DatasetManifest[]>;
}

const DEFAULT_PAGE = 1024 * 1024 * 1024;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkName(name: string): string {
  if (!NAME.test(name)) throw new InputError(`storage: ${JSON.stringify(name)} is not a dataset name (letters, digits, . _ -, at most 128, starting with a letter or digit)`, { field: "name" });
  return name;
}

/** The store `--store` (or $BACH_STORE) names, else the folder under Bach's home. */
export async function openStore(where: string | undefined): Promise<Store> {
  const target = where ?? process.env.BACH_STORE ?? path.join(bachHome(), "storage");
  if (/^s3:\/\//i.test(target)) {
    const { S3Store, parseS3Url } = await import("../core/s3");
    const at = parseS3Url(target);
    if (!at) throw new InputError(`--store ${target}: not an s3:// URL`);
    const prefix = at.key === "" || at.key.endsWith("/") ? at.key : `${at.key}/`;
    return s3Store(await S3Store.open({}), at.bucket, prefix);
  }
  return folderStore(path.resolve(target));
}

function folderStore(root: string): Store {
  const page = (sha: string) => path.join(root, "pages", sha);
  const manifestFile = (name: string) => path.join(root, "datasets", `${name}.json`);
  const writeAtomically = (file: string, data: Buffer | string) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const part = `${file}.${randomBytes(4).toString("hex")}.part`;
    fs.writeFileSync(part, data);
    fs.renameSync(part, file);
  };
  return {
    where: root,
    hasPage: async (sha) => fs.existsSync(page(sha)),
    putPage: async (sha, data) => writeAtomically(page(sha), data),
    readPage: async (sha) => filePieces(page(sha)),
    deletePages: async (shas) => shas.forEach((sha) => fs.rmSync(page(sha), { force: true })),
    pageSource: (sha) => page(sha),
    getManifest: async (name) => (fs.existsSync(manifestFile(name)) ? (JSON.parse(fs.readFileSync(manifestFile(name), "utf8")) as DatasetManifest) : null),
    putManifest: async (m) => writeAtomically(manifestFile(m.name), `${JSON.stringify(m, null, 2)}\n`),
    deleteManifest: async (name) => fs.rmSync(manifestFile(name), { force: true }),
    manifests: async () => {
      const dir = path.join(root, "datasets");
      if (!fs.existsSync(dir)) return [];
      return fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort().map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as DatasetManifest);
    },
  };
}

function s3Store(store: S3Store, bucket: string, prefix: string): Store {
  const page = (sha: string) => `${prefix}pages/${sha}`;
  const manifestKey = (name: string) => `${prefix}datasets/${name}.json`;
  const text = async (key: string) => {
    const chunks: Buffer[] = [];
    for await (const b of await store.get(bucket, key)) chunks.push(b as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  };
  const exists = async (key: string) => (await store.list(bucket, key)).some((o) => o.key === key);
  return {
    where: `s3://${bucket}/${prefix}`,
    hasPage: (sha) => exists(page(sha)),
    putPage: (sha, data) => store.put(bucket, page(sha), data, data.length),
    readPage: async (sha) => frames(await store.get(bucket, page(sha))),
    deletePages: (shas) => store.delete(bucket, shas.map(page)),
    pageSource: (sha) => `s3://${bucket}/${page(sha)}`,
    getManifest: async (name) => ((await exists(manifestKey(name))) ? (JSON.parse(await text(manifestKey(name))) as DatasetManifest) : null),
    putManifest: (m) => store.put(bucket, manifestKey(m.name), Buffer.from(`${JSON.stringify(m, null, 2)}\n`)),
    deleteManifest: (name) => store.delete(bucket, [manifestKey(name)]),
    manifests: async () => {
      const keys = (await store.list(bucket, `${prefix}datasets/`)).filter((o) => o.key.endsWith(".json"));
      return Promise.all(keys.map(async (o) => JSON.parse(await text(o.key)) as DatasetManifest));
    },
  };
}

/**
 * Cuts `source` into pages of about `pageBytes`, each ending just after a delimiter (the last may
 * not), holding one page in memory at a time.
 */
async function* pages(source: AsyncIterable<Buffer>, pageBytes: number, delimiter: Buffer): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  for await (const data of source) {
    held.push(Buffer.from(data));
    heldBytes += data.length;
    while (heldBytes > pageBytes) {
      const all = Buffer.concat(held);
      const cut = all.indexOf(delimiter, pageBytes - delimiter.length + 1);
      if (cut < 0) {
        held = [all];
        break;
      }
      yield all.subarray(0, cut + delimiter.length);
      held = [all.subarray(cut + delimiter.length)];
      heldBytes = held[0].length;
    }
  }
  if (heldBytes > 0) yield Buffer.concat(held);
}

/** `bach storage put FILE|- NAME`: returns the line that says what it stored. */
export async function storagePut(file: string, name: string, o: { store?: string; pageSize?: string; delimiter?: string }): Promise<string> {
  checkName(name);
  const store = await openStore(o.store);
  const pageBytes = o.pageSize ? parseSize(o.pageSize, "--page-size") : DEFAULT_PAGE;
  const delimiter = o.delimiter ?? "\n";
  let source: AsyncIterable<Buffer>;
  if (file === "-") source = frames(process.stdin);
  else {
    if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) throw new InputError(`storage put: ${file}: no such file`, { path: file });
    source = filePieces(file);
  }
  const previous = await store.getManifest(name);
  const manifest: DatasetManifest = { name, delimiter, bytes: 0, pages: [], storedAt: new Date().toISOString() };
  let uploaded = 0;
  let uploadedBytes = 0;
  for await (const page of pages(source, pageBytes, Buffer.from(delimiter, "utf8"))) {
    const sha = createHash("sha256").update(page).digest("hex");
    if (!(await store.hasPage(sha))) {
      await store.putPage(sha, page);
      uploaded++;
      uploadedBytes += page.length;
    }
    manifest.pages.push({ sha256: sha, bytes: page.length });
    manifest.bytes += page.length;
  }
  await store.putManifest(manifest);
  // The pages the dataset had before and no dataset uses now go: a task still reading the old version
  // fails naming the page it cannot read; it never mixes two versions.
  if (previous) await store.deletePages(await unusedPages(store, previous));
  const kept = manifest.pages.length - uploaded;
  return `${name}: ${formatBytes(manifest.bytes)} in ${manifest.pages.length} pages in ${store.where}; uploaded ${uploaded} (${formatBytes(uploadedBytes)})${kept ? `, ${kept} unchanged already there` : ""}`;
}

export async function storageLs(prefix: string | undefined, o: { store?: string; json?: boolean }): Promise<string> {
  const store = await openStore(o.store);
  const all = (await store.manifests()).filter((m) => !prefix || m.name.startsWith(prefix));
  if (o.json) return JSON.stringify(all.map((m) => ({ name: m.name, bytes: m.bytes, pages: m.pages.length, storedAt: m.storedAt })), null, 2);
  return all.map((m) => `${m.name}\t${formatBytes(m.bytes)}\t${m.pages.length} pages\t${m.storedAt}`).join("\n");
}

/** Writes a dataset to stdout, each page checked against its hash. */
export async function storageGet(name: string, o: { store?: string }): Promise<void> {
  const store = await openStore(o.store);
  const m = await must(store, checkName(name));
  for (const p of m.pages) {
    const hash = createHash("sha256");
    for await (const data of await store.readPage(p.sha256)) {
      hash.update(data);
      await new Promise<void>((resolve, reject) => process.stdout.write(data, (err) => (err ? reject(err) : resolve())));
    }
    if (hash.digest("hex") !== p.sha256) throw new Error(`storage get ${name}: page ${p.sha256.slice(0, 12)} in ${store.where} is not the bytes it was stored with`);
  }
}

/** Removes a dataset, and the pages no other dataset uses. */
export async function storageRm(name: string, o: { store?: string }): Promise<string> {
  const store = await openStore(o.store);
  const m = await must(store, checkName(name));
  await store.deleteManifest(name);
  const unused = await unusedPages(store, m);
  await store.deletePages(unused);
  return `${name}: removed (${unused.length} pages no other dataset uses)`;
}

/** `--data bach://NAME`: the dataset's pages, in order, as sources (paths or s3:// URLs). */
export async function datasetSources(url: string, storeOpt?: string): Promise<string[]> {
  const name = checkName(url.replace(/^bach:\/\//i, "").replace(/\/$/, ""));
  const store = await openStore(storeOpt);
  return (await must(store, name)).pages.map((p) => store.pageSource(p.sha256));
}

/** The pages of `m` that no dataset in the store lists. */
async function unusedPages(store: Store, m: DatasetManifest): Promise<string[]> {
  const used = new Set((await store.manifests()).flatMap((other) => other.pages.map((p) => p.sha256)));
  return [...new Set(m.pages.map((p) => p.sha256))].filter((sha) => !used.has(sha));
}

async function must(store: Store, name: string): Promise<DatasetManifest> {
  const m = await store.getManifest(name);
  if (!m) throw new InputError(`storage: no dataset ${name} in ${store.where} (bach storage ls lists them)`, { path: name });
  return m;
}
