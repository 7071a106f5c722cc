// Interruptible work, as in the original readme: a worker started with --interruptible is a spare
// machine that can be taken back. Its SIGTERM drains (it finishes its running chunks, takes no new
// ones, and leaves), and tasks that say "interruptible": false are never placed on it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import Database from "better-sqlite3";
import type { TaskReport } from "../core/report";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster.stop());

const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `line ${i}\n`).join(""));
  return file;
}

/** Whether the ledger has an attempt running on the worker named `name`. */
function runsOn(name: string): boolean {
  const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
  try {
    return db.prepare("SELECT 1 FROM attempts a JOIN workers w ON w.id = a.worker_id WHERE a.state='running' AND w.name=?").get(name) !== undefined;
  } finally {
    db.close();
  }
}

async function report(cwd: string): Promise<TaskReport> {
  return JSON.parse((await runBach(["task-report", ...on(), "--json"], { cwd })).stdout.toString()) as TaskReport;
}

test('a task with "interruptible": false fails at once when only spare workers are connected, and runs only on workers that stay', async () => {
  const spare = await cluster.addWorker({ name: "spare", slots: 2, args: ["--interruptible"] });
  const task = taskFolder({ binary: "cat", interruptible: false });
  const input = lines(5000);
  const alone = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "4k"], { cwd: task, timeoutMs: 30_000 });
  assert.equal(alone.code, 1, alone.stderr);
  assert.match(alone.stderr, /"interruptible": false, and every connected worker is interruptible/);

  await cluster.addWorker({ name: "server", slots: 1 });
  const r = await runBach(["task-run", ...on(), "--data", input, "--chunk-size", "4k"], { cwd: task });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  const shares = (await report(task)).workers;
  assert.deepEqual(shares.map((w) => w.name), ["server"], "nothing ran on the spare worker");
  await spare.stop("SIGKILL");
});

test("SIGTERM drains a spare worker: its running chunk finishes and commits, nothing is lost, it exits 0", async () => {
  const spare = await cluster.addWorker({ name: "spare-2", slots: 1, args: ["--interruptible", "--grace", "30s"] });
  const task = taskFolder({ binary: "sh", args: ["-c", "sleep 1.5; cat"] });
  const input = lines(3000);
  const running = runBach(["task-run", ...on(), "--data", input, "--chunk-size", "4k", "--no-progress"], { cwd: task });
  // Mid-chunk (it sleeps 1.5 s): the ledger has an attempt running on the spare worker.
  await waitFor("the spare worker to run a chunk", () => runsOn("spare-2"), 30_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const exited = once(spare.proc, "exit");
  spare.proc.kill("SIGTERM");
  const [code] = (await exited) as [number | null];
  assert.equal(code, 0, spare.stderr());
  assert.match(spare.stderr(), /draining/);
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  const rep = await report(task);
  const mine = rep.timeline.filter((b) => rep.workers.find((w) => w.worker === b.worker)?.name === "spare-2");
  assert.ok(mine.length >= 1, "the spare worker ran a chunk");
  assert.ok(mine.every((b) => b.state === "succeeded"), `its attempts all committed: ${mine.map((b) => b.state).join(", ")}`);
});
