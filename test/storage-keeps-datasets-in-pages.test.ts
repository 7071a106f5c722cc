// bach storage: a dataset kept in pages cut at record ends, named by their sha256; a second put of the
// same file uploads nothing, of a file that grew only its new pages; get gives the bytes back; a task
// reads it with --data bach://NAME; rm removes it and the pages nothing else uses. In a folder store
// (the default, under Bach's home) and in an S3 prefix, whose pages a cluster's workers read themselves.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir } from "./harness";
import { putObjects, startS3, type S3Server } from "./s3";

const file = path.join(tempDir(), "events.tsv");
const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => `event ${from + i}\t${"abcdef".repeat((from + i) % 30)}\n`).join("");
fs.writeFileSync(file, rows(0, 20000));
const cat = taskFolder({ "logical-name": "cat", binary: "cat" });

describe("a folder store", () => {
  const home = tempDir("bach-home-");
  const env = { BACH_HOME: home };

  test("put, put again, put a grown file, ls, get, run over it, rm", async () => {
    const put = await runBach(["storage", "put", file, "events", "--page-size", "64k"], { cwd: cat, env });
    assert.equal(put.code, 0, put.stderr);
    const pages = Number(/in (\d+) pages/.exec(put.stderr)?.[1]);
    assert.ok(pages >= 10, put.stderr);
    assert.match(put.stderr, new RegExp(`uploaded ${pages} \\(`));

    const again = await runBach(["storage", "put", file, "events", "--page-size", "64k"], { cwd: cat, env });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`uploaded 0 \\(0 B\\), ${pages} unchanged already there`));

    fs.appendFileSync(file, rows(20000, 3000));
    const grown = await runBach(["storage", "put", file, "events", "--page-size", "64k"], { cwd: cat, env });
    assert.equal(grown.code, 0, grown.stderr);
    const kept = Number(/(\d+) unchanged already there/.exec(grown.stderr)?.[1]);
    assert.ok(kept >= pages - 1, `every page but the old last one is kept: ${grown.stderr}`);

    const ls = await runBach(["storage", "ls"], { cwd: cat, env });
    assert.match(ls.stdout.toString(), /^events\t\S+ \S+\t\d+ pages\t/);
    const get = await runBach(["storage", "get", "events"], { cwd: cat, env });
    assert.equal(get.code, 0, get.stderr);
    assert.ok(get.stdout.equals(fs.readFileSync(file)), "the bytes stored");

    const run = await runBach(["task-run", "-p", "2", "--data", "bach://events"], { cwd: cat, env });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.equals(fs.readFileSync(file)), "a task over the dataset");

    const rm = await runBach(["storage", "rm", "events"], { cwd: cat, env });
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(fs.readdirSync(path.join(home, "storage", "pages")), [], "no page is left");
    const gone = await runBach(["storage", "get", "events"], { cwd: cat, env });
    assert.equal(gone.code, 2, gone.stderr);
    assert.match(gone.stderr.trim(), /^bach: storage: no dataset events in \S+ \(bach storage ls lists them\)$/);
  });

  test("a bad name is one line", async () => {
    const r = await runBach(["storage", "put", file, "../etc"], { cwd: cat, env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^bach: storage: "\.\.\/etc" is not a dataset name/);
  });
});

describe("an S3 store", () => {
  let s3: S3Server | null = null;
  before(async () => {
    s3 = await startS3();
    if (s3) await putObjects(s3, "bach-store", {});
  });
  after(() => s3?.stop());

  test("put into a prefix; a cluster's workers read its pages themselves", async (t) => {
    if (!s3) return t.skip("no S3 server here (radosgw is not installed)");
    const env = { ...s3.env, AWS_EC2_METADATA_DISABLED: "true", BACH_STORE: "s3://bach-store/datasets/" };
    const put = await runBach(["storage", "put", file, "events", "--page-size", "64k"], { cwd: cat, env });
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stderr, /in s3:\/\/bach-store\/datasets\//);
    const cluster = await startCluster({ slots: 2, coordinatorEnv: { ...s3.env, AWS_EC2_METADATA_DISABLED: "true" } });
    try {
      const noCredentials = { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent", AWS_CONFIG_FILE: "/nonexistent" };
      await cluster.addWorker({ env: noCredentials });
      await cluster.addWorker({ env: noCredentials });
      const run = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", "bach://events"], { cwd: cat, env });
      assert.equal(run.code, 0, run.stderr);
      assert.doesNotMatch(run.stderr, /goes through/);
      assert.ok(run.stdout.equals(fs.readFileSync(file)));
    } finally {
      await cluster.stop();
    }
  });
});
