// The seed's `--ip`: an embedded run listens on that address and prints how workers on other
// machines join it; a worker that joins takes chunks, and the output is still identical.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { bin, exampleDir, gdeltFile, runBach, runOnce, taskFolder, tempDir, waitFor } from "./harness";

test("bach task-run --ip ADDR prints the join line, and a joining worker takes chunks", async () => {
  const input = gdeltFile(4 * 1024 * 1024);
  const filter = fs.readFileSync(path.join(exampleDir("gdelt-filter"), "filter.js"), "utf8");
  const task = taskFolder({ binary: "sh", args: ["-c", "sleep 0.2; node filter.js"] }, { "filter.js": filter });
  const expected = runOnce(task, "node", ["filter.js"], input);
  const home = tempDir("bach-home-");
  const run = spawn(process.execPath, [bin.bach, "task-run", "--data", input, "-p", String(os.availableParallelism() + 1), "--chunk-size", "128k", "--ip", "127.0.0.1"], {
    cwd: task,
    env: { ...process.env, BACH_HOME: home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: Buffer[] = [];
  let stderr = "";
  run.stdout.on("data", (b: Buffer) => out.push(b));
  run.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const closed = once(run, "close");
  const join = await waitFor("the join line", () => /bach-worker join (\S+) --token (\S+)/.exec(stderr));
  const worker = spawn(process.execPath, [bin.worker, "join", join[1], "--token", join[2], "--name", "lan-box", "--no-local-spool", "--data-dir", tempDir()], {
    stdio: "ignore",
  });
  try {
    const [code] = (await closed) as [number | null];
    assert.equal(code, 0, stderr);
    assert.ok(Buffer.concat(out).equals(expected));
  } finally {
    worker.kill("SIGKILL");
  }
  const report = await runBach(["task-report", "--json"], { cwd: home, env: { BACH_HOME: home } });
  const workers = (JSON.parse(report.stdout.toString()) as { workers: { name: string; committed: number }[] }).workers;
  assert.ok(workers.some((w) => w.name === "lan-box" && w.committed > 0), JSON.stringify(workers));
});
