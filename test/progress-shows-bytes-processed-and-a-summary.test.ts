// The progress line says how much of the input has been processed (committed chunks plus what the
// running attempts have been fed, as workers report it), at what recent rate, how far along and how
// long is left; every run ends with one summary line, on a terminal or not. The formatter is pure and
// tested as such; a real run in a tmux pane shows what a user sees.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { progressLine, RecentRate, summaryLine } from "../cli/progress";
import { bin, runBach, taskFolder, tempDir, waitFor } from "./harness";

const MiB = 2 ** 20;

describe("the progress line", () => {
  test("a file's progress is bytes processed of its size, a percentage, the recent rate and an ETA", () => {
    const line = progressLine({ done: 412 * MiB, total: 954 * MiB, bytesIn: 954 * MiB, inputDone: true, planned: 8, committed: 3, running: 2 }, 38.2 * MiB);
    assert.equal(line, "bach: 412 MiB of 954 MiB processed (43%), 38.2 MiB/s, ETA 14.2 s, chunks 3/8 done, 2 running");
  });

  test("a stream's size is unknown until it ends: what came in so far, and no percentage or ETA", () => {
    const line = progressLine({ done: 12 * MiB, total: null, bytesIn: 40 * MiB, inputDone: false, planned: 5, committed: 1, running: 2 }, null);
    assert.equal(line, "bach: 12.0 MiB processed (40.0 MiB in so far), -/s, chunks 1/5+ done, 2 running");
  });

  test("before any rate is known the ETA is not guessed", () => {
    assert.match(progressLine({ done: 0, total: 954 * MiB, bytesIn: 954 * MiB, inputDone: true, planned: 8, committed: 0, running: 2 }, null), /\(0%\), -\/s, ETA -, /);
  });

  test("the rate is over the last seconds, not since the start", () => {
    const rate = new RecentRate(10_000);
    assert.equal(rate.perSecond(), null);
    // 100 MiB/s for 20 s, then 10 MiB/s for 10 s: the rate since the start would be 70 MiB/s.
    let bytes = 0;
    for (let s = 0; s <= 20; s++) rate.add(s * 1000, (bytes = s * 100 * MiB));
    for (let s = 21; s <= 30; s++) rate.add(s * 1000, (bytes += 10 * MiB));
    assert.equal(rate.perSecond(), 10 * MiB);
  });

  test("the summary says chunks, bytes and time, and what failed", () => {
    assert.equal(
      summaryLine({ state: "succeeded", planned: 8, committed: 8, bytes: 954 * MiB, seconds: 27.3, failedAttempts: 0 }),
      "bach: done: 8 chunks, 954 MiB in 27.3 s (34.9 MiB/s)",
    );
    assert.equal(
      summaryLine({ state: "succeeded", planned: 8, committed: 8, bytes: 954 * MiB, seconds: 27.3, failedAttempts: 2 }),
      "bach: done: 8 chunks, 954 MiB in 27.3 s (34.9 MiB/s); 2 failed attempts were retried",
    );
    assert.equal(
      summaryLine({ state: "failed", planned: 8, committed: 7, bytes: 842 * MiB, seconds: 3.1, failedAttempts: 2 }),
      "bach: failed: 7 of 8 chunks committed, 842 MiB in 3.1 s; 2 failed attempts",
    );
  });
});

/** Reads stdin slowly (about 2 MiB/s) and copies it out: slow enough for several progress updates. */
const SLOW = `const fs = require("fs");
const buf = Buffer.alloc(65536);
for (;;) {
  const n = fs.readSync(0, buf, 0, buf.length, null);
  if (n === 0) break;
  fs.writeSync(1, buf, 0, n);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30);
}
`;

function bigFile(bytes: number): string {
  const file = path.join(tempDir("bach-data-"), "lines.txt");
  const line = "x".repeat(63) + "\n";
  fs.writeFileSync(file, line.repeat(bytes / 64));
  return file;
}

describe("what a user sees", () => {
  const sh = (...args: string[]) => spawnSync("tmux", args, { encoding: "utf8" });

  test("a terminal shows bytes processed growing, a percentage and an ETA, then one summary line", async () => {
    const task = taskFolder({ binary: "node", args: ["slow.js"] }, { "slow.js": SLOW });
    const data = bigFile(24 * MiB);
    const session = `bach-progress-${process.pid}`;
    const home = tempDir("bach-home-");
    const cmd = `cd ${task} && BACH_HOME=${home} ${process.execPath} ${bin.bach} task-run --data ${data} --chunk-size 4m -p 2 > ${task}/out; echo EXIT=$?; sleep 120`;
    assert.equal(sh("new-session", "-d", "-x", "200", "-y", "20", "-s", session, cmd).status, 0);
    try {
      const seen: string[] = [];
      const screen = await waitFor(
        "the run to end",
        () => {
          const pane = sh("capture-pane", "-p", "-t", session).stdout;
          for (const l of pane.split("\n")) if (/ processed /.test(l) && seen.at(-1) !== l.trim()) seen.push(l.trim());
          return /EXIT=\d+/.test(pane) && pane;
        },
        120_000,
      );
      assert.match(screen, /EXIT=0/);
      const shape = /^bach: (\S+ (?:B|KiB|MiB)) of 24\.0 MiB processed \((\d+)%\), (\S+ (?:B|KiB|MiB)\/s|-\/s), ETA (\S+(?: m?s)?|\d+m \d+s), chunks (\d)\/(?:6|\d\+) done, (\d) running$/;
      const parsed = seen.map((l) => {
        const m = shape.exec(l);
        assert.ok(m, `a progress line of the expected shape: ${JSON.stringify(l)}`);
        return { bytes: toBytes(m[1]), percent: Number(m[2]), eta: m[4], committed: Number(m[5]) };
      });
      assert.ok(parsed.length >= 4, `several updates: ${JSON.stringify(seen)}`);
      for (let i = 1; i < parsed.length; i++) assert.ok(parsed[i].bytes >= parsed[i - 1].bytes, `bytes processed never fall: ${JSON.stringify(seen)}`);
      assert.ok(parsed.some((p) => p.committed === 0 && p.bytes > 0), `running attempts count before any chunk commits: ${JSON.stringify(seen)}`);
      assert.ok(parsed.some((p) => p.percent > 0 && p.percent < 100 && /\d/.test(p.eta)), `a percentage and an ETA: ${JSON.stringify(seen)}`);
      assert.match(screen, /^bach: done: 6 chunks, 24\.0 MiB in \d+\.\d s \([\d.]+ (?:KiB|MiB)\/s\)$/m);
      assert.doesNotMatch(screen, / processed /, "the live line is gone at the end");
      assert.equal(fs.statSync(path.join(task, "out")).size, 24 * MiB);
    } finally {
      sh("kill-session", "-t", session);
    }
  });

  test("stderr that is not a terminal gets the summary line and no live line", async () => {
    const task = taskFolder({ binary: "cat", args: [] });
    const data = bigFile(2 * MiB);
    const r = await runBach(["task-run", "--data", data, "--chunk-size", "1m"], { cwd: task });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^bach: done: 2 chunks, 2\.00 MiB in (?:\d+ ms|\d+\.\d s) \([\d.]+ (?:KiB|MiB)\/s\)\n$/);
  });
});

function toBytes(text: string): number {
  const [n, unit] = text.split(" ");
  return Number(n) * ({ B: 1, KiB: 1024, MiB: MiB } as Record<string, number>)[unit];
}
