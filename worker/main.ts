#!/usr/bin/env node
// `bach-worker join HOST:PORT`: parses flags and starts the worker agent.
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { coordinatorAddress, positiveInt, runMain, tokenFrom } from "../core/cli-common";
import { CoordinatorUnreachableError, InputError } from "../core/errors";
import { makeLogger } from "../core/log";
import { WorkerAgent } from "./agent";

function program(): Command {
  const cmd = new Command("bach-worker")
    .description("A Bach worker: joins a coordinator and runs chunks of its tasks.")
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`bach-worker: ${str.replace(/^error: /, "")}`) });
  cmd
    .command("join <host:port>")
    .description("join the coordinator at HOST:PORT and run chunks until SIGINT or SIGTERM")
    .option("--token <token>", "the coordinator's shared secret (default $BACH_TOKEN)")
    .option("--slots <n>", "attempts run at once (default: one per core)")
    .option("--name <name>", "how reports name this worker (default: the host name)")
    .option("--data-dir <dir>", "where bundles and attempt outputs are cached", path.join(os.homedir(), ".bach", "worker"))
    .option("--runtime <runtime>", "how chunks run: process (containers come in a later version)", "process")
    .option("--no-local-spool", "always fetch chunks over the network, even on the coordinator's own machine (where the spool is otherwise read in place)")
    .option("--interruptible", "this machine may be taken back (spare machines); tasks that forbid it are not placed here")
    .addHelpText(
      "after",
      `
Examples:
  bach-worker join 192.168.0.10:7070 --token s3cret
  BACH_TOKEN=s3cret bach-worker join 192.168.0.10:7070 --slots 4 --name attic-pc`,
    )
    .action(async (address: string, o: { token?: string; slots?: string; name?: string; dataDir: string; runtime: string; interruptible?: boolean; localSpool: boolean }) => {
      const coordinator = coordinatorAddress(address) ?? address;
      if (o.runtime !== "process") throw new InputError(`--runtime ${o.runtime}: only "process" is available in this version`);
      const agent = new WorkerAgent({
        coordinator,
        token: tokenFrom(o.token),
        slots: o.slots ? positiveInt(o.slots, "--slots") : os.availableParallelism(),
        name: o.name ?? os.hostname(),
        dataDir: path.resolve(o.dataDir),
        localFiles: false,
        probeSpool: o.localSpool,
        interruptible: o.interruptible === true,
        log: makeLogger("bach-worker", "info"),
        onRefused: (message) => refused(new CoordinatorUnreachableError(message, coordinator)),
      });
      let refused: (err: Error) => void = () => undefined;
      agent.start();
      await new Promise<void>((resolve, reject) => {
        refused = reject;
        const stop = () => {
          agent.stop();
          resolve();
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    });
  return cmd;
}

runMain("bach-worker", async () => {
  await program().parseAsync(process.argv);
});
