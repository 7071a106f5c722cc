// Bad input gets one clear line naming what is wrong and where, a documented non-zero exit, no stack
// trace, and nothing on stdout that could pass for output.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, startCluster, taskFolder, tempDir, type Cluster, type Run } from "./harness";

function numbers(): string {
  const file = path.join(tempDir(), "n.txt");
  fs.writeFileSync(file, "1\n2\n3\n");
  return file;
}

function assertUserError(r: Run, status: number, pattern: RegExp): void {
  assert.equal(r.code, status, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, "no stack trace");
  assert.equal(r.stdout.length, 0, "nothing on stdout");
}

describe("the bachfile", () => {
  test("a wrong type names the field", async () => {
    const r = await runBach(["task-run", "--data", numbers()], { cwd: taskFolder({ binary: "cat", retries: "three" }) });
    assertUserError(r, 2, /^bach: .*bachfile\.json: retries: /m);
  });

  test("a missing binary", async () => {
    const r = await runBach(["task-run", "--data", numbers()], { cwd: taskFolder({ args: ["x"] }) });
    assertUserError(r, 2, /binary: .*required/);
  });

  test("an unknown field", async () => {
    const r = await runBach(["task-build"], { cwd: taskFolder({ binary: "cat", hardware: { cpus: 2 } }) });
    assertUserError(r, 2, /^bach: bachfile\.json: hardware\.cpus: unknown field \(did you mean "cpu"\?\)$/m);
  });

  test("cpu.min greater than cpu.max", async () => {
    const r = await runBach(["task-build"], { cwd: taskFolder({ binary: "cat", hardware: { cpu: { min: 3, max: 2 } } }) });
    assertUserError(r, 2, /hardware\.cpu\.min: .*3.*2/);
  });

  test("a reduce block with a bad field names it: unknown, fields < 1, an empty separator, partitions 0", async () => {
    const cases: [object, RegExp][] = [
      [{ binary: "cat", sort: true }, /^bach: bachfile\.json: reduce\.sort: unknown field/m],
      [{ binary: "cat", key: { separator: "\t", fields: 0 } }, /^bach: bachfile\.json: reduce\.key\.fields: must be a whole number of at least 1/m],
      [{ binary: "cat", key: { separator: "" } }, /^bach: bachfile\.json: reduce\.key\.separator: must not be empty/m],
      [{ binary: "cat", partitions: 0 }, /^bach: bachfile\.json: reduce\.partitions: must be "auto" or a whole number from 1 to 1000, got 0/m],
      [{ binary: "cat", order: "sorted" }, /^bach: bachfile\.json: reduce\.order: must be "hash" or "total", got "sorted"/m],
    ];
    for (const [reduce, pattern] of cases) {
      const r = await runBach(["task-run", "--data", numbers()], { cwd: taskFolder({ binary: "cat", reduce }) });
      assertUserError(r, 2, pattern);
    }
  });

  test("no bachfile at all", async () => {
    const r = await runBach(["task-run", "--data", numbers()], { cwd: tempDir() });
    assertUserError(r, 2, /no bachfile\.json in .*bach init/);
  });
});

describe("the command line", () => {
  test("a --data path that does not exist", async () => {
    const r = await runBach(["task-run", "--data", "/no/such/file.tsv"], { cwd: taskFolder({ binary: "cat" }) });
    assertUserError(r, 2, /^bach: --data \/no\/such\/file\.tsv: no such file$/m);
  });

  test("a bad --chunk-size and a bad -p", async () => {
    const cwd = taskFolder({ binary: "cat" });
    assertUserError(await runBach(["task-run", "--data", numbers(), "--chunk-size", "12q"], { cwd }), 2, /--chunk-size/);
    assertUserError(await runBach(["task-run", "--data", numbers(), "-p", "0"], { cwd }), 2, /-p 0/);
  });

  test("an unknown option", async () => {
    const r = await runBach(["task-run", "--frobnicate"], { cwd: taskFolder({ binary: "cat" }) });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--frobnicate'/);
  });

  test("an unreachable coordinator", async () => {
    const r = await runBach(["task-run", "--data", numbers(), "--coordinator", "127.0.0.1:1"], { cwd: taskFolder({ binary: "cat" }) });
    assertUserError(r, 3, /^bach: coordinator 127\.0\.0\.1:1 unreachable/m);
  });
});

describe("tokens", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ workers: 1 });
  });
  after(() => cluster.stop());

  test("a CLI with a wrong token is refused", async () => {
    const r = await runBach(["task-run", "--data", numbers(), "--coordinator", cluster.address, "--token", "wrong"], { cwd: taskFolder({ binary: "cat" }) });
    assertUserError(r, 3, /refused us: wrong token/);
  });

  test("a CLI with no token is refused, for every command", async () => {
    const cwd = taskFolder({ binary: "cat" });
    for (const cmd of [["task-list"], ["workers"], ["task-report"]]) {
      const r = await runBach([...cmd, "--coordinator", cluster.address], { cwd, env: { BACH_TOKEN: "" } });
      assertUserError(r, 3, /refused us: a token is required/);
    }
  });

  test("a worker with a wrong token is refused and exits 3", async () => {
    const { spawnSync } = await import("node:child_process");
    const { bin } = await import("./harness");
    const r = spawnSync(process.execPath, [bin.worker, "join", cluster.address, "--token", "wrong", "--data-dir", tempDir()], { timeout: 20_000 });
    assert.equal(r.status, 3, r.stderr.toString());
    assert.match(r.stderr.toString(), /bach-worker: coordinator \S+ refused us: wrong token/);
  });
});
