// The proof of "nothing lost, nothing twice, whatever is killed": a task runs on three worker hosts
// (network namespaces of the test's own, each with its data dir on a small tmpfs) while a schedule
// drawn from a seed SIGKILLs and restarts workers and the coordinator, cuts hosts' links, SIGSTOPs
// workers past --lost-after and fills hosts' disks for a moment. At the end the output is byte for
// byte one run of the mapper, and the ledger shows every chunk committed once.
//
// Seeds: BACH_CHAOS_SEEDS=1,2,3 (or BACH_CHAOS_SEED=N); by default two fixed seeds and a random one.
// A failing seed replays its schedule: the test prints the seed and the schedule before running it.
// scripts/chaos runs many seeds one after another.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomInt } from "node:crypto";
import { execFileSync, type ChildProcess } from "node:child_process";
import Database from "better-sqlite3";
import { hostsUnavailable, makeHosts, type Hosts } from "./hosts";
import { runBach, runOnce, startCluster, taskFolder, tempDir, waitFor, type Cluster, type Daemon } from "./harness";
import { CHAOS_KINDS, describeAction, drawSchedule, INNER_RESTART_MS, parseSeed, PREFIX_LENGTH, type ChaosAction, type ChaosKind } from "./chaos-schedule";

// 480 chunks of ATTEMPT_MS on 6 slots take 20 s at the very least, undisturbed: longer than the
// schedule's first six actions can last (about 22 s at the most, during which the task stalls for
// its two coordinator restarts), so the task is still running when the minimums are met.
const CHUNKS = 480;
const HOSTS = 3;
const ACTIONS = 20; // the schedule's bound in count...
const LOOP_MS = 100_000; // ...and in time
const LOST_AFTER_MS = 1500;
/** Each attempt sleeps this long before it writes: the floor of how fast a full disk can fail a chunk. */
const ATTEMPT_MS = 250;
const FIXED_SEEDS = [1, 2];

