// An attempt ends when its program's main process exits: whatever it left running in the background is
// killed then, so it can neither hold the attempt open nor write to a chunk's output once it is judged
// (and perhaps committed): the output read later is the output read at once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

// One background job keeps stderr open (so waiting for the pipes would wait for it), one does not (so
// the attempt would end at once and it would write after).
const leavesBackgroundJobs = taskFolder({
  binary: "sh",
  args: ["-c", "cat >/dev/null; (sleep 1; echo late) & (sleep 1; echo later) 2>/dev/null & echo main"],
});

function inputFile(): string {
  const file = path.join(tempDir(), "input.txt");
  fs.writeFileSync(file, "one record\n");
  return file;
}

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
  // Shares the coordinator's spool: it writes the chunk's output file in place, the file that commits.
  await cluster.addWorker({ localSpool: true });
});
after(() => cluster.stop());

test("on a cluster, a program's background jobs add nothing to its committed output, then or later", async () => {
  const on = ["--coordinator", cluster.address, "--token", cluster.token];
  const started = await runBach(["task-run", ...on, "--data", inputFile(), "--detach"], { cwd: leavesBackgroundJobs });
  assert.equal(started.code, 0, started.stderr);
  const id = started.stdout.toString().trim();
  const first = await runBach(["task-output", id, ...on], { cwd: leavesBackgroundJobs });
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.toString(), "main\n");
  // Longer than the background jobs' sleep: had they lived, they would have written by now.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const again = await runBach(["task-output", id, ...on], { cwd: leavesBackgroundJobs });
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(again.stdout, first.stdout);
});

test("in an embedded run, the output is the main process's alone", async () => {
  const r = await runBach(["task-run", "--data", inputFile()], { cwd: leavesBackgroundJobs });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), "main\n");
});
