// The proof of "nothing lost, nothing twice, whatever is killed": a task of 300 chunks runs on three
// worker hosts (network namespaces of the test's own) while a bounded loop SIGKILLs and restarts
// workers, SIGKILLs and restarts the coordinator, and cuts and restores a host's link. At the end the
// output is byte for byte one run of the mapper, and the ledger shows every chunk committed once.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { hostsUnavailable, makeHosts } from "./hosts";
import { runBach, startCluster, taskFolder, tempDir, type Daemon } from "./harness";

const CHUNKS = 300;
const ACTIONS = 16; // the loop's bound in count...
const LOOP_MS = 120_000; // ...and in time

test("a task survives workers killed, the coordinator killed twice and a host cut off, byte for byte", async (t) => {
  const why = hostsUnavailable();
  if (why) {
    if (process.env.BACH_REQUIRE_DOCKER === "1") throw new Error(`in CI the chaos test must run: ${why}`);
    t.skip(why);
    return;
  }
  const hosts = makeHosts(3);
  const cluster = await startCluster({ host: hosts.gateway, heartbeat: "200ms", lostAfter: "1500ms" });
  try {
    const dirs = [0, 1, 2].map(() => tempDir("bach-host-"));
    const workers: Daemon[] = [];
    const start = async (i: number) =>
      (workers[i] = await cluster.addWorker({ name: `host-${i}`, slots: 2, dataDir: dirs[i], wrap: hosts.exec(i), args: ["--runtime", "process"] }));
    for (let i = 0; i < hosts.count; i++) await start(i);

    const input = path.join(tempDir(), "records.txt");
    const line = (i: number) => `record ${String(i).padStart(7, "0")} ${"#".repeat(48)}\n`; // 64 bytes
    fs.writeFileSync(input, Array.from({ length: CHUNKS * 128 }, (_, i) => line(i)).join("")); // 128 records = 8 KiB a chunk
    const task = taskFolder({ binary: "sh", args: ["-c", "sleep 0.25; tr a-z A-Z"] });
    const expected = fs.readFileSync(input, "utf8").toUpperCase();

    let finished = false;
    const running = runBach(
      ["task-run", "--coordinator", cluster.address, "--token", cluster.token, "--chunk-size", "8k", "--no-progress", "--reconnect", "60s", "--data", input],
      { cwd: task, timeoutMs: 240_000 },
    ).finally(() => (finished = true));

    const survived = { workerKills: 0, coordinatorKills: 0, cuts: 0 };
    // Two coordinator kills among the first actions, so they happen while the task is young.
    const plan = ["worker", "coordinator", "cut", "worker", "coordinator", "cut", "worker", "worker", "cut", "worker", "coordinator", "cut", "worker", "cut", "worker", "worker"];
    const until = Date.now() + LOOP_MS;
    let rng = 7;
    const pick = () => (rng = (rng * 1103515245 + 12345) % 2 ** 31) % hosts.count;
    for (const action of plan.slice(0, ACTIONS)) {
      await new Promise((resolve) => setTimeout(resolve, 1200));
      if (finished || Date.now() > until) break;
      const i = pick();
      if (action === "worker") {
        await workers[i].stop("SIGKILL");
        await new Promise((resolve) => setTimeout(resolve, 300));
        await start(i);
        survived.workerKills++;
      } else if (action === "coordinator") {
        await cluster.restartCoordinator(500);
        survived.coordinatorKills++;
      } else {
        hosts.cut(i);
        await new Promise((resolve) => setTimeout(resolve, 2500)); // past --lost-after: the host is declared lost
        hosts.restore(i);
        survived.cuts++;
      }
    }
    const r = await running;
    t.diagnostic(`survived ${survived.workerKills} worker kills, ${survived.coordinatorKills} coordinator kills and ${survived.cuts} link cuts`);
    process.stdout.write(`# chaos: survived ${survived.workerKills} worker kills, ${survived.coordinatorKills} coordinator kills, ${survived.cuts} link cuts\n`);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.ok(r.stdout.toString() === expected, "the output is one run of the mapper, byte for byte");
    assert.ok(survived.coordinatorKills >= 2, `the coordinator was killed ${survived.coordinatorKills} times: the task ended too soon`);
    assert.ok(survived.cuts >= 1 && survived.workerKills >= 1);

    const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
    try {
      const id = (db.prepare("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { id: string }).id;
      const chunks = db.prepare("SELECT seq, state, committed_attempt FROM chunks WHERE task_id=? ORDER BY seq").all(id) as { seq: number; state: string; committed_attempt: number | null }[];
      assert.equal(chunks.length, CHUNKS);
      assert.ok(chunks.every((c) => c.state === "committed" && c.committed_attempt !== null), "every chunk committed");
      const succeeded = db.prepare("SELECT seq, COUNT(*) AS n FROM attempts WHERE task_id=? AND state='succeeded' GROUP BY seq").all(id) as { seq: number; n: number }[];
      assert.equal(succeeded.length, CHUNKS);
      assert.ok(succeeded.every((s) => s.n === 1), "no chunk committed twice");
      const lost = (db.prepare("SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND state='lost'").get(id) as { n: number }).n;
      t.diagnostic(`${lost} attempts lost and run again`);
    } finally {
      db.close();
    }
  } finally {
    await cluster.stop();
    hosts.remove();
  }
});
