// Bundles: packing a folder twice gives the same hash, .bachignore is honoured, and unpacking gives the
// files back (executable bits included).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { listTaskFiles, packBundle, unpackBundle } from "../core/bundle";
import { runBach, taskFolder, tempDir } from "./harness";

test("the same folder packs to the same hash; a change changes it", async () => {
  const dir = taskFolder({ binary: "sh", args: ["run.sh"] }, { "run.sh": "cat\n", "big.dat": "x".repeat(1000) });
  fs.mkdirSync(path.join(dir, "lib"));
  fs.writeFileSync(path.join(dir, "lib", "a.js"), "1");
  fs.writeFileSync(path.join(dir, ".bachignore"), "*.dat\n");
  assert.deepEqual(listTaskFiles(dir), [".bachignore", "bachfile.json", "lib/a.js", "run.sh"]);
  const cache = tempDir();
  const a = await packBundle(dir, cache);
  const b = await packBundle(dir, cache);
  assert.equal(a.hash, b.hash);
  fs.writeFileSync(path.join(dir, "lib", "a.js"), "2");
  const c = await packBundle(dir, cache);
  assert.notEqual(c.hash, a.hash);
  const out = path.join(tempDir(), "unpacked");
  await unpackBundle(c.file, out);
  assert.equal(fs.readFileSync(path.join(out, "lib", "a.js"), "utf8"), "2");
  assert.ok(fs.statSync(path.join(out, "run.sh")).mode & 0o100, "executable bit kept");
  assert.ok(!fs.existsSync(path.join(out, "big.dat")), ".bachignore honoured");
});

test("bach task-build validates and prints the bundle", async () => {
  const dir = taskFolder({ "logical-name": "upper", binary: "tr", args: ["a-z", "A-Z"] });
  const r = await runBach(["task-build"], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /^upper: bundle [0-9a-f]{16} \(1 file,/);
});

test("a worker's bundle cache fetches once, keeps a bundle in use, and removes one unused for its keep time", async () => {
  const { BundleCache } = await import("../worker/bundle-cache");
  const bundle = await packBundle(taskFolder({ binary: "cat" }, { "run.sh": "cat\n" }), tempDir());
  const dir = tempDir();
  // A fetch a stopped worker left half done, long ago, and one under way now.
  const stale = path.join(dir, `${"a".repeat(64)}.tar`);
  fs.writeFileSync(stale, "half");
  fs.utimesSync(stale, new Date(0), new Date(0));
  fs.writeFileSync(path.join(dir, `${"b".repeat(64)}.tar`), "under way");
  let clock = Date.now();
  let fetches = 0;
  const fetch = (hash: string) => {
    assert.equal(hash, bundle.hash);
    fetches++;
    return fs.createReadStream(bundle.file);
  };
  const day = 24 * 60 * 60 * 1000;
  const cache = new BundleCache(dir, fetch, day, () => clock);
  try {
    assert.ok(!fs.existsSync(stale), "a stale half fetch is removed");
    assert.ok(fs.existsSync(path.join(dir, `${"b".repeat(64)}.tar`)), "a recent one is left");

    const first = await cache.use(bundle.hash);
    assert.equal(fs.readFileSync(path.join(first.dir, "run.sh"), "utf8"), "cat\n");
    const second = await cache.use(bundle.hash);
    assert.equal(fetches, 1, "fetched once");
    first.release();

    clock += 2 * day;
    cache.sweep();
    assert.ok(fs.existsSync(second.dir), "a bundle in use stays, however old");
    second.release();
    cache.sweep();
    assert.ok(!fs.existsSync(second.dir), "unused for longer than its keep time: removed");

    const third = await cache.use(bundle.hash);
    assert.equal(fetches, 2, "fetched again after removal");
    third.release();
    clock += day / 2;
    cache.sweep();
    assert.ok(fs.existsSync(third.dir), "used within its keep time: kept");
  } finally {
    cache.stop();
  }
});

test("a task run from the folder that holds its input and Bach's home bundles neither", async () => {
  // Found running a benchmark with BACH_HOME inside the task folder: each run bundled the last run's
  // spool and bundles, 17 GB by the fourth, until the disk filled. An input beside the bachfile would
  // likewise go to every worker twice: once as the input, once in the bundle.
  const dir = taskFolder({ "logical-name": "wc", binary: "wc", args: ["-l"] }, { "run.sh": "cat\n" });
  fs.writeFileSync(path.join(dir, "events.tsv"), "a\nb\nc\n".repeat(1000));
  const home = path.join(dir, "home");
  for (let round = 0; round < 2; round++) {
    const r = await runBach(["task-run", "--data", "events.tsv", "-p", "1"], { cwd: dir, env: { BACH_HOME: home } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), "3000");
    assert.match(r.stderr, /^bach: events\.tsv is the task's input: left out of the bundle that workers download$/m);
  }
  const bundles = fs.readdirSync(path.join(home, "bundles")).filter((f) => f.endsWith(".tar"));
  assert.equal(bundles.length, 1, "the second run packs the same bundle: nothing of the first run's home is in it");
  const out = path.join(tempDir(), "unpacked");
  await unpackBundle(path.join(home, "bundles", bundles[0]), out);
  assert.deepEqual(fs.readdirSync(out).sort(), ["bachfile.json", "run.sh"]);
});
