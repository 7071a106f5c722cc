// `bach task-report` says what each attempt was: failed (the program's doing), lost (its worker died
// or vanished), cancelled (the task ended, or a rival committed first) and backups (speculative), in
// text, --json and the --html page, whose timeline has a time axis in seconds and rows named for the
// workers; and it says how parallel the task ran: the cap given (null: none) and the slots it ran on.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { Ledger, type AttemptEnd } from "../coordinator/ledger";
import { taskReport } from "../coordinator/report";
import type { TaskReport } from "../core/report";
import { formatReport } from "../cli/format";
import { htmlReport } from "../cli/html-report";
import { runBach, startCluster, taskFolder, tempDir, waitFor } from "./harness";

const ok: AttemptEnd = { kind: "ok", retryable: true, exitCode: 0, reason: "", stderr: "", bytesIn: 100, bytesOut: 100, seconds: 1 };
const limits = { retries: 3, maxLost: 3 };

/** The part of a page under one heading, up to the next. */
function section(html: string, title: string): string {
  const start = html.indexOf(`<h2>${title}</h2>`);
  assert.ok(start >= 0, `no section "${title}" in the page`);
  const next = html.indexOf("<h2>", start + 4);
  return html.slice(start, next < 0 ? undefined : next);
}

const texts = (html: string, cls: string) => [...html.matchAll(new RegExp(`<text class="${cls}"[^>]*>([^<]*)</text>`, "g"))].map((m) => m[1]);

