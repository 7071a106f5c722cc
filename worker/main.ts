#!/usr/bin/env node
// `bach-worker join HOST:PORT`: parses flags and starts the worker agent.
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { coordinatorAddress, oneLineUsageErrors, positiveInt, runMain, tokenFrom, TOKEN_FILE_HELP } from "../core/cli-common";
import { clientTlsFrom, TLS_HELP } from "../core/tls";
import { CoordinatorUnreachableError, InputError } from "../core/errors";
import { makeLogger } from "../core/log";
import { parseDuration } from "../core/sizes";
import { WorkerAgent } from "./agent";

function nonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InputError(`${flag} ${value}: expected a whole number, 0 or more`);
  return n;
}

function program(): Command {
  const cmd = new Command("bach-worker")
    .description("A Bach worker: joins a coordinator and runs chunks of its tasks.");
  cmd
    .command("join <host:port>")
    .description("join the coordinator at HOST:PORT and run chunks until SIGINT or SIGTERM")
    .option("--token <token>", "the coordinator's shared secret (default $BACH_TOKEN)")
    .option("--token-file <file>", TOKEN_FILE_HELP)
    .option("--tls-ca <file>", `${TLS_HELP.ca} (default $BACH_TLS_CA)`)
    .option("--tls-cert <file>", `${TLS_HELP.cert} (default $BACH_TLS_CERT)`)
    .option("--tls-key <file>", `${TLS_HELP.key} (default $BACH_TLS_KEY)`)
    .option("--slots <n>", "attempts run at once (default: one per core)")
    .option("--name <name>", "how reports name this worker (default: the host name and a short random id, e.g. attic-pc-3f9a, so two workers on one host differ)")
    .option("--data-dir <dir>", "where bundles and attempt outputs are cached", path.join(os.homedir(), ".bach", "worker"))
    .option("--runtime <runtime>", "auto: tasks with an image run in containers when a Docker Engine answers (DOCKER_HOST or the local socket); docker: refuse to start without one; process: never run containers", "auto")
    .option("--cpus <n>", "cores to offer (default: all of them; e.g. --cpus 6)")
    .option("--memory <mib>", "memory to offer, in MiB (default: all of it; e.g. --memory 8192)")
    .option("--gpus <n>", "GPUs to offer (default: what nvidia-smi -L lists)")
    .option("--no-local-spool", "always fetch chunks over the network, even on the coordinator's own machine (where the spool is otherwise read in place)")
    .option("--interruptible", "this machine may be taken back (spare machines); tasks that forbid it are not placed here")
    .option("--keep-bundles <duration>", "remove a cached task bundle no attempt has used for this long (e.g. --keep-bundles 1d)", "7d")
    .option("--grace <duration>", "on SIGTERM, finish running chunks for at most this long before handing the rest back (e.g. --grace 2m)", "30s")
    .option("--give-up <duration>", "exit with status 3 when no coordinator has answered this long after starting (e.g. --give-up 5m; default: keep trying; once joined, a worker always reconnects)")
    .addHelpText(
      "after",
      `
Examples:
  bach-worker join 192.168.0.10:7070 --token s3cret
  BACH_TOKEN=s3cret bach-worker join 192.168.0.10:7070 --slots 4 --name attic-pc
  bach-worker join 192.168.0.10:7070 --token s3cret --runtime docker --cpus 6 --memory 16384
  bach-worker join 192.168.0.10:7070 --token s3cret --interruptible --grace 1m    a spare machine
  bach-worker join 192.168.0.10:7070 --token-file token --give-up 5m    exit 3 if no coordinator answers within 5 minutes

SIGTERM drains: the worker takes no new chunks, finishes the running ones within --grace, hands the
rest back (they run elsewhere) and exits 0. SIGINT (Ctrl-C) or a second SIGTERM stops at once.
  DOCKER_HOST=unix:///run/user/1000/docker.sock bach-worker join 192.168.0.10:7070 --token s3cret

Tasks with an "image" or "dockerfile" run in containers (one per slot, a fresh process per chunk), under
the bachfile's hardware limits; a worker whose engine lacks the image loads it from the coordinator.
A chunk is placed only where its hardware minimums fit in what the worker offers and has free.

A worker may start before its coordinator: until one answers it says so once (again every minute) and
tries every second, so it joins as soon as the coordinator is up. Once joined, it reconnects to a
coordinator that restarts, for as long as it takes.

Exit status:
  0  stopped (SIGTERM, SIGINT)
  2  bad usage (a flag)
  3  the coordinator refused our token, or none answered within --give-up`,
    )
    .action(async (address: string, o: { grace: string; giveUp?: string; keepBundles: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; slots?: string; name?: string; dataDir: string; runtime: string; interruptible?: boolean; localSpool: boolean; cpus?: string; memory?: string; gpus?: string }) => {
      const coordinator = coordinatorAddress(address) ?? address;
      if (o.runtime !== "auto" && o.runtime !== "docker" && o.runtime !== "process") throw new InputError(`--runtime ${o.runtime}: expected auto, docker or process`);
      const cpus = o.cpus === undefined ? undefined : Number(o.cpus);
      if (cpus !== undefined && !(cpus > 0)) throw new InputError(`--cpus ${o.cpus}: expected a number of cores above 0, e.g. --cpus 2 or --cpus 0.5`);
      const agent = new WorkerAgent({
        coordinator,
        token: tokenFrom(o.token, o.tokenFile),
        tls: clientTlsFrom(o),
        slots: o.slots ? positiveInt(o.slots, "--slots") : os.availableParallelism(),
        name: o.name ?? defaultName(),
        dataDir: path.resolve(o.dataDir),
        localFiles: false,
        probeSpool: o.localSpool,
        interruptible: o.interruptible === true,
        runtime: o.runtime,
        offered: { cpus, memoryMb: o.memory ? positiveInt(o.memory, "--memory") : undefined, gpus: o.gpus === undefined ? undefined : nonNegativeInt(o.gpus, "--gpus") },
        keepBundlesMs: parseDuration(o.keepBundles, "--keep-bundles"),
        log: makeLogger("bach-worker", "info"),
        onRefused: (message) => failed(new CoordinatorUnreachableError(message, coordinator)),
        say: (line) => process.stderr.write(`bach-worker: ${line}\n`),
        giveUpMs: o.giveUp === undefined ? undefined : parseDuration(o.giveUp, "--give-up"),
        onGiveUp: () => failed(new CoordinatorUnreachableError(`nothing answered at ${coordinator} for ${o.giveUp} (--give-up ${o.giveUp}): is the coordinator running, and is that its address?`, coordinator)),
      });
      let failed: (err: Error) => void = () => undefined;
      const graceMs = parseDuration(o.grace, "--grace");
      await agent.start();
      await new Promise<void>((resolve, reject) => {
        failed = reject;
        // SIGTERM drains (a spare machine being taken back); SIGINT, or a second signal, stops at once.
        let leaving = false;
        // A signal listener's return value is dropped, so stopNow hands stop's outcome to this promise.
        const stopNow = (): void => {
          agent.stop().then(resolve, reject);
        };
        process.on("SIGINT", stopNow);
        process.on("SIGTERM", () => {
          if (leaving) {
            stopNow();
            return;
          }
          leaving = true;
          agent.drain(graceMs).then(resolve, reject);
        });
      });
    });
  return oneLineUsageErrors(cmd);
}

/** The host and a short id: two workers on one machine (or two containers sharing its host name) differ. */
function defaultName(): string {
  return `${os.hostname()}-${randomBytes(2).toString("hex")}`;
}

runMain("bach-worker", async () => {
  await program().parseAsync(process.argv);
});
