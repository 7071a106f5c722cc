// Map-reduce under faults: a worker SIGKILLed during the map phase or while a reduce attempt fetches
// its runs, the coordinator SIGKILLed and restarted in either phase: the output is still exactly the
// pipeline's, and the ledger has every map chunk and every reduce partition committed once. A reducer
// that fails every time fails the task naming its partition, the partition's keys and its stderr.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { runBach, startCluster, taskFolder, tempDir, waitFor, type Cluster } from "./harness";

function ledger<T>(dataDir: string, read: (db: Database.Database) => T): T {
  const db = new Database(path.join(dataDir, "ledger.sqlite"), { readonly: true, timeout: 5000 });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** Running attempts of one phase, on a worker (by name) or any. */
function running(dataDir: string, phase: "map" | "reduce", worker?: string): number {
  return ledger(dataDir, (db) =>
    (db.prepare(
      `SELECT COUNT(*) AS n FROM attempts a JOIN chunks c ON c.task_id = a.task_id AND c.seq = a.seq JOIN workers w ON w.id = a.worker_id
       WHERE a.state = 'running' AND c.phase = ? AND (? IS NULL OR w.name = ?)`,
    ).get(phase, worker ?? null, worker ?? null) as { n: number }).n,
  );
}

function committedMaps(dataDir: string): number {
  return ledger(dataDir, (db) => (db.prepare("SELECT COUNT(*) AS n FROM chunks WHERE phase = 'map' AND state = 'committed'").get() as { n: number }).n);
}

/** Every chunk and partition committed, each by exactly one succeeded attempt. */
function assertCommittedOnce(dataDir: string, partitions: number): void {
  ledger(dataDir, (db) => {
    const chunks = db.prepare("SELECT seq, phase, state FROM chunks").all() as { seq: number; phase: string; state: string }[];
    assert.ok(chunks.every((c) => c.state === "committed"), JSON.stringify(chunks.filter((c) => c.state !== "committed")));
    assert.equal(chunks.filter((c) => c.phase === "reduce").length, partitions);
    const twice = db.prepare("SELECT seq, COUNT(*) AS n FROM attempts WHERE state = 'succeeded' GROUP BY seq HAVING n != 1").all();
    assert.deepEqual(twice, [], "one succeeded attempt per chunk");
    const all = db.prepare("SELECT COUNT(DISTINCT seq) AS n FROM attempts WHERE state = 'succeeded'").get() as { n: number };
    assert.equal(all.n, chunks.length);
  });
}

function records(): { file: string; expected: Buffer } {
  const file = path.join(tempDir("bach-mr-"), "records");
  const lines: string[] = [];
  for (let i = 0; i < 120_000; i++) lines.push(`k${(i * 7919) % 53}\tvalue ${i}`);
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  const sorted = spawnSync("sort", ["-s", "-t", "\t", "-k1,1", file], { env: { ...process.env, LC_ALL: "C" }, maxBuffer: 1 << 28 });
  return { file, expected: sorted.stdout };
}

// Slowed identity programs, so that attempts are still running when the fault comes.
const task = () =>
  taskFolder({
    binary: "sh", args: ["-c", "sleep 0.3; cat"],
    reduce: { binary: "sh", args: ["-c", "sleep 1; cat"], order: "total", partitions: 3 },
  });

/** Attempts of one phase that were lost (with a worker, or with the coordinator's restart). */
function lost(dataDir: string, phase: "map" | "reduce"): number {
  return ledger(dataDir, (db) =>
    (db.prepare("SELECT COUNT(*) AS n FROM attempts a JOIN chunks c ON c.task_id = a.task_id AND c.seq = a.seq WHERE a.state = 'lost' AND c.phase = ?").get(phase) as { n: number }).n,
  );
}

async function faultRun(lostIn: "map" | "reduce", fault: (c: Cluster) => Promise<void>): Promise<void> {
  const cluster = await startCluster({ workers: 2, slots: 2 });
  try {
    const { file, expected } = records();
    const run = runBach(["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--data", file, "--chunk-size", "128k"], { cwd: task() });
    await fault(cluster);
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected), `output identical to the pipeline's (${r.stdout.length} bytes, expected ${expected.length})`);
    assertCommittedOnce(cluster.dataDir, 3);
    assert.ok(lost(cluster.dataDir, lostIn) >= 1, `the fault cost a ${lostIn} attempt`);
  } finally {
    await cluster.stop();
  }
}

