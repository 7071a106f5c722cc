// The embedded default: with no coordinator named, `bach task-run` starts a coordinator and a worker in
// this process (the worker still talks gRPC on loopback, as a remote one would) and stops them after.
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import type { Server } from "@grpc/grpc-js";
import { Coordinator } from "../coordinator/coordinator";
import { startServer } from "../coordinator/server";
import { makeLogger } from "../core/log";
import { WorkerAgent } from "../worker/agent";
import { EmbeddedApi } from "./api";

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

export async function startEmbedded(opts: { slots: number; listenIp: string | null }): Promise<Embedded> {
  const log = makeLogger("bach", "warn");
  const home = bachHome();
  const coordinator = new Coordinator({ dataDir: path.join(home, "local"), heartbeatMs: 1000, lostAfterMs: 5000, log });
  const token = randomBytes(16).toString("hex");
  const host = opts.listenIp ?? "127.0.0.1";
  const bracketed = host.includes(":") ? `[${host}]` : host;
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
    log,
  });
  worker.start();
  return {
    api: new EmbeddedApi(coordinator, address),
    coordinator,
    joinAddress: address,
    token,
    stop: async () => {
      worker.stop();
      await shutdown(server);
      coordinator.close();
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