function seeds(): number[] {
  const list = process.env.BACH_CHAOS_SEEDS?.trim();
  if (list) return list.split(",").map((s) => parseSeed(s, "BACH_CHAOS_SEEDS"));
  const one = process.env.BACH_CHAOS_SEED?.trim();
  if (one) return [parseSeed(one, "BACH_CHAOS_SEED")];
  return [...FIXED_SEEDS, randomInt(2 ** 32)];
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const joins = (d: Daemon) => d.stderr().split('"msg":"joined"').length - 1;

/** Fills the file system of `dir` to the last byte with one file; returns it. */
function fill(dir: string): string {
  const file = path.join(dir, "filler");
  const fd = fs.openSync(file, "w");
  const block = Buffer.alloc(1 << 20, 1);
  try {
    for (let i = 0; i < 1024; i++) fs.writeSync(fd, block); // bounded: the tmpfs is far smaller than 1 GiB
    throw new Error(`${dir} did not fill up with 1 GiB`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

for (const seed of seeds()) {
  test(`seed ${seed}: a task survives workers killed and stopped, the coordinator killed, hosts cut off and disks full, byte for byte`, async (t) => {
    const why = hostsUnavailable();
    if (why) {
      if (process.env.BACH_REQUIRE_DOCKER === "1") throw new Error(`in CI the chaos test must run: ${why}`);
      t.skip(why);
      return;
    }
    say(`# chaos seed: ${seed}`);
    const schedule = drawSchedule(seed, { hosts: HOSTS, count: ACTIONS, lostAfterMs: LOST_AFTER_MS });
    schedule.forEach((a, i) => say(`# chaos seed ${seed} action ${i + 1}: ${describeAction(a)}`));
    const coordinators: Daemon[] = [];
    try {
      await chaos(t, seed, schedule, coordinators);
    } catch (err) {
      // The coordinators' logs outlive the test's temp dirs, for the report of what went wrong.
      const log = path.join(os.tmpdir(), `bach-chaos-${seed}.log`);
      fs.writeFileSync(log, coordinators.map((c, i) => `=== coordinator ${i + 1} ===\n${c.stderr()}`).join("\n"));
      const replay = `BACH_CHAOS_SEEDS=${seed} node --test --test-concurrency=1 dist/test/chaos-loses-nothing.test.js`;
      const logs = coordinators.length > 0 ? `the coordinators' logs: ${log}` : "no coordinator started";
      throw new Error(`chaos seed ${seed} failed: ${(err as Error).message}\n(replay: ${replay}; ${logs})`, { cause: err });
    }
  });
}

async function chaos(t: TestContext, seed: number, schedule: ChaosAction[], coordinators: Daemon[]): Promise<void> {
  const began = Date.now();
  const at = () => `${((Date.now() - began) / 1000).toFixed(1)} s`;
  let hosts: Hosts | undefined;
  let cluster: Cluster | undefined;
  const mounts: string[] = [];
  let cli: ChildProcess | undefined;
  try {
    hosts = makeHosts(HOSTS);
    // Each host's data dir is a tmpfs of its own, so a disk-full moment strikes that host alone.
    for (let i = 0; i < HOSTS; i++) {
      const dir = tempDir("bach-host-");
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir]);
      mounts.push(dir);
    }
    // A chunk is lost with its worker at most once per worker kill, cut or stop: more than that many
    // losses would be a loop, not chaos (the default --max-lost 3 is for real clusters).
    const losing = schedule.filter((a) => a.kind === "worker-kill" || a.kind === "cut" || a.kind === "stop").length;
    cluster = await startCluster({ host: hosts.gateway, heartbeat: "200ms", lostAfter: `${LOST_AFTER_MS}ms`, coordinatorArgs: ["--max-lost", String(losing + 2)] });
    coordinators.push(cluster.coordinator);
    const c = cluster;
    const h = hosts;
    const workers: Daemon[] = [];
    const start = async (i: number) =>
      (workers[i] = await c.addWorker({ name: `host-${i}`, slots: 2, dataDir: mounts[i], wrap: h.exec(i), args: ["--runtime", "process"] }));
    for (let i = 0; i < HOSTS; i++) await start(i);

    const input = path.join(tempDir(), "records.txt");
    const line = (i: number) => `record ${String(i).padStart(7, "0")} ${"#".repeat(48)}\n`; // 64 bytes
    fs.writeFileSync(input, Array.from({ length: CHUNKS * 128 }, (_, i) => line(i)).join("")); // 128 records = 8 KiB a chunk
    // A disk-full moment fails every attempt on its host, one each ATTEMPT_MS at most, and each uses
    // up a retry of its chunk: the retries allow for the worst case (capped at the schema's 100).
    const full = schedule.filter((a) => a.kind === "disk-full").reduce((n, a) => n + Math.ceil(a.forMs / ATTEMPT_MS), 0);
    const retries = Math.min(100, 5 + full);
    const mapper = ["-c", `sleep ${ATTEMPT_MS / 1000}; tr a-z A-Z`];
    const task = taskFolder({ binary: "sh", args: mapper, retries });
    const expected = runOnce(task, "sh", mapper, input);

    let finished = false;
    const running = runBach(
      ["task-run", "--coordinator", c.address, "--token", c.token, "--chunk-size", "8k", "--no-progress", "--reconnect", "60s", "--data", input],
      { cwd: task, timeoutMs: 240_000, onStart: (p) => (cli = p) },
    ).finally(() => (finished = true));

    // The faults begin once the task exists: --reconnect carries a task across a coordinator's death,
    // while a CLI that finds no coordinator before its task is created says so and exits 3, by design.
    await waitFor("the task to be created", () => c.coordinator.stderr().includes('"msg":"task created"') || finished, 60_000);
    let inside = 0;
    /** Holds a fault for its time, with the coordinator killed and restarted inside it when drawn so. */
    const hold = async (a: ChaosAction) => {
      const held = Date.now();
      if (a.coordinatorKillAtMs !== null) {
        await sleep(a.coordinatorKillAtMs);
        await c.restartCoordinator(INNER_RESTART_MS);
        coordinators.push(c.coordinator);
        inside++;
      }
      await sleep(Math.max(0, a.forMs - (Date.now() - held)));
    };
    const survived = Object.fromEntries(CHAOS_KINDS.map((k) => [k, 0])) as Record<ChaosKind, number>;
    let done = 0;
    const until = Date.now() + LOOP_MS;
    for (const [n, a] of schedule.entries()) {
      await sleep(a.pauseMs);
      if (finished || Date.now() > until) break;
      const i = a.host ?? 0;
      if (a.kind === "worker-kill") {
        await workers[i].stop("SIGKILL");
        await sleep(a.forMs);
        await start(i);
      } else if (a.kind === "coordinator-kill") {
        await c.restartCoordinator(a.forMs);
        coordinators.push(c.coordinator);
      } else if (a.kind === "cut") {
        h.cut(i);
        await hold(a);
        h.restore(i);
      } else if (a.kind === "stop") {
        // Stopped past --lost-after, the worker is declared lost and its attempts run elsewhere; its
        // own attempts' programs run on, so when it wakes it reports results the ledger must refuse.
        const w = workers[i];
        const before = joins(w);
        w.proc.kill("SIGSTOP");
        await hold(a);
        w.proc.kill("SIGCONT");
        await waitFor(`the worker on host-${i} to join again after SIGCONT`, () => joins(w) > before || w.proc.exitCode !== null, 20_000);
        assert.equal(w.proc.exitCode, null, `the worker on host-${i} exited after SIGCONT:\n${w.stderr().slice(-2000)}`);
      } else {
        const filler = fill(mounts[i]);
        try {
          await hold(a);
        } finally {
          fs.rmSync(filler, { force: true });
        }
      }
      survived[a.kind]++;
      done++;
      say(`# chaos seed ${seed} action ${n + 1} (${a.kind}) done at ${at()}`);
    }
    const r = await running;
    const refused = coordinators.reduce((n, d) => n + d.stderr().split("attempt result refused").length - 1, 0);
    const tally = `${CHAOS_KINDS.map((k) => `${survived[k]} ${k}`).join(", ")}, ${inside} coordinator-kill inside another`;
    const last = r.stderr.trim().split("\n").pop() ?? "";
    assert.equal(r.code, 0, `bach exited ${r.code} (${last}):\n${r.stderr.slice(-3000)}`);
    assert.ok(r.stdout.equals(expected), `the output is not one run of the mapper (${r.stdout.length} bytes, ${expected.length} expected)`);
    assert.ok(done >= PREFIX_LENGTH, `the task ended at ${at()}, before the schedule's first ${PREFIX_LENGTH} actions had run (${tally}): it is too short for the chaos`);
    assert.ok(survived["coordinator-kill"] >= 2, `the coordinator was killed ${survived["coordinator-kill"]} times`);

    const db = new Database(path.join(c.dataDir, "ledger.sqlite"), { readonly: true });
    try {
      const id = (db.prepare("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").get() as { id: string }).id;
      const chunks = db.prepare("SELECT seq, state, committed_attempt FROM chunks WHERE task_id=? ORDER BY seq").all(id) as { seq: number; state: string; committed_attempt: number | null }[];
      assert.equal(chunks.length, CHUNKS);
      const open = chunks.filter((ch) => ch.state !== "committed" || ch.committed_attempt === null);
      assert.deepEqual(open, [], "every chunk committed");
      const succeeded = db.prepare("SELECT seq, COUNT(*) AS n FROM attempts WHERE task_id=? AND state='succeeded' GROUP BY seq").all(id) as { seq: number; n: number }[];
      assert.equal(succeeded.length, CHUNKS);
      assert.deepEqual(succeeded.filter((s) => s.n !== 1), [], "no chunk committed twice");
      const count = (where: string) => (db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE task_id=? AND ${where}`).get(id) as { n: number }).n;
      const lost = count("state='lost'");
      // tr's only error here is a write error (a full disk); under "stderr": "fail" the attempt is
      // killed at its first stderr bytes, so the reason may hold no more than "tr:".
      const noRoom = count("state='failed' AND (reason LIKE 'stderr: tr:%' OR reason LIKE '%space%')");
      const failed = count("state='failed'");
      const summary = `# chaos: seed ${seed} survived ${tally}; ${lost} attempts lost, ${failed} failed (${noRoom} for room), ${refused} results refused; ${at()}`;
      say(summary);
      t.diagnostic(summary.slice(2));
      // Why attempts failed, grouped: a kind of failure the faults should not cause shows up here first.
      const why = db.prepare("SELECT substr(reason, 1, 80) AS reason, COUNT(*) AS n FROM attempts WHERE task_id=? AND state='failed' GROUP BY 1 ORDER BY 2 DESC").all(id) as { reason: string; n: number }[];
      for (const w of why) say(`# chaos seed ${seed} failed attempts: ${w.n} x ${w.reason}`);
    } finally {
      db.close();
    }
  } finally {
    // A failed seed must not leave its CLI reconnecting while the next seed runs.
    if (cli && cli.exitCode === null) cli.kill("SIGKILL");
    await cluster?.stop();
    for (const dir of mounts) execFileSync("umount", ["-l", dir]);
    hosts?.remove();
  }
}
