// `bach task-run | head`: when the reader of the output goes away, bach cancels the task and ends
// quietly with 141, as a program killed by SIGPIPE does: no stack trace, nothing left running.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { bin, exampleDir, gdeltFile, runBach, tempDir } from "./harness";

test("a closed stdout cancels the task and exits 141", async () => {
  const input = gdeltFile(8 * 1024 * 1024);
  const home = tempDir("bach-home-");
  const proc = spawn(process.execPath, [bin.bach, "task-run", "--data", input, "-p", "2", "--chunk-size", "64k"], {
    cwd: exampleDir("gdelt-filter"),
    env: { ...process.env, BACH_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const closed = once(proc, "close");
  await once(proc.stdout, "data");
  proc.stdout.destroy();
  const [code] = (await closed) as [number | null];
  assert.equal(code, 141, stderr);
  assert.doesNotMatch(stderr, /internal error|\n\s+at /);
  const report = await runBach(["task-report", "--json"], { cwd: home, env: { BACH_HOME: home } });
  assert.equal((JSON.parse(report.stdout.toString()) as { state: string }).state, "cancelled");
});
