// `bach workers` tells workers apart and says what became of them: a worker started without --name is
// named for its host plus a short id (two on one host differ), `last seen` moves with its heartbeats,
// a worker that drained on SIGTERM shows `left`, and one killed shows `lost`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import os from "node:os";
import { once } from "node:events";
import type { WorkerSummary } from "../core/report";
import { runBach, startCluster, tempDir, waitFor, type Cluster, type Daemon } from "./harness";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ heartbeat: "200ms" });
});
after(() => cluster.stop());

const on = () => ["--coordinator", cluster.address, "--token", cluster.token];

async function workers(): Promise<{ text: string; list: WorkerSummary[] }> {
  const cwd = tempDir();
  const text = await runBach(["workers", ...on()], { cwd });
  assert.equal(text.code, 0, text.stderr);
  const json = await runBach(["workers", ...on(), "--json"], { cwd });
  return { text: text.stdout.toString(), list: JSON.parse(json.stdout.toString()) as WorkerSummary[] };
}

/** The worker id the coordinator gave a worker, from its "joined" log line. */
function idOf(d: Daemon): string {
  const id = /"worker":"(w\d+)"[^\n]*"msg":"joined"/.exec(d.stderr())?.[1];
  assert.ok(id, d.stderr());
  return id;
}

/** The row of `bach workers` for a worker id, its columns split. */
function row(text: string, id: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith(`${id} `));
  assert.ok(line, `no row for ${id} in:\n${text}`);
  return line.trim().split(/\s{2,}/);
}

test("two workers on one host without --name get different names: the host and a short id", async () => {
  const a = await cluster.addWorker({ name: null });
  const b = await cluster.addWorker({ name: null });
  const { text } = await workers();
  const [nameA, nameB] = [row(text, idOf(a))[1], row(text, idOf(b))[1]];
  const host = os.hostname().replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  assert.match(nameA, new RegExp(`^${host}-[0-9a-f]{4}$`), text);
  assert.match(nameB, new RegExp(`^${host}-[0-9a-f]{4}$`), text);
  assert.notEqual(nameA, nameB, text);
});

test("last seen moves with heartbeats; a drained worker is left, a killed one lost, each last seen when it went", async () => {
  const draining = await cluster.addWorker({ name: "drains" });
  const killed = await cluster.addWorker({ name: "killed" });
  const [drainsId, killedId] = [idOf(draining), idOf(killed)];
  const first = (await workers()).list.find((w) => w.id === drainsId);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const { text, list } = await workers();
  const second = list.find((w) => w.id === drainsId);
  assert.ok(first && second);
  const moved = Date.parse(second.lastSeen) - Date.parse(first.lastSeen);
  assert.ok(moved >= 1000, `last seen moved ${moved} ms in 1.5 s of heartbeats every 200 ms:\n${text}`);
  assert.equal(row(text, drainsId)[3], "connected");

  const exited = once(draining.proc, "exit");
  draining.proc.kill("SIGTERM");
  assert.equal(((await exited) as [number | null])[0], 0, draining.stderr());
  await killed.stop("SIGKILL");
  const after = await waitFor("both to be gone", async () => {
    const w = await workers();
    return w.list.filter((x) => x.id === drainsId || x.id === killedId).every((x) => x.state !== "connected") && w;
  });
  assert.deepEqual(row(after.text, drainsId).slice(0, 4), [drainsId, "drains", os.hostname(), "left"], after.text);
  assert.deepEqual(row(after.text, killedId).slice(0, 4), [killedId, "killed", os.hostname(), "lost"], after.text);
  const gone = after.list.find((w) => w.id === drainsId);
  assert.ok(gone && Date.parse(gone.lastSeen) >= Date.parse(second.lastSeen), `its last seen stays when it left: ${gone?.lastSeen} before ${second.lastSeen}`);
});