describe("map-reduce survives kills", () => {
  test("a worker SIGKILLed during the map phase", () =>
    faultRun("map", async (c) => {
      await waitFor("a map attempt on worker-2", () => running(c.dataDir, "map", "worker-2") > 0);
      await c.workers[1].stop("SIGKILL");
    }));

  test("a worker SIGKILLed while its reduce attempt fetches runs", () =>
    faultRun("reduce", async (c) => {
      await waitFor("a reduce attempt on worker-2", () => running(c.dataDir, "reduce", "worker-2") > 0, 60_000);
      await c.workers[1].stop("SIGKILL");
    }));

  test("the coordinator SIGKILLed and restarted during the map phase", () =>
    faultRun("map", async (c) => {
      await waitFor("two map chunks committed", () => committedMaps(c.dataDir) >= 2);
      await c.restartCoordinator();
    }));

  test("the coordinator SIGKILLed and restarted during the reduce phase", () =>
    faultRun("reduce", async (c) => {
      await waitFor("a reduce attempt running", () => running(c.dataDir, "reduce") > 0, 60_000);
      await c.restartCoordinator();
    }));

  test("a map attempt that fails after writing its output leaves no run: the retry's run is the one reduced", async () => {
    const { file, expected } = records();
    const mark = path.join(tempDir("bach-mark-"), "failed-once");
    // Every chunk's first attempt writes its whole output (more than a pipe holds), then fails.
    const folder = taskFolder({
      binary: "sh", args: ["-c", 'cat; if [ ! -e "$MARK.$BACH_CHUNK" ]; then touch "$MARK.$BACH_CHUNK"; exit 3; fi'],
      env: { MARK: mark },
      reduce: { binary: "cat", order: "total", partitions: 2 },
    });
    const home = { BACH_HOME: tempDir("bach-home-") };
    const r = await runBach(["task-run", "--data", file, "-p", "2", "--chunk-size", "256k"], { cwd: folder, env: home });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(expected), "output identical to the pipeline's");
    const report = await runBach(["task-report", "--json"], { cwd: folder, env: home });
    const json = JSON.parse(report.stdout.toString()) as { attempts: { byState: Record<string, number> }; reduce: { mapChunks: number } };
    assert.equal(json.attempts.byState.failed, json.reduce.mapChunks, "each map chunk failed once");
  });

  test("task-output --partial of a failed map-reduce task prints the committed partitions and names the missing one", async (t) => {
    // One slot: partitions run in order, so partition 0 has committed before partition 1 fails the task.
    const cluster = await startCluster({ workers: 1, slots: 1 });
    t.after(() => cluster.stop());
    const file = path.join(tempDir("bach-mr-"), "records");
    fs.writeFileSync(file, "a\nb\nc\nd\n");
    // One record a map chunk: the splits sampled from the four runs put a and b in partition 0, c and d in 1,
    // whose reducer fails.
    const folder = taskFolder({
      binary: "cat", retries: 0,
      reduce: { binary: "sh", args: ["-c", 'd=$(cat); case "$d" in *c*) exit 3;; esac; printf "%s\\n" "$d"'], order: "total", partitions: 2 },
    });
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const run = await runBach(["task-run", ...on, "--data", file, "--chunk-size", "2"], { cwd: folder });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /reduce partition 1 \(keys from "c" on\) failed after 1 attempt: exit 3/);
    const id = /task (t-\S+)/.exec(run.stderr)?.[1] ?? "";
    const partial = await runBach(["task-output", id, ...on, "--partial"], { cwd: folder });
    assert.equal(partial.code, 1, partial.stderr);
    assert.equal(partial.stdout.toString(), "a\nb\n");
    assert.match(partial.stderr, /^bach: reduce partition 1 is missing: the task failed before it committed$/m);
  });

  test("a reducer that fails every time fails the task naming its partition, its keys and its stderr", async () => {
    const file = path.join(tempDir("bach-mr-"), "records");
    fs.writeFileSync(file, "b\t1\na\t2\nc\t3\n");
    const folder = taskFolder({ binary: "cat", retries: 1, reduce: { binary: "sh", args: ["-c", "cat > /dev/null; echo 'reducer: cannot add these' >&2; exit 3"], order: "total", partitions: 1 } });
    const r = await runBach(["task-run", "--data", file], { cwd: folder });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /reduce partition 0 \(all keys\) failed after 2 attempts: (exit 3|stderr: reducer: cannot add these)/);
    assert.match(r.stderr, /reducer: cannot add these/);
    assert.equal(r.stdout.length, 0);
  });
});
