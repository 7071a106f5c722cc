#!/usr/bin/env node
// `bach-coordinator start`: parses flags and wires the ledger, the domain and the gRPC server together.
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { DEFAULT_PORT, oneLineUsageErrors, positiveInt, runMain, tokenFrom, TOKEN_FILE_HELP } from "../core/cli-common";
import { InputError } from "../core/errors";
import { makeLogger } from "../core/log";
import { parseDuration } from "../core/sizes";
import { Coordinator, DEFAULT_MAX_LOST } from "./coordinator";
import { serverTlsFrom } from "../core/tls";
import { startServer } from "./server";
import { startDataServer } from "./data-server";
import type { AddressInfo } from "node:net";

function program(): Command {
  const cmd = new Command("bach-coordinator")
    .description("The Bach coordinator: keeps the ledger and the spool, and hands chunks to workers.");
  cmd
    .command("start")
    .description("start the coordinator daemon (it runs until SIGINT or SIGTERM)")
    .option("--listen <host:port>", "address to listen on (e.g. --listen 0.0.0.0:7070 for a LAN)", `127.0.0.1:${DEFAULT_PORT}`)
    .option("--data-dir <dir>", "where the ledger (SQLite) and the spool live (e.g. --data-dir /var/lib/bach)", path.join(os.homedir(), ".bach", "coordinator"))
    .option("--token <token>", "shared secret every worker and CLI must present (default $BACH_TOKEN)")
    .option("--token-file <file>", TOKEN_FILE_HELP)
    .option("--tls-cert <file>", "the coordinator's PEM certificate: with --tls-key, both ports speak only TLS")
    .option("--tls-key <file>", "the PEM private key of --tls-cert")
    .option("--tls-ca <file>", "require workers and CLIs to present a certificate this PEM CA signed (mutual TLS)")
    .option("--data-listen <host:port>", "TCP address for bulk bytes (streamed input, task output, chunks and outputs of workers on other machines), faster than gRPC (default: the --listen host, its port + 1; port 0 picks a free one)")
    .option("--heartbeat <duration>", "how often workers send heartbeats (e.g. --heartbeat 1s)", "1s")
    .option("--lost-after <duration>", "declare a silent worker lost after this long (e.g. --lost-after 5s)", "5s")
    .option("--durable", "survive a power loss, not only a crash: outputs and spooled input are fsynced before the ledger records them, and every ledger write is synced (costs the disk's write-back; see the README's Durability)")
    .option("--max-lost <n>", "a chunk whose worker died (or vanished) this many times while running it fails its task (e.g. --max-lost 5)", String(DEFAULT_MAX_LOST))
    .option("--s3-endpoint <url>", "the S3-compatible store (Ceph, MinIO, R2...) that s3:// inputs are in (default $AWS_ENDPOINT_URL, else AWS); credentials come from the AWS variables or profile of this process, and workers get presigned URLs only")
    .option(
      "--keep-output <duration>",
      "how long an ended task's output stays for `bach task-output`; then it, and bundles and images no kept task uses, leave the spool (e.g. --keep-output 30d, or forever)",
      "7d",
    )
    .addHelpText(
      "after",
      `
Examples:
  bach-coordinator start --listen 0.0.0.0:7070 --data-dir /var/lib/bach --token s3cret
  BACH_TOKEN=s3cret bach-coordinator start --lost-after 10s
  bach-coordinator start --token-file /etc/bach/token    # the token stays out of the process list
  bach-coordinator start --token-file t --tls-cert coord.pem --tls-key coord.key   # TLS (see the README for making certificates)
  bach-coordinator start --token s3cret --keep-output 1d    # a busy coordinator with a small disk

Then on each machine: bach-worker join HOST:7070 --token s3cret`,
    )
    .action(async (o: { listen: string; dataListen?: string; dataDir: string; token?: string; tokenFile?: string; tlsCert?: string; tlsKey?: string; tlsCa?: string; durable?: boolean; maxLost: string; heartbeat: string; lostAfter: string; keepOutput: string; s3Endpoint?: string }) => {
      const token = tokenFrom(o.token, o.tokenFile);
      if (!token) throw new InputError("a token is required: --token T or BACH_TOKEN (workers and CLIs must present it)");
      if (!/^.+:\d+$/.test(o.listen)) throw new InputError(`--listen ${o.listen}: expected HOST:PORT, e.g. 0.0.0.0:${DEFAULT_PORT}`);
      const secure = serverTlsFrom(o);
      const log = makeLogger("bach-coordinator", "info");
      const coordinator = new Coordinator({
        dataDir: path.resolve(o.dataDir),
        heartbeatMs: parseDuration(o.heartbeat, "--heartbeat"),
        lostAfterMs: parseDuration(o.lostAfter, "--lost-after"),
        keepOutputMs: o.keepOutput === "forever" ? undefined : parseDuration(o.keepOutput, "--keep-output"),
        maxLost: positiveInt(o.maxLost, "--max-lost"),
        durable: o.durable === true,
        s3: o.s3Endpoint ? { endpoint: o.s3Endpoint } : {},
        log,
      });
      const host = o.listen.replace(/:\d+$/, "");
      const listenPort = Number(/:(\d+)$/.exec(o.listen)?.[1] ?? 0);
      const dataListen = o.dataListen ?? `${host}:${listenPort === 0 ? 0 : listenPort + 1}`;
      if (!/^.+:\d+$/.test(dataListen)) throw new InputError(`--data-listen ${dataListen}: expected HOST:PORT`);
      const data = await startDataServer(coordinator, dataListen.replace(/:\d+$/, "").replace(/^\[|\]$/g, ""), Number(/:(\d+)$/.exec(dataListen)?.[1]), token, log, secure).catch(
        (err: Error) => {
          throw new InputError(`--data-listen ${dataListen}: ${err.message}`);
        },
      );
      const dataPort = (data.address() as AddressInfo).port;
      coordinator.dataPort = dataPort;
      const { server, port } = await startServer(coordinator, o.listen, token, log, () => dataPort, secure).catch((err: Error) => {
        throw new InputError(`--listen ${o.listen}: ${err.message}`);
      });
      log.info({ listen: o.listen.replace(/:\d+$/, `:${port}`), dataPort, dataDir: path.resolve(o.dataDir), tls: secure ? (secure.ca ? "mutual" : "server") : "none", durable: o.durable === true }, "coordinator started");
      // Tests and scripts read the bound port from this line.
      process.stdout.write(`bach-coordinator listening on ${o.listen.replace(/:\d+$/, `:${port}`)}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          data.close();
          server.forceShutdown();
          coordinator.close();
          resolve();
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    });
  return oneLineUsageErrors(cmd);
}

runMain("bach-coordinator", async () => {
  await program().parseAsync(process.argv);
});
