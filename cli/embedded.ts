// The embedded default: with no coordinator named, `bach task-run` starts a coordinator and a worker in
// this process (the worker still talks gRPC on loopback, as a remote one would) and stops them after.
import fs from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Server } from "@grpc/grpc-js";
import { Coordinator } from "../coordinator/coordinator";
import { startServer } from "../coordinator/server";
import { startDataServer } from "../coordinator/data-server";
import { makeLogger } from "../core/log";
import { isAlive } from "../core/pids";
import { WorkerAgent } from "../worker/agent";
import { EmbeddedApi } from "./api";
import { stderrLines } from "./format";
import { keepApartLedger, newApartDir, sharedDir } from "./local-ledgers";

export function bachHome(): string {
  return process.env.BACH_HOME ?? path.join(os.homedir(), ".bach");
}

export interface Embedded {
  api: EmbeddedApi;
  coordinator: Coordinator;
  /** The address and token remote workers can join with (useful with --ip). */
  joinAddress: string;
  token: string;
  stop(): Promise<void>;
}

/**
 * The embedded coordinator's data dir. One run at a time owns $BACH_HOME/local (the shared ledger); a
 * run started while another holds it runs apart, in a dir of its own under $BACH_HOME/local-apart,
 * whose ledger is kept when it ends so that `bach task-report` finds its task too (local-ledgers.ts).
 */
function claimDataDir(home: string): { dir: string; release(): void } {
  const shared = sharedDir(home);
  fs.mkdirSync(shared, { recursive: true });
  const lock = path.join(shared, "owner.pid");
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      return { dir: shared, release: () => fs.rmSync(lock, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(fs.readFileSync(lock, "utf8"));
      if (isAlive(owner)) break;
      fs.rmSync(lock, { force: true }); // its owner died without cleaning up
    }
  }
  const own = newApartDir(home);
  fs.mkdirSync(own, { recursive: true });
  return { dir: own, release: () => keepApartLedger(home, own) };
}

/**
 * `containers`: the task runs in containers, so the worker needs this machine's engine. A task
 * without an image runs plain processes, and the worker then never reaches for Docker at all.
 */
export async function startEmbedded(opts: { slots: number; listenIp: string | null; containers: boolean }): Promise<Embedded> {
  const log = makeLogger("bach", "warn", { human: true });
  const home = bachHome();
  const claim = claimDataDir(home);
  // Its worker uses this machine's engine, so a task's image needs no upload unless others may join.
  const coordinator = new Coordinator({
    dataDir: claim.dir, heartbeatMs: 1000, lostAfterMs: 5000, log, sharesEngine: opts.listenIp === null,
    // A program's warnings under "stderr": "log" reach the person who ran it, a few lines per attempt.
    programStderr: ({ task, chunk, stderr }) => {
      for (const line of stderrLines(stderr, task)) process.stderr.write(`bach: stderr of chunk ${chunk}: ${line}\n`);
    },
  });
  const token = randomBytes(16).toString("hex");
  const host = opts.listenIp ?? "127.0.0.1";
  const bracketed = host.includes(":") ? `[${host}]` : host;
  // Workers that join from other machines (--ip) fetch chunks and send outputs over a data port.
  const data = opts.listenIp ? await startDataServer(coordinator, host, 0, token, log) : null;
  if (data) coordinator.dataPort = (data.address() as AddressInfo).port;
  const { server, port } = await startServer(coordinator, `${bracketed}:0`, token, log);
  const address = `${bracketed}:${port}`;
  const worker = new WorkerAgent({
    coordinator: address,
    token,
    slots: opts.slots,
    name: `local-${process.pid}`,
    dataDir: path.join(home, "worker"),
    localFiles: true,
    interruptible: false,
    runtime: opts.containers ? "docker" : "process",
    log,
  });
  await worker.start();
  return {
    api: new EmbeddedApi(coordinator, address),
    coordinator,
    joinAddress: address,
    token,
    stop: async () => {
      await worker.stop();
      data?.close();
      await shutdown(server);
      coordinator.close();
      claim.release();
    },
  };
}

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.tryShutdown(() => resolve());
    setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 500).unref();
  });
}
