// Two workers on one machine may share a --data-dir: their bundle caches fetch the same bundle at the
// same time into one folder, and both must get it whole, with no error and nothing left over.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { packBundle } from "../core/bundle";
import { BundleCache } from "../worker/bundle-cache";
import { taskFolder, tempDir } from "./harness";

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((next) => setImmediate(next));
};

/** The bundle's bytes in small pieces with a turn of the event loop between, so two fetches interleave. */
async function* slowly(file: string, fetched: () => void = () => undefined): AsyncGenerator<Buffer> {
  const bytes = fs.readFileSync(file);
  for (let at = 0; at < bytes.length; at += 4096) {
    await turns(1);
    yield bytes.subarray(at, at + 4096);
  }
  fetched();
}

test("two bundle caches on one folder fetching the same bundle at once both get it whole", async () => {
  const dir = tempDir("bach-shared-bundles-");
  const source = tempDir("bach-bundle-source-");
  const bundles = new Map<string, string>();
  const day = 24 * 60 * 60 * 1000;
  const file = (hash: string) => bundles.get(hash) ?? assert.fail(`unknown bundle ${hash}`);
  let aFetched = () => undefined as void;
  const a = new BundleCache(dir, (hash) => slowly(file(hash), () => aFetched()), day);
  const b = new BundleCache(dir, (hash) => slowly(file(hash)), day);
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    for (let round = 0; round < 12; round++) {
      const task = taskFolder({ binary: "sh", args: ["run.sh"] }, { "run.sh": `echo round ${round}\n`, "data.txt": `${round}`.repeat(100_000) });
      const bundle = await packBundle(task, source);
      bundles.set(bundle.hash, bundle.file);
      // B starts while A fetches (even rounds) or just as A has fetched and unpacks (odd rounds), a
      // little later each round: the moments when one worker's file is another's to read or remove.
      const bStarts = round % 2 === 0 ? turns(round * 4) : new Promise<void>((resolve) => (aFetched = resolve)).then(() => turns(round));
      const [fromA, fromB] = await Promise.all([a.use(bundle.hash), bStarts.then(() => b.use(bundle.hash))]);
      assert.equal(fromA.dir, fromB.dir);
      assert.equal(fs.readFileSync(path.join(fromA.dir, "run.sh"), "utf8"), `echo round ${round}\n`);
      assert.ok(fs.readFileSync(path.join(fromA.dir, "data.txt"), "utf8") === `${round}`.repeat(100_000), `round ${round}: data.txt arrived whole`);
      fromA.release();
      fromB.release();
      // Each sweep runs while the other cache's bundle is fresh: it must leave it alone.
      a.sweep();
      b.sweep();
      assert.ok(fs.existsSync(fromA.dir));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(rejections, [], "no unhandled rejection");
    assert.deepEqual(
      fs.readdirSync(dir).filter((name) => !/^[0-9a-f]{64}$/.test(name)),
      [],
      "no fetch or unpack leftovers: only whole bundles",
    );
  } finally {
    process.off("unhandledRejection", onRejection);
    a.stop();
    b.stop();
  }
});

test("a sweep removes only stale leftovers of fetches and unpacks, never a fresh one nor anything else", () => {
  const dir = tempDir("bach-sweep-");
  const hash = "c".repeat(64);
  const names = {
    staleFetch: `${hash}.0a1b2c3d4e5f.tar.partial`,
    staleUnpack: `${hash}.0a1b2c3d.partial`,
    staleOldFetch: `${hash}.tar`,
    freshFetch: `${"d".repeat(64)}.9f8e7d6c5b4a.tar.partial`,
    freshUnpack: `${"d".repeat(64)}.9f8e7d6c.partial`,
    stranger: `${hash}.notes`,
  };
  for (const [what, name] of Object.entries(names)) {
    const file = path.join(dir, name);
    if (what.endsWith("Unpack")) fs.mkdirSync(file);
    else fs.writeFileSync(file, "x");
    if (what.startsWith("stale") || what === "stranger") fs.utimesSync(file, new Date(0), new Date(0));
  }
  const cache = new BundleCache(dir, () => assert.fail("no fetch"), 24 * 60 * 60 * 1000);
  cache.stop();
  assert.deepEqual(fs.readdirSync(dir).sort(), [names.freshFetch, names.freshUnpack, names.stranger].sort());
});
