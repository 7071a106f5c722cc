// Exactly-once commit and bounded retries: a failed, killed or timed-out attempt leaves nothing in the
// result, its chunk runs again (elsewhere when it can), and a chunk that fails every time fails the task
// with its number, byte offset and stderr.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

/** Lines "1".."n", so any loss or doubling shows. */
function numbers(n: number): string {
  const file = path.join(tempDir(), "numbers.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `${i + 1}\n`).join(""));
  return file;
}

// Writes half its output, then fails on the first attempt of every chunk (marker files in MARKS).
const flaky = `
const fs = require("fs");
const mark = process.env.MARKS + "/" + process.env.BACH_CHUNK;
let data = "";
process.stdin.on("data", (d) => (data += d));
process.stdin.on("end", () => {
  const lines = data.split("\\n").filter(Boolean).map((l) => "seen " + l + "\\n");
  if (!fs.existsSync(mark)) {
    fs.writeFileSync(mark, "");
    process.stdout.write(lines.slice(0, lines.length / 2).join(""), () => process.exit(3));
    return;
  }
  process.stdout.write(lines.join(""));
});
`;

describe("embedded", () => {
  test("a failing first attempt is retried and leaves nothing behind", async () => {
    const marks = tempDir();
    const task = taskFolder({ binary: "node", args: ["flaky.js"], env: { MARKS: marks } }, { "flaky.js": flaky });
    const input = numbers(20000);
    const r = await runBach(["task-run", "--data", input, "-p", "2", "--chunk-size", "16k"], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    const expected = fs.readFileSync(input, "utf8").split("\n").filter(Boolean).map((l) => `seen ${l}\n`).join("");
    assert.equal(r.stdout.toString(), expected);
  });

  test("a chunk that fails every time fails the task with its number, offset and stderr", async () => {
    const task = taskFolder(
      { binary: "sh", args: ["-c", "if grep -q '^77$'; then echo 'bad record 77' >&2; exit 2; fi; cat"], retries: 2, stderr: "log" },
    );
    const input = numbers(200);
    const r = await runBach(["task-run", "--data", input, "-p", "2", "--chunk-size", "64"], { cwd: task });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^bach: task \S+ failed: chunk \d+ \(bytes \d+-\d+\) failed after 3 attempts: exit 2/m);
    assert.match(r.stderr, /bad record 77/);
    // What the embedded coordinator says on the way is plain lines, not log records.
    assert.match(r.stderr, /^bach: warning: attempt failed: the chunk runs again \(task: \S+, chunk: \d+, attempt: \d+, reason: exit 2/m);
    for (const line of r.stderr.split("\n").filter((l) => l && !/bad record 77|^bach: /.test(l))) assert.fail(`not a bach line: ${line}`);
  });

  test("stderr fails an attempt under the default \"stderr\": \"fail\"", async () => {
    const task = taskFolder({ binary: "sh", args: ["-c", "cat; echo warning >&2"], retries: 1 });
    const r = await runBach(["task-run", "--data", numbers(10), "-p", "1"], { cwd: task });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /failed after 2 attempts: stderr: warning/);
    assert.equal(r.stdout.length, 0, "no output from a failed chunk");
  });

  test("stderr is kept, not fatal, under \"stderr\": \"log\"", async () => {
    const task = taskFolder({ binary: "sh", args: ["-c", "cat; echo note >&2"], stderr: "log" });
    const input = numbers(10);
    const r = await runBach(["task-run", "--data", input], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  });

  test("an attempt over its timeout is killed and retried, then the task fails", async () => {
    const task = taskFolder({ binary: "sleep", args: ["30"], timeout: "300ms", retries: 1 });
    const started = Date.now();
    const r = await runBach(["task-run", "--data", numbers(3)], { cwd: task });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /timeout after 300 ms/);
    assert.ok(Date.now() - started < 20_000);
  });

  test("a program that does not exist on the worker fails clearly", async () => {
    const task = taskFolder({ binary: "no-such-program-xyz", retries: 0 });
    const r = await runBach(["task-run", "--data", numbers(3)], { cwd: task });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /program not found on worker \S+: no-such-program-xyz \(bachfile field binary\)/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  test("empty input gives empty output and exit 0", async () => {
    const task = taskFolder({ binary: "cat" });
    const empty = path.join(tempDir(), "empty");
    fs.writeFileSync(empty, "");
    const fromFile = await runBach(["task-run", "--data", empty], { cwd: task });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout.length, 0);
    const fromStdin = await runBach(["task-run"], { cwd: task, pipeFile: empty });
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.equal(fromStdin.stdout.length, 0);
  });

  test("input without a trailing delimiter and a record longer than the chunk size", async () => {
    const task = taskFolder({ binary: "cat" });
    const file = path.join(tempDir(), "odd");
    const text = `short\n${"x".repeat(5000)}\nshort again\nno newline at the end`;
    fs.writeFileSync(file, text);
    const r = await runBach(["task-run", "--data", file, "--chunk-size", "1k", "-p", "2"], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), text);
  });
});

test("streamed input: records longer than the chunk size, mid-chunk, over a multi-byte delimiter", async () => {
  const task = taskFolder({ binary: "cat", delimiter: "<>\n" });
  const file = path.join(tempDir(), "records");
  const records = Array.from({ length: 400 }, (_, i) => (i % 37 === 5 ? "L".repeat(3000 + i) : `r${i}`) + "<>\n");
  const text = `${records.join("")}tail without delimiter <`;
  fs.writeFileSync(file, text);
  const embedded = await runBach(["task-run", "--chunk-size", "1k", "-p", "2"], { cwd: task, pipeFile: file });
  assert.equal(embedded.code, 0, embedded.stderr);
  assert.equal(embedded.stdout.toString(), text);
});

describe("cluster", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ workers: 2, slots: 1 });
  });
  after(() => cluster.stop());

  test("a failed attempt is retried on the other worker, and commits exactly once", async () => {
    const marks = tempDir();
    const task = taskFolder({ binary: "node", args: ["flaky.js"], env: { MARKS: marks } }, { "flaky.js": flaky });
    const input = numbers(5000);
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const r = await runBach(["task-run", ...on, "--data", input, "--chunk-size", "8k"], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8").split("\n").filter(Boolean).map((l) => `seen ${l}\n`).join(""));
    const ledger = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
    try {
      const task = (ledger.prepare("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { id: string }).id;
      const rows = ledger.prepare("SELECT seq, worker_id, state FROM attempts WHERE task_id=? ORDER BY id").all(task) as { seq: number; worker_id: string; state: string }[];
      const bySeq = new Map<number, typeof rows>();
      for (const a of rows) bySeq.set(a.seq, [...(bySeq.get(a.seq) ?? []), a]);
      assert.ok(bySeq.size > 1);
      for (const [seq, attempts] of bySeq) {
        const ok = attempts.filter((a) => a.state === "succeeded");
        assert.equal(ok.length, 1, `chunk ${seq} committed once`);
        const failed = attempts.filter((a) => a.state === "failed");
        assert.equal(failed.length, 1, `chunk ${seq} failed once`);
        assert.notEqual(ok[0].worker_id, failed[0].worker_id, `chunk ${seq} retried on the other worker`);
      }
    } finally {
      ledger.close();
    }
  });
});
