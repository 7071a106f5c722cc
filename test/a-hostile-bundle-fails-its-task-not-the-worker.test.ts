// A bundle is whatever a client uploaded. One with an entry named out of its folder, sent with a raw PutBundle (the CLI
// would never pack it), fails its task with a line naming the entry, after one attempt (no worker could
// do better, so no retry is spent), and the worker that met it stays up and runs the next task.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { RemoteApi } from "../cli/api";
import { parseBachfile } from "../core/bachfile";
import { fileSample } from "../core/file-sample";
import type { TaskReport } from "../core/report";
import { craftTar, runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

let cluster: Cluster;
let api: RemoteApi;
let failed: { state: string; error: string; report: TaskReport };

// Bounded: a worker that crashed on the bundle would leave the task waiting for one forever.
before(async () => {
  cluster = await startCluster({ workers: 1 });
  api = new RemoteApi(cluster.address, cluster.token);
  const bachfileJson = JSON.stringify({ binary: "cat", retries: 3 });
  const bundle = await craftTar([
    { name: "bachfile.json", body: bachfileJson },
    { name: "../escaped.txt", body: "out of the bundle's folder" },
  ]);
  const hash = createHash("sha256").update(fs.readFileSync(bundle)).digest("hex");
  await api.putBundle(hash, bundle);
  const input = path.join(tempDir(), "input.txt");
  fs.writeFileSync(input, "a\nb\nc\n");
  const task = await api.createTask({
    bachfile: parseBachfile(bachfileJson, "bachfile.json", "hostile"),
    bundleHash: hash,
    imageId: "",
    parallelism: 1,
    chunkSize: null,
    input: { kind: "path", path: input, sample: fileSample(input) },
    dataStreams: 1,
  });
  let end = { state: "", error: "" };
  for await (const ev of api.output(task.id, 0, true, 0, false)) if (ev.kind === "end") end = ev;
  failed = { ...end, report: await api.report(task.id) };
}, { timeout: 60_000 });

after(async () => {
  api?.close();
  await cluster.stop();
});

test("a task on a bundle with an entry out of its folder fails with a line naming the entry", () => {
  assert.equal(failed.state, "failed");
  assert.match(failed.error, /bundle entry "\.\.\/escaped\.txt" names a place outside its folder/);
});

test("the worker that met the hostile bundle is still up and runs the next task", async () => {
  const worker = cluster.workers[0];
  assert.equal(worker.proc.exitCode, null, `worker exited: ${worker.stderr().slice(-2000)}`);
  assert.equal(worker.proc.signalCode, null);
  const task = taskFolder({ binary: "tr", args: ["a-z", "A-Z"] });
  const input = path.join(tempDir(), "next.txt");
  fs.writeFileSync(input, "still here\n");
  const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", input], { cwd: task });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), "STILL HERE\n");
});

// Needs the coordinator to end a chunk on a non-retryable outcome (the worker reports bad-bundle, retryable false).
test("the task fails at once: one attempt, no retry spent on a bundle no worker can use", () => {
  assert.equal(failed.report.attempts.total, 1, `attempts: ${JSON.stringify(failed.report.failures.map((f) => f.reason))}`);
  assert.equal(failed.report.attempts.retries, 0);
});
