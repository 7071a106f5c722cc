// Placement by hardware: a chunk goes only to a worker with the task's minimums free, so a worker never
// runs more than fits at once; a task that no connected worker could ever fit fails at once, naming the
// requirement and the largest worker, instead of waiting forever.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import type { TaskReport } from "../core/report";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
  // Four slots, but 1024 MiB offered: a task needing 400 MiB a chunk fits twice.
  await cluster.addWorker({ slots: 4, name: "small", args: ["--memory", "1024", "--cpus", "2", "--gpus", "0"] });
});
after(() => cluster.stop());

const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `${i}\n`).join(""));
  return file;
}

/** Most attempts that ran at the same moment, from the report's timeline. */
function peakConcurrency(report: TaskReport): number {
  const edges = report.timeline.flatMap((b) => [
    { at: b.startMs, d: 1 },
    { at: b.endMs ?? Infinity, d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let peak = 0;
  for (const e of edges) peak = Math.max(peak, (now += e.d));
  return peak;
}

test("a worker runs no more attempts at once than its memory holds, whatever its slots", async () => {
  const task = taskFolder({ binary: "sh", args: ["-c", "sleep 0.3; cat"], hardware: { memory: { min: 400 } } });
  const input = lines(4000);
  const r = await runBach(["task-run", ...on(), "--data", "-", "--chunk-size", "2k"], { cwd: task, pipeFile: input });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  const report = JSON.parse((await runBach(["task-report", ...on(), "--json"], { cwd: task })).stdout.toString()) as TaskReport;
  assert.ok(report.chunks.planned >= 8, `expected many chunks, got ${report.chunks.planned}`);
  assert.equal(peakConcurrency(report), 2);
});

test("a task no worker could ever fit fails at once, naming the requirement and the largest worker", async () => {
  const memory = taskFolder({ binary: "cat", hardware: { memory: { min: 4096 } } });
  const r = await runBach(["task-run", ...on(), "--data", lines(10)], { cwd: memory, timeoutMs: 30_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /hardware\.memory\.min asks for 4096 MiB, and the largest worker \(\S+ small\) has 1024 MiB/);
  assert.equal(r.stdout.length, 0);

  const gpu = taskFolder({ binary: "cat", hardware: { graphics: { count: 1 } } });
  const g = await runBach(["task-run", ...on(), "--data", lines(10)], { cwd: gpu, timeoutMs: 30_000 });
  assert.equal(g.code, 1, g.stderr);
  assert.match(g.stderr, /hardware\.graphics asks for 1 GPU, and the largest worker \(\S+ small\) has 0 GPUs/);
});