test("lost, cancelled and backup attempts are reported as such, on a time axis in seconds, with the parallelism the task had", () => {
  const t0 = 1_700_000_000_000;
  let now = t0;
  const l = new Ledger(path.join(tempDir(), "ledger.sqlite"), () => now);
  const worker = (id: string, name: string, host: string, slots: number) =>
    l.workerJoined({ id, name, host, slots, cpus: slots, memory_mb: 1024, disk_mb: 1024, gpus: 0, docker: 0, interruptible: 0 });
  worker("w1", "box-1a2b", "box", 2);
  worker("w2", "box-9f0e", "box", 2);
  worker("w3", "doomed", "other", 1);
  l.createTask({ id: "t1", name: "n", bachfile: "{}", bundleHash: "h", imageId: "", parallelism: 0, chunkSize: 100, inputKind: "stream", inputPath: "", dataStreams: 0 });
  l.addChunks("t1", [0, 1, 2, 3].map((seq) => ({ seq, offset: seq * 100, length: 100 })), 400, true);
  const by = (w: string) => ({ worker: w, session: 1 });
  const a1 = l.startAttempt("t1", 0, "w1");
  const a2 = l.startAttempt("t1", 1, "w3");
  const a3 = l.startAttempt("t1", 2, "w1");
  now = t0 + 1000;
  const a4 = l.startAttempt("t1", 3, "w2");
  now = t0 + 2000;
  l.endAttempt({ attempt: a4, by: by("w2"), to: "failed", end: { ...ok, kind: "exit", exitCode: 1, reason: "exit 1" }, limits });
  now = t0 + 2500;
  l.endAttempt({ attempt: a2, by: null, to: "lost", end: { ...ok, kind: "lost", exitCode: -1, reason: "worker w3 lost: no heartbeat for 2.1 s" }, limits });
  now = t0 + 3000;
  l.endAttempt({ attempt: a1, by: by("w1"), to: "succeeded", end: ok, limits });
  const a5 = l.startAttempt("t1", 1, "w1");
  const a6 = l.startAttempt("t1", 3, "w2");
  now = t0 + 5000;
  const a7 = l.startBackupAttempt("t1", 2, "w2");
  now = t0 + 6000;
  l.endAttempt({ attempt: a7, by: by("w2"), to: "succeeded", end: ok, limits });
  now = t0 + 7000;
  l.endAttempt({ attempt: a5, by: by("w1"), to: "succeeded", end: ok, limits });
  now = t0 + 12_000;
  l.endAttempt({ attempt: a6, by: by("w2"), to: "succeeded", end: ok, limits });

  const r = taskReport(l, "t1");
  assert.equal(r.state, "succeeded");
  assert.equal(r.parallelism, null, "no cap was given");
  assert.equal(r.slots, 5, "the slots of the three workers it ran on");
  assert.equal(r.peakAttempts, 4);
  assert.deepEqual(r.failures.map((f) => [f.attempt, f.state]), [[a4, "failed"]]);
  assert.deepEqual(r.lost.map((f) => [f.attempt, f.reason]), [[a2, "worker w3 lost: no heartbeat for 2.1 s"]]);
  assert.deepEqual(r.cancelled.map((f) => [f.attempt, f.reason]), [[a3, `attempt ${a7} committed the chunk first`]]);
  assert.deepEqual(r.backups.map((f) => [f.attempt, f.state]), [[a7, "succeeded"]]);
  assert.deepEqual(r.timeline.filter((b) => b.backup).map((b) => b.attempt), [a7]);

  const text = formatReport(r).split("\n");
  assert.ok(text.includes("  parallel  no cap: ran on 5 slots of 3 workers, at most 4 attempts at once"), text.join("\n"));
  const under = (title: string) => text.slice(text.findIndex((t) => t.startsWith(title)) + 1).filter((t, i, all) => all.slice(0, i + 1).every((x) => x.startsWith("    ")));
  assert.deepEqual(under("  failed attempts"), [`    chunk 3 (bytes 300-400), attempt ${a4} on w2: failed: exit 1`]);
  assert.deepEqual(under("  lost attempts"), [`    chunk 1 (bytes 100-200), attempt ${a2} on w3: lost: worker w3 lost: no heartbeat for 2.1 s`]);
  assert.deepEqual(under("  cancelled attempts"), [`    chunk 2 (bytes 200-300), attempt ${a3} on w1: cancelled: attempt ${a7} committed the chunk first`]);
  assert.deepEqual(under("  backup attempts"), [`    chunk 2 (bytes 200-300), attempt ${a7} on w2: succeeded`]);

  const html = htmlReport(r);
  assert.deepEqual(texts(html, "tick"), ["0 s", "2 s", "4 s", "6 s", "8 s", "10 s", "12 s"]);
  assert.deepEqual(texts(html, "worker").sort(), ["box-1a2b", "box-9f0e", "doomed"]);
  assert.match(html, /no cap: ran on 5 slots of 3 workers, at most 4 attempts at once/);
  assert.match(section(html, "Failed attempts"), new RegExp(`attempt ${a4} on w2`));
  assert.doesNotMatch(section(html, "Failed attempts"), new RegExp(`attempt ${a2} `), "a lost attempt is not a failure");
  assert.match(section(html, "Lost attempts"), new RegExp(`attempt ${a2} on w3: lost: worker w3 lost`));
  assert.match(section(html, "Cancelled attempts"), new RegExp(`attempt ${a3} on w1: cancelled: attempt ${a7} committed the chunk first`));
  assert.match(section(html, "Backup attempts"), new RegExp(`attempt ${a7} on w2: succeeded`));
  const backupBars = [...html.matchAll(/<rect class="backup"[^>]*><title>([^<]*)<\/title>/g)].map((m) => m[1]);
  assert.equal(backupBars.length, 1, "one bar marked as a backup");
  assert.match(backupBars[0], new RegExp(`^chunk 2, attempt ${a7} \\(backup\\): succeeded`));

  l.createTask({ id: "t2", name: "n", bachfile: "{}", bundleHash: "h", imageId: "", parallelism: 2, chunkSize: 100, inputKind: "stream", inputPath: "", dataStreams: 0 });
  l.addChunks("t2", [{ seq: 0, offset: 0, length: 100 }], 100, true);
  l.endAttempt({ attempt: l.startAttempt("t2", 0, "w1"), by: by("w1"), to: "succeeded", end: ok, limits });
  const capped = taskReport(l, "t2");
  assert.equal(capped.parallelism, 2);
  assert.ok(formatReport(capped).split("\n").includes("  parallel  -p 2: ran on 2 slots of 1 worker, at most 1 attempt at once"), formatReport(capped));
  l.close();
});

