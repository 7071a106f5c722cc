// A data dir that fills up fails the task that needed the space, with one clear line, and nothing
// else: the coordinator stays up, its ledger passes SQLite's integrity check, and once space is back
// the next task runs. The data dir is a small tmpfs of the test's own (root only: skipped otherwise).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

function lines(n: number, width = 60): string {
  const file = path.join(tempDir(), "lines.txt");
  const pad = "x".repeat(width);
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `${i} ${pad}\n`).join(""));
  return file;
}

/** Fills the file system of `dir` up to all but `leaveBytes` with one file; returns it. */
function fill(dir: string, leaveBytes: number): string {
  const file = path.join(dir, "filler");
  const { bavail, bsize } = fs.statfsSync(dir);
  const size = Math.max(0, bavail * bsize - leaveBytes);
  const fd = fs.openSync(file, "w");
  const block = Buffer.alloc(1 << 20, 1);
  try {
    for (let left = size; left > 0; ) {
      const n = fs.writeSync(fd, block, 0, Math.min(block.length, left));
      left -= n;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

function integrity(dataDir: string): string {
  const db = new Database(path.join(dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return (db.pragma("integrity_check", { simple: true }) as string) ?? "";
  } finally {
    db.close();
  }
}

const canMount = process.getuid?.() === 0;

describe("a full disk", { skip: canMount ? false : "needs root to mount a small tmpfs" }, () => {
  let mountPoint = "";
  let c: Cluster;
  before(async () => {
    mountPoint = tempDir("bach-full-");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mountPoint]);
    c = await startCluster({ workers: 1, dataDir: path.join(mountPoint, "data") });
  });
  after(async () => {
    await c?.stop();
    execFileSync("umount", ["-l", mountPoint]);
  });

  for (const leave of [0, 64 * 1024, 512 * 1024, 2 * 1024 * 1024]) {
    test(`with ${leave >> 10} KiB left, the task that needs space fails with one line; the coordinator stays up`, async () => {
      const task = taskFolder({ binary: "cat" });
      const input = lines(120_000);
      const filler = fill(mountPoint, leave);
      try {
        const r = await runBach(["task-run", "--coordinator", c.address, "--token", c.token, "--chunk-size", "64k", "--reconnect", "10s"], { cwd: task, pipeFile: input, timeoutMs: 90_000 });
        assert.equal(r.code, 1, `exit ${r.code}: ${r.stderr}\n--- coordinator ---\n${c.coordinator.stderr().slice(-4000)}`);
        assert.match(r.stderr, /^bach: (task \S+ failed: .*)?the coordinator.s data dir is full/m);
        assert.equal(c.coordinator.proc.exitCode, null, `the coordinator exited:\n${c.coordinator.stderr().slice(-3000)}`);
      } finally {
        fs.rmSync(filler, { force: true });
      }
      assert.equal(integrity(c.dataDir), "ok");
      // Space is back: the next task runs, on the same coordinator.
      const small = lines(2000);
      const ok = await runBach(["task-run", "--data", small, "--coordinator", c.address, "--token", c.token], { cwd: task });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.toString(), fs.readFileSync(small, "utf8"));
    });
  }
});
