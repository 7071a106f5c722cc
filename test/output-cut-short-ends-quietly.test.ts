// A program whose reader has gone (`bach-worker --help | head -1`) stops quietly (status 141, as a
// program killed by SIGPIPE), never with a stack trace of the EPIPE on stderr.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { bin } from "./harness";

for (const [name, program, args] of [
  ["bach", bin.bach, ["--help"]],
  ["bach task-run", bin.bach, ["task-run", "--help"]],
  ["bach-coordinator", bin.coordinator, ["--help"]],
  ["bach-worker", bin.worker, ["--help"]],
] as const) {
  test(`${name} --help into a pipe nobody reads: no stack trace`, async () => {
    const child = spawn(process.execPath, [program, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    // Closed before the program has started: its first write meets a pipe without a reader.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.doesNotMatch(stderr, /EPIPE|Unhandled|\.js:\d+/, stderr);
    // 141 as SIGPIPE would give; 0 when the help's own exit comes first.
    assert.ok(code === 141 || code === 0, `status ${code}: ${stderr}`);
  });
}
