// A slow stream (a log followed with tail -f) gives its output as it goes: records that have waited a
// couple of seconds run, however far their chunk is from full, while the input stays open; embedded
// and on a cluster (where the CLI's bytes cross the data port to the coordinator).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { bin, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

/** Runs bach with a pipe on stdin that the test writes to when it likes. */
function interactive(args: string[], cwd: string) {
  const proc = spawn(process.execPath, [bin.bach, ...args], { cwd, env: { ...process.env, BACH_HOME: tempDir("bach-home-") }, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const closed = once(proc, "close") as Promise<[number | null]>;
  return { proc, out: () => out, err: () => err, closed };
}

async function givesOutputAsItGoes(args: string[]): Promise<void> {
  const task = taskFolder({ binary: "cat", args: [] });
  const run = interactive(["task-run", "--no-progress", ...args], task);
  try {
    run.proc.stdin.write("first record\nsecond record\n");
    await waitFor("the first records' output while the input is still open", () => run.out() === "first record\nsecond record\n", 20_000);
    run.proc.stdin.write("third record\n");
    await waitFor("the third record's output", () => run.out().endsWith("third record\n"), 20_000);
    run.proc.stdin.end("last record\n");
    const [code] = await run.closed;
    assert.equal(code, 0, run.err());
    assert.equal(run.out(), "first record\nsecond record\nthird record\nlast record\n");
  } finally {
    run.proc.kill("SIGKILL");
  }
}

test("embedded: a slow stream's records come out while the input is still open", async () => {
  await givesOutputAsItGoes(["-p", "2"]);
});

describe("on a cluster", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ workers: 1, slots: 2 });
  });
  after(() => cluster.stop());

  test("a slow stream's records come out while the input is still open", async () => {
    await givesOutputAsItGoes(["--coordinator", cluster.address, "--token", cluster.token]);
  });
});
