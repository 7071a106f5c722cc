// Bounded memory: streaming a large stdin through `bach task-run` does not grow the CLI's memory with
// the input (the spool is on disk, and backpressure holds the reader back); nor, on a cluster, the
// coordinator's or a worker's, with every byte crossing the data port four times (input in, chunks
// out to the worker, its output back, the output to the CLI).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createHash } from "node:crypto";
import { gdeltFile, runBach, startCluster, taskFolder } from "./harness";

const INPUT = 512 * 1024 * 1024;
const LIMIT = 300 * 1024 * 1024;

/** Polls a process's peak RSS from its start (`watch`, a runBach onStart) until `stop`, which returns it. */
function peakWatch(): { watch(p: { pid?: number }): void; stop(): number } {
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  return {
    watch(p) {
      timer = setInterval(() => {
        try {
          if (p.pid) peak = Math.max(peak, peakRss(p.pid));
        } catch {
          // The process ended between two looks; the last reading stands.
        }
      }, 50);
    },
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

function peakRss(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

test(`512 MiB on stdin keeps the CLI (with its embedded coordinator) under ${LIMIT >> 20} MiB`, { skip: process.platform !== "linux" && "needs /proc" }, async () => {
  const input = gdeltFile(INPUT);
  const cli = peakWatch();
  const r = await runBach(["task-run", "-p", "2"], {
    cwd: taskFolder({ binary: "wc", args: ["-c"] }),
    pipeFile: input,
    onStart: cli.watch,
  });
  const peak = cli.stop();
  assert.equal(r.code, 0, r.stderr);
  const counted = r.stdout.toString().trim().split("\n").reduce((n, l) => n + Number(l), 0);
  assert.equal(counted, fs.statSync(input).size, "every byte reached the mappers once");
  assert.ok(peak > 0, "measured");
  assert.ok(peak < LIMIT, `peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
});

test(`512 MiB through a cluster (cat, a network worker) keeps CLI, coordinator and worker under ${LIMIT >> 20} MiB`, { skip: process.platform !== "linux" && "needs /proc" }, async (t) => {
  const input = gdeltFile(INPUT);
  const cluster = await startCluster({ workers: 1, slots: 2 });
  t.after(() => cluster.stop());
  const peaks = { cli: 0, coordinator: 0, worker: 0 };
  const look = (name: keyof typeof peaks, pid: number | undefined) => {
    try {
      if (pid) peaks[name] = Math.max(peaks[name], peakRss(pid));
    } catch {
      // The process ended between two looks; the last reading stands.
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const r = await runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token], {
    cwd: taskFolder({ binary: "cat" }),
    pipeFile: input,
    onStart: (p) => {
      timer = setInterval(() => {
        look("cli", p.pid);
        look("coordinator", cluster.coordinator.proc.pid);
        look("worker", cluster.workers[0]?.proc.pid);
      }, 50);
    },
  });
  clearInterval(timer);
  assert.equal(r.code, 0, r.stderr);
  const hash = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  assert.equal(r.stdout.length, fs.statSync(input).size);
  assert.equal(hash(r.stdout), hash(fs.readFileSync(input)), "the output is the input, byte for byte");
  t.diagnostic(`peak RSS MiB: ${Object.entries(peaks).map(([name, peak]) => `${name} ${(peak / 2 ** 20).toFixed(0)}`).join(", ")}`);
  for (const [name, peak] of Object.entries(peaks)) {
    assert.ok(peak > 0, `${name} measured`);
    assert.ok(peak < LIMIT, `${name} peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
  }
});

test(`map-reduce: 512 MiB of map output with a distinct key a record, through -p 2, keeps the CLI under ${LIMIT >> 20} MiB`, { skip: process.platform !== "linux" && "needs /proc" }, async (t) => {
  const input = gdeltFile(INPUT);
  const cli = peakWatch();
  // Identity map (the whole input is map output), keyed by GDELT's event id (one key per record), and
  // reducers that count bytes: the sort spills and merges whatever the number of keys.
  const task = taskFolder({ binary: "cat", reduce: { binary: "wc", args: ["-c"], key: { separator: "\t", fields: 1 }, partitions: 2 } });
  const r = await runBach(["task-run", "--data", input, "-p", "2"], {
    cwd: task,
    onStart: cli.watch,
  });
  const peak = cli.stop();
  assert.equal(r.code, 0, r.stderr);
  const counted = r.stdout.toString().trim().split("\n").reduce((n, l) => n + Number(l), 0);
  assert.equal(counted, fs.statSync(input).size, "every record reached a reducer once");
  t.diagnostic(`peak RSS MiB: ${(peak / 2 ** 20).toFixed(0)}`);
  assert.ok(peak > 0, "measured");
  assert.ok(peak < LIMIT, `peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);
});
