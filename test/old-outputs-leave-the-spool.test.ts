// Retention: a coordinator started with --keep-output keeps an ended task's output for that long
// (task-output prints it), then removes it and the bundle no kept task uses from its spool; the
// task's report stays, and task-output says plainly that the output is gone.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

const KEEP = "10s";
let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ workers: 1, coordinatorArgs: ["--keep-output", KEEP] });
});
after(() => cluster.stop());

const on = () => ["--coordinator", cluster.address, "--token", cluster.token];
const spool = (sub: string) => fs.readdirSync(path.join(cluster.dataDir, "spool", sub));

test(`an ended task's output stays for --keep-output ${KEEP}, then leaves the spool with its bundle; the report stays`, async () => {
  const input = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(input, Array.from({ length: 5000 }, (_, i) => `line ${i}\n`).join(""));
  const task = taskFolder({ binary: "cat" });
  const r = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "8k", "--detach"], { cwd: task });
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.toString().trim();

  const kept = await runBach(["task-output", id, ...on()], { cwd: task });
  assert.equal(kept.code, 0, kept.stderr);
  assert.ok(kept.stdout.equals(fs.readFileSync(input)), "the output is there while it is kept");
  assert.ok(spool("attempts").length > 0 && spool("bundles").some((f) => f.endsWith(".tar")));

  await waitFor("the output and the bundle to leave the spool", () => spool("attempts").length === 0 && !spool("bundles").some((f) => f.endsWith(".tar")), 60_000);
  const gone = await runBach(["task-output", id, ...on()], { cwd: task });
  assert.equal(gone.code, 2, gone.stderr);
  assert.match(gone.stderr, new RegExp(`^bach: the output of task ${id} was removed at \\S+, after it had been kept for bach-coordinator --keep-output \\(its report remains\\)$`, "m"));
  assert.equal(gone.stdout.length, 0);

  const report = await runBach(["task-report", id, ...on(), "--json"], { cwd: task });
  assert.equal(report.code, 0, report.stderr);
  const json = JSON.parse(report.stdout.toString()) as { state: string; outputRemovedAt: string | null; notes: string[] };
  assert.equal(json.state, "succeeded");
  assert.ok(json.outputRemovedAt, "the report says when the output left");
  assert.ok(json.notes.some((n) => /bach task-output can no longer print it/.test(n)));

  // The bundle left the spool, so the next run uploads it again and runs as before.
  const again = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "8k"], { cwd: task });
  assert.equal(again.code, 0, again.stderr);
  assert.ok(again.stdout.equals(fs.readFileSync(input)));
});
