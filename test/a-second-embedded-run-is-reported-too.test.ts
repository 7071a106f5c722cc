// Two embedded `bach task-run`s at once on one machine: the second runs apart from the first (its own
// ledger), and afterwards `bach task-list` shows both, `bach task-report ID` reports either, and
// `bach task-report` alone reports the later one.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, taskFolder, tempDir, waitFor } from "./harness";

test("a second embedded run while one is running is listed and reported afterwards, as the first is", async () => {
  const home = tempDir("bach-home-");
  const env = { BACH_HOME: home };
  const data = path.join(tempDir(), "words.txt");
  fs.writeFileSync(data, "alpha\nbeta\n");
  // The first run's program waits for the test's word, so the second surely starts while it runs.
  const go = path.join(tempDir(), "go");
  const slow = taskFolder({ binary: "sh", args: ["-c", `while [ ! -e ${go} ]; do sleep 0.05; done; cat`] });
  const first = runBach(["task-run", "--no-progress", "--data", data, "-p", "1"], { cwd: slow, env });
  await waitFor("the first run to hold the local ledger", () => fs.existsSync(path.join(home, "local", "owner.pid")));

  const second = await runBach(["task-run", "--no-progress", "--data", data, "-p", "1"], { cwd: taskFolder({ binary: "tac" }), env });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout.toString(), "beta\nalpha\n");
  fs.writeFileSync(go, "");
  const firstRun = await first;
  assert.equal(firstRun.code, 0, firstRun.stderr);
  assert.equal(firstRun.stdout.toString(), "alpha\nbeta\n");

  const list = await runBach(["task-list", "--json"], { cwd: slow, env });
  assert.equal(list.code, 0, list.stderr);
  const tasks = JSON.parse(list.stdout.toString()) as { id: string; state: string; createdAt: string }[];
  assert.equal(tasks.length, 2, list.stdout.toString());
  assert.deepEqual(tasks.map((t) => t.state), ["succeeded", "succeeded"]);
  const [later, earlier] = tasks;
  assert.ok(later.createdAt >= earlier.createdAt, "newest first");

  for (const t of tasks) {
    const report = await runBach(["task-report", t.id, "--json"], { cwd: slow, env });
    assert.equal(report.code, 0, report.stderr);
    const r = JSON.parse(report.stdout.toString()) as { id: string; state: string };
    assert.deepEqual([r.id, r.state], [t.id, "succeeded"]);
  }
  const latest = await runBach(["task-report", "--json"], { cwd: slow, env });
  assert.equal(latest.code, 0, latest.stderr);
  assert.equal((JSON.parse(latest.stdout.toString()) as { id: string }).id, later.id);
});
