// `bach-worker join` to an address where nothing answers says so in one plain line (not a JSON line a
// second), keeps trying so that a worker started before its coordinator joins as soon as it comes up,
// and with --give-up stops with status 3 when nothing has answered by then.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { bin, freePort, startCluster, tempDir, waitFor } from "./harness";

function worker(address: string, args: string[] = []) {
  const proc = spawn(process.execPath, [bin.worker, "join", address, "--token", "s3cret", "--data-dir", tempDir("bach-worker-"), "--runtime", "process", ...args], {
    env: { ...process.env, BACH_LOG_LEVEL: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  process.on("exit", () => proc.exitCode === null && proc.kill("SIGKILL"));
  return { proc, stderr: () => stderr };
}

const nothing = (address: string) =>
  new RegExp(`^bach-worker: nothing answers at ${address.replace(/\./g, "\\.")} \\(connection refused\\); trying again every second until a coordinator does$`, "m");

test("a worker pointed where nothing answers says so in one plain line, not a JSON line a second", async () => {
  const address = `127.0.0.1:${await freePort()}`;
  const w = worker(address);
  try {
    await waitFor("the plain line", () => nothing(address).test(w.stderr()), 10_000);
    // Three seconds of retrying (one try a second): nothing more is said.
    const said = w.stderr();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(w.stderr(), said, "no line per retry");
    assert.doesNotMatch(said, /reconnecting|"level"/, "no JSON line about the retries");
  } finally {
    w.proc.kill("SIGKILL");
  }
});

test("with --give-up 2s, a worker nothing answers exits 3 with one line", async () => {
  const address = `127.0.0.1:${await freePort()}`;
  const started = Date.now();
  const w = worker(address, ["--give-up", "2s"]);
  const [code] = (await once(w.proc, "exit")) as [number | null];
  const took = Date.now() - started;
  assert.equal(code, 3, w.stderr());
  assert.ok(took < 6000, `it gave up after ${took} ms`);
  assert.match(w.stderr(), new RegExp(`^bach-worker: nothing answered at ${address.replace(/\./g, "\\.")} for 2s \\(--give-up 2s\\): is the coordinator running, and is that its address\\?$`, "m"));
});

test("a worker started 3 s before its coordinator joins it as soon as it is up", async () => {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const w = worker(address);
  try {
    await waitFor("the plain line", () => nothing(address).test(w.stderr()), 10_000);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const cluster = await startCluster({ port, dataListen: "127.0.0.1:0", token: "s3cret" });
    try {
      const up = Date.now();
      // The JSON line and the plain line are two writes to stderr, which may arrive in two reads: wait for
      // the plain line, which comes second.
      const joined = new RegExp(`^bach-worker: joined ${address.replace(/\./g, "\\.")} after \\d+s$`, "m");
      await waitFor("the worker to join", () => joined.test(w.stderr()), 10_000);
      assert.ok(Date.now() - up < 2500, `the worker joined ${Date.now() - up} ms after the coordinator listened`);
      assert.match(w.stderr(), /"msg":"joined"/);
    } finally {
      await cluster.stop();
    }
  } finally {
    w.proc.kill("SIGKILL");
  }
});
