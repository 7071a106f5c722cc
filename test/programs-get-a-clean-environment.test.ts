// A plain-process program sees only what it needs: the bachfile's env, the attempt's BACH_* variables,
// and the locale, time zone, PATH, HOME, TMPDIR and user of the worker; never the worker's token nor
// anything else from the worker's environment.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
  await cluster.addWorker({
    name: "env-worker",
    env: { BACH_TOKEN: cluster.token, SECRET_CANARY: "do-not-leak", BACH_CANARY: "do-not-leak-either", TZ: "UTC", LC_TIME: "C" },
  });
});
after(() => cluster.stop());

test("a program's environment holds the bachfile's env and the attempt's variables, and no token or canary", async () => {
  const task = taskFolder({ binary: "env", env: { GREETING: "hello from the bachfile" } });
  const input = path.join(tempDir(), "input.txt");
  fs.writeFileSync(input, "one record\n");
  const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", input], { cwd: task });
  assert.equal(r.code, 0, r.stderr);
  const env = new Map(
    r.stdout
      .toString()
      .split("\n")
      .filter(Boolean)
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
  assert.ok(!env.has("BACH_TOKEN"), "no BACH_TOKEN");
  assert.ok(!env.has("SECRET_CANARY") && !env.has("BACH_CANARY"), "nothing else from the worker's environment");
  assert.ok(!r.stdout.toString().includes("do-not-leak") && !r.stdout.toString().includes(cluster.token), "no canary value, no token under any name");
  assert.equal(env.get("GREETING"), "hello from the bachfile");
  assert.match(env.get("BACH_TASK") ?? "", /^t-/);
  assert.equal(env.get("BACH_WORKER"), "env-worker");
  assert.equal(env.get("TZ"), "UTC");
  assert.equal(env.get("LC_TIME"), "C");
  assert.ok(env.get("PATH"), "PATH is kept, so the program finds its tools");
  const allowed = /^(PATH|HOME|LANG|LC_[A-Z_]+|TZ|TMPDIR|USER|LOGNAME|GREETING|BACH_(TASK|CHUNK|ATTEMPT|WORKER))$/;
  for (const name of env.keys()) assert.match(name, allowed, `${name} should not reach the program`);
});