test("on a real cluster: a killed worker's attempts are lost, a straggler's backup is marked, the page and --json say so", async () => {
  const cluster = await startCluster();
  try {
    for (const name of ["steady", "slow", "doomed"]) await cluster.addWorker({ name, slots: 1 });
    const on = ["--coordinator", cluster.address, "--token", cluster.token];
    const input = path.join(tempDir(), "lines.txt");
    fs.writeFileSync(input, Array.from({ length: 3000 }, (_, i) => `line ${i}\n`).join(""));
    // On "slow" every chunk takes a minute (it gets a backup); on "doomed" 30 s (it is killed meanwhile).
    const task = taskFolder({ binary: "sh", args: ["-c", 'case "$BACH_WORKER" in slow) sleep 60;; doomed) sleep 30;; esac; sleep 0.2; cat'] });
    const running = runBach(["task-run", ...on, "--data", input, "--chunk-size", "2k", "--no-progress"], { cwd: task, timeoutMs: 120_000 });
    const db = new Database(path.join(cluster.dataDir, "ledger.sqlite"), { readonly: true });
    try {
      await waitFor("doomed to run a chunk", () =>
        db.prepare("SELECT 1 FROM attempts a JOIN workers w ON w.id = a.worker_id WHERE a.state='running' AND w.name='doomed'").get() !== undefined, 30_000);
    } finally {
      db.close();
    }
    await cluster.workers[2].stop("SIGKILL");
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));

    const json = await runBach(["task-report", ...on, "--json"], { cwd: task });
    const report = JSON.parse(json.stdout.toString()) as TaskReport;
    const doomed = report.workers.find((w) => w.name === "doomed");
    assert.ok(doomed, json.stdout.toString());
    assert.equal(report.parallelism, null, "no -p: no cap");
    assert.equal(report.slots, 3, "one slot on each of the three workers");
    assert.ok(report.peakAttempts >= 2 && report.peakAttempts <= 3, `at most 3 at once: ${report.peakAttempts}`);
    assert.ok(report.lost.length >= 1 && report.lost.every((a) => a.state === "lost" && a.worker === doomed.worker), JSON.stringify(report.lost));
    assert.ok(report.failures.every((a) => a.state === "failed"), "lost attempts are not listed as failed");
    assert.ok(report.backups.length >= 1, `the slow worker's chunk got a backup: ${JSON.stringify(report.attempts)}`);
    assert.ok(report.cancelled.some((a) => /committed the chunk first/.test(a.reason)), JSON.stringify(report.cancelled));

    const text = await runBach(["task-report", ...on], { cwd: task });
    assert.match(text.stdout.toString(), /^ {2}parallel {2}no cap: ran on 3 slots of 3 workers, at most [23] attempts at once$/m);
    assert.match(text.stdout.toString(), /^ {2}lost attempts/m);

    const page = path.join(tempDir(), "report.html");
    const html = await runBach(["task-report", ...on, "--html", page], { cwd: task });
    assert.equal(html.code, 0, html.stderr);
    const content = fs.readFileSync(page, "utf8");
    const ticks = texts(content, "tick");
    assert.equal(ticks[0], "0 s", content);
    assert.ok(ticks.length >= 3 && ticks.every((t) => /^\d+(\.\d+)? s$/.test(t)), ticks.join(", "));
    assert.deepEqual(texts(content, "worker").sort(), ["doomed", "slow", "steady"]);
    assert.match(section(content, "Lost attempts"), /on w\d+: lost: worker w\d+ lost/);
    assert.match(section(content, "Cancelled attempts"), /committed the chunk first/);
    assert.match(section(content, "Backup attempts"), /attempt \d+ on w\d+/);
    assert.ok(content.includes('<rect class="backup"'), "backups are marked in the timeline");
  } finally {
    await cluster.stop();
  }
});
