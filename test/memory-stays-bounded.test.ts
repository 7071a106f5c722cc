// Bounded memory: streaming a large stdin through `bach task-run` does not grow the CLI's memory with
// the input (the spool is on disk, and backpressure holds the reader back).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { gdeltFile, runBach, taskFolder } from "./harness";

const INPUT = 512 * 1024 * 1024;
const LIMIT = 300 * 1024 * 1024;

function peakRss(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

test(`512 MiB on stdin keeps the CLI (with its embedded coordinator) under ${LIMIT >> 20} MiB`, { skip: process.platform !== "linux" && "needs /proc" }, async () => {
  const input = gdeltFile(INPUT);
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  const r = await runBach(["task-run", "-p", "2"], {
    cwd: taskFolder({ binary: "wc", args: ["-c"] }),
    pipeFile: input,
    onStart: (p) => {
      timer = setInterval(() => {
        try {
          if (p.pid) peak = Math.max(peak, peakRss(p.pid));
        } catch {
          // The process ended between two looks; the last reading stands.
        }
      }, 50);
    },
  });
  clearInterval(timer);
  assert.equal(r.code, 0, r.stderr);
  const counted = r.stdout.toString().trim().split("\n").reduce((n, l) => n + Number(l), 0);
  assert.equal(counted, fs.statSync(input).size, "every byte reached the mappers once");
  assert.ok(peak > 0, "measured");
  assert.ok(peak < LIMIT, `peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
});
