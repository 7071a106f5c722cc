// `--data FILE` against a coordinator that sees the same file (same machine, or a shared mount) is
// read in place: nothing is streamed or spooled, and the output is the same. A CLI that sees another
// file at that path streams its own; and a CLI whose sample does not match the coordinator's file
// (one it has not read) gets a streamed task, never the file.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { connect } from "../core/rpc";
import type { CreateTaskReply } from "../core/generated/bach";
import { exampleDir, gdeltFile, runBach, runOnce, startCluster, tempDir, waitFor, type Cluster } from "./harness";

const awkTask = exampleDir("awk-filter");
const awk = JSON.parse(fs.readFileSync(path.join(awkTask, "bachfile.json"), "utf8")) as { binary: string; args: string[] };
let cluster: Cluster;
const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

before(async () => {
  // Both workers as on other machines: chunks of a file read in place reach them over gRPC.
  cluster = await startCluster({ workers: 2, slots: 1 });
});
after(() => cluster.stop());

function task(id: string): { input_kind: string; input_path: string; bundle_hash: string; bachfile: string } {
  const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return db.prepare("SELECT input_kind, input_path, bundle_hash, bachfile FROM tasks WHERE id = ?").get(id) as { input_kind: string; input_path: string; bundle_hash: string; bachfile: string };
  } finally {
    db.close();
  }
}

async function newestTask(): Promise<string> {
  return waitFor("a task in the ledger", () => {
    const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
    try {
      return (db.prepare("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { id: string } | undefined)?.id;
    } finally {
      db.close();
    }
  });
}

test("a file the coordinator sees is read in place, with the same output", async () => {
  const input = gdeltFile(8 * 1024 * 1024);
  const r = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "1m", "-p", "2"], { cwd: awkTask });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(runOnce(awkTask, awk.binary, awk.args, input)), "output identical to one run");
  const row = task(await newestTask());
  assert.equal(row.input_kind, "path");
  assert.equal(row.input_path, input);
});

test("a CLI that sees another file at that path streams its own", async (t) => {
  if (spawnSync("unshare", ["-m", "true"]).status !== 0) {
    t.skip("unshare -m is not permitted here: no private mount to show the CLI another file");
    return;
  }
  const shown = gdeltFile(6 * 1024 * 1024);
  const dir = tempDir("bach-shadowed-");
  const coordinatorsFile = path.join(dir, "events.tsv");
  fs.writeFileSync(coordinatorsFile, "the coordinator's file, which the CLI never sees\n");
  // In a mount namespace of its own the CLI finds a tmpfs over `dir`, holding another file.
  const wrap = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && cp "$1" "$0/events.tsv" && shift 2 && exec "$@"', dir, shown];
  const r = await runBach(["task-run", ...on(), "--data", coordinatorsFile, "--chunk-size", "1m"], { cwd: awkTask, wrap });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(runOnce(awkTask, awk.binary, awk.args, shown)), "the output is the CLI's file's");
  assert.equal(task(await newestTask()).input_kind, "stream");
});

test("a sample that does not match the coordinator's file gets a streamed task, not the file", async () => {
  // The task before's bundle and bachfile, asking for a file this client never read.
  const { bundle_hash: bundleHash, bachfile: bachfileJson } = task(await newestTask());
  const client = connect(cluster.address, cluster.token);
  try {
    const reply = await new Promise<CreateTaskReply>((resolve, reject) =>
      client.createTask(
        { bachfileJson, bundleHash, imageId: "", parallelism: 1, chunkSize: 0, inputKind: "path", inputPath: "/etc/hostname", inputSample: "0".repeat(64), inputSources: [], dataStreams: 0, name: "probe" },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    assert.equal(reply.inputKind, "stream");
    assert.equal(task(reply.taskId).input_kind, "stream");
    await new Promise<void>((resolve, reject) => client.cancelTask({ taskId: reply.taskId }, (err) => (err ? reject(err) : resolve())));
  } finally {
    client.close();
  }
});
