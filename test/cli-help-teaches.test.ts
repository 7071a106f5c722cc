// `bach --help` and every command's --help teach the tool: each lists its options with examples, and
// the exit statuses are documented.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { bin } from "./harness";

function help(program: string, args: string[]): string {
  const r = spawnSync(process.execPath, [program, ...args, "--help"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test("bach --help lists the commands and the exit statuses", () => {
  const text = help(bin.bach, []);
  for (const cmd of ["init", "task-build", "task-run", "task-report", "task-list", "task-cancel", "workers"]) assert.match(text, new RegExp(cmd));
  assert.match(text, /Exit status:[\s\S]*0\s+done[\s\S]*1\s+the task failed[\s\S]*2\s+bad input[\s\S]*3\s+coordinator unreachable/);
});

test("every command's help has examples", () => {
  for (const cmd of ["init", "task-build", "task-run", "task-report", "task-list", "task-cancel", "task-output", "workers"]) {
    assert.match(help(bin.bach, [cmd]), /Examples?:\n/, `bach ${cmd} --help`);
  }
  assert.match(help(bin.coordinator, ["start"]), /Examples:\n/);
  assert.match(help(bin.worker, ["join"]), /Examples:\n/);
});

test("the seed's spelling `bach task run` is task-run", () => {
  assert.match(help(bin.bach, ["task", "run"]), /--keep-order/);
});

test("bach init writes a bachfile that task-build accepts, and will not overwrite it", async () => {
  const { runBach, tempDir } = await import("./harness");
  const dir = tempDir();
  const init = await runBach(["init"], { cwd: dir });
  assert.equal(init.code, 0, init.stderr);
  const build = await runBach(["task-build"], { cwd: dir });
  assert.equal(build.code, 0, build.stderr);
  const again = await runBach(["init"], { cwd: dir });
  assert.equal(again.code, 2);
  assert.equal(again.stderr, "bach: bachfile.json exists already (bach init --force replaces it)\n");
});
