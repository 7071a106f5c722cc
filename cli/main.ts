#!/usr/bin/env node
// `bach`, the user's command: parses flags and hands each command to the module that owns it.
import fs from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { coordinatorAddress, oneLineUsageErrors, positiveInt, runMain, tokenFrom, TOKEN_FILE_HELP } from "../core/cli-common";
import { clientTlsFrom, TLS_HELP } from "../core/tls";
import { InputError } from "../core/errors";
import { formatBytes, parseDuration } from "../core/sizes";
import { RemoteApi } from "./api";
import { bachHome } from "./embedded";
import { formatReport, formatTasks, formatWorkers } from "./format";
import { BASE_IMAGE } from "../core/docker";
import { buildBaseImage } from "./base-image";
import { htmlReport } from "./html-report";
import { initTask } from "./init";
import { localTaskList, localTaskReport, localWorkerList } from "./local-ledgers";
import { prepareTask, uploadTask } from "./prepare";
import { storageGet, storageLs, storagePut, storageRm } from "./storage";
import { taskOutput, taskRun } from "./task-run";

const EXIT_STATUSES = `
Exit status:
  0    done
  1    the task failed (a chunk failed every attempt)
  2    bad input or usage (a bachfile field, a flag, a --data path)
  3    coordinator unreachable, or it refused our token
  4    the task was cancelled from elsewhere (bach task-cancel)
  130  Ctrl-C (SIGINT); the task is cancelled too (143: SIGTERM; 141: the output's reader went away)

Environment:
  BACH_COORDINATOR  HOST:PORT of a coordinator, as --coordinator
  BACH_TOKEN        the coordinator's token, as --token
  BACH_HOME         where bach keeps its bundles and the embedded coordinator's ledger (default ~/.bach)
  BACH_LOG_LEVEL    log level on stderr: error, warn (default), info, debug
  BACH_WORKER_WAIT  task-run: once the task has waited this long with no worker to take its chunks,
                    say so on stderr, and again every 12 times as long (default 5s: then every
                    minute); tests shorten it (e.g. BACH_WORKER_WAIT=300ms)`;

const coordinatorOption = () =>
  new Option("--coordinator <host:port>", "the coordinator to use; without it bach runs everything on this machine (e.g. --coordinator 192.168.0.10:7070)");
const tokenOption = () => new Option("--token <token>", "the coordinator's shared secret (e.g. --token s3cret); default $BACH_TOKEN");

/** The options of every command that may talk to a coordinator: where it is, the token, TLS; in this order, after the command's own. */
function talksToCoordinator(cmd: Command): Command {
  return cmd
    .addOption(coordinatorOption())
    .addOption(tokenOption())
    .option("--token-file <file>", TOKEN_FILE_HELP)
    .option("--tls-ca <file>", `${TLS_HELP.ca} (default $BACH_TLS_CA)`)
    .option("--tls-cert <file>", `${TLS_HELP.cert} (default $BACH_TLS_CERT)`)
    .option("--tls-key <file>", `${TLS_HELP.key} (default $BACH_TLS_KEY)`);
}

function program(): Command {
  const bach = new Command("bach")
    .description("Run a program over a large stream of records, in parallel, on this machine or a cluster,\nwith exactly the output one run would give.")
    .version("0.1.0")
    .addHelpText(
      "after",
      `
Examples:
  bach init                                  write a bachfile.json for the program in this folder
  bach task-build                            check the bachfile and pack this folder
  bach task-run --data events.tsv -p 8       run over a file, 8 chunks at once, output to stdout
  cat events.tsv | bach task-run -p 8        run over stdin
  bach task-report                           what the last task did
  bach image base                            build the base image for tasks that run in containers
${EXIT_STATUSES}`,
    );

  bach
    .command("init")
    .description("write a commented bachfile.json that runs the program in the current folder (a .js, .py, .sh, or an executable), or a starter program when there is none")
    .option("--force", "replace an existing bachfile.json (a program is never replaced)")
    .addHelpText(
      "after",
      `
Examples:
  cd my-task && bach init                    finds my-task's program (say mapper.py) and writes a bachfile for it
  mkdir t && cd t && bach init && echo hello | bach task-run     an empty folder gets upper.js, a starter that prints HELLO

With several programs in the folder it picks one (main, index, map, run... first, then by name), says
which, and lists the others: change "binary" and "args" in bachfile.json to run another.`,
    )
    .action((o: { force?: boolean }) => {
      for (const line of initTask(process.cwd(), o.force === true)) process.stdout.write(`${line}\n`);
    });

  talksToCoordinator(bach
    .command("task-build")
    .description("validate bachfile.json, build its dockerfile if it has one, and pack the task folder (minus .bachignore) into a content-addressed bundle")
    .addOption(new Option("--task <dir>", "the task folder (e.g. --task examples/json-searcher)").default(".", "the current folder"))
  )
    .addHelpText(
      "after",
      `
Examples:
  bach task-build
  bach task-build --task examples/gdelt-filter --coordinator 192.168.0.10:7070 --token s3cret   also upload the bundle

A bachfile with "dockerfile": "Dockerfile" is built here (FROM bach/base: see bach image base), tagged
bach-task/NAME:latest, and its digest recorded in the bundle; with "image": "NAME" the local image is
used. With --coordinator the image is uploaded too when the coordinator lacks it, so workers without
it load it from there: no registry is needed.`,
    )
    .option("--quiet", "do not show docker build's output")
    .action(async (o: { task: string; coordinator?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; quiet?: boolean }) => {
      const dir = path.resolve(o.task);
      const task = await prepareTask(dir, (line) => o.quiet || process.stderr.write(`${line}\n`));
      const { bachfile: b, bundle } = task;
      let where = "";
      const address = coordinatorAddress(o.coordinator);
      if (address) {
        const api = new RemoteApi(address, tokenFrom(o.token, o.tokenFile), clientTlsFrom(o));
        await api.ready();
        await uploadTask(api, task, true);
        api.close();
        where = `, uploaded to ${address}`;
      }
      const image = task.image ? `, image ${task.image.name} ${task.image.id.slice(0, 19)}` : "";
      process.stdout.write(`${b.logicalName}: bundle ${bundle.hash.slice(0, 16)} (${bundle.files} file${bundle.files === 1 ? "" : "s"}, ${formatBytes(bundle.bytes)})${image}${where}\n`);
    });

  talksToCoordinator(bach
    .command("task-run")
    .description("run the task in this folder over --data or stdin; output goes to stdout in input order")
    .option("--data <file|url|->", "the input: a file, a glob ('logs/*.tsv', quoted), an s3://bucket/key or s3://bucket/prefix/, an http(s) URL, or - for stdin (default: stdin); give it again for more inputs, read in order", (v: string, all: string[] = []) => [...all, v])
    .option("--data-list <file>", "more inputs, one path or URL a line, read after --data's (relative paths are relative to the list)")
    .option("--output <dir|s3://bucket/prefix/>", "write the output there instead of stdout: one part a chunk (part-000000...) in input order, then _SUCCESS.json listing them; nothing is left of a run that fails")
    .option("--store <dir|s3://bucket/prefix/>", "where --data bach://NAME datasets are (default $BACH_STORE, else a folder under Bach's home; see bach storage)")
    .option("--overwrite", "with --output: replace the output of an earlier run there")
    .option("--s3-endpoint <url>", "the S3-compatible store s3:// inputs are in (default $AWS_ENDPOINT_URL, else AWS); credentials come from the AWS variables or profile")
    .option("-p, --parallelism <n>", "at most N chunks at once (default: one per core here; all free slots on a cluster)")
  )
    .option("--ip <addr>", "address other machines reach this one on: the embedded coordinator listens there and prints how workers join; this machine keeps one slot per core, joined workers take the rest of -p (e.g. -p 8 --ip 192.168.0.10)")
    .option("--lb <n>", "chunk-data streams the coordinator serves at once for this task (e.g. --lb 4; default: no limit)")
    .option("--keep-order", "output in input order (the default)")
    .option("--no-keep-order", "output each chunk as soon as it commits")
    .option("--chunk-size <size>", "auto, or a size such as 1m, 64m, 1g (auto measures the program: see README)", "auto")
    .addOption(new Option("--task <dir>", "the task folder (e.g. --task examples/gdelt-filter)").default(".", "the current folder"))
    .option("--no-progress", "no progress line on stderr (it is shown only when stderr is a terminal; the summary line at the end is always printed)")
    .option("--detach", "with --coordinator: send the input, print the task id and return; read the output later with bach task-output")
    .option("--reconnect <duration>", "with --coordinator: when the coordinator goes away mid-task, keep trying this long; a coordinator restarted on its data dir carries the task on (e.g. --reconnect 30m; 0: give up at once)", "10m")
    .addHelpText(
      "after",
      `
Examples:
  bach task-run --data citylots.features.dat -p 8     a file, 8 chunks at once
  cat citylots.features.dat | bach task-run -p 8      stdin
  bach task-run --data https://example.org/GDELT.dat  a URL: each worker reads its own byte ranges
  bach task-run --data s3://gdelt/events/ -p 8        every object under the prefix, in key order
  bach task-run --data 'logs/*.log' --data extra.log  a glob, then one more file, as one input
  bach task-run --data big.tsv --chunk-size 64m       fixed 64 MiB chunks
  bach task-run --data big.tsv --no-keep-order        output as chunks finish
  bach task-run --coordinator 192.168.0.10:7070 --data big.tsv --detach   prints the task id; bach task-output ID later
  bach task-run --coordinator 192.168.0.10:7070 --token s3cret --data big.tsv    on a cluster (a file the
                                      coordinator sees too, on its machine or a shared mount, is read in place)
  head -n 10000000 GDELT.dat | bach task-run -p 4 --ip 192.168.0.10 --lb 4       let LAN workers join
${EXIT_STATUSES}`,
    )
    // Excess arguments are checked here, to say what a shell glob after --data did.
    .allowExcessArguments()
    .action(async (o: { data?: string[]; dataList?: string; store?: string; s3Endpoint?: string; output?: string; overwrite?: boolean; parallelism?: string; coordinator?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; ip?: string; lb?: string; keepOrder?: boolean; chunkSize: string; task: string; progress: boolean; detach?: boolean; reconnect: string }, cmd: Command) => {
      const [extra] = cmd.args;
      if (extra !== undefined) {
        cmd.error(o.data
          ? `task-run: unexpected argument ${extra}: --data takes one input (quote a glob: --data 'dir/*.tsv', or give --data once per input)`
          : `task-run: unexpected argument ${extra} (the input goes in --data ${extra})`);
      }
      // The embedded coordinator and this process read s3:// inputs with the AWS SDK, which reads this.
      if (o.s3Endpoint) process.env.AWS_ENDPOINT_URL = o.s3Endpoint;
      await taskRun({
        data: o.data ?? [],
        dataList: o.dataList ?? null,
        output: o.output ?? null,
        overwrite: o.overwrite === true,
        store: o.store ?? null,
        parallelism: o.parallelism ? positiveInt(o.parallelism, "-p") : null,
        coordinator: coordinatorAddress(o.coordinator),
        token: tokenFrom(o.token, o.tokenFile),
        tls: clientTlsFrom(o),
        ip: o.ip ?? null,
        lb: o.lb ? positiveInt(o.lb, "--lb") : 0,
        keepOrder: o.keepOrder ?? true,
        chunkSize: o.chunkSize,
        taskDir: path.resolve(o.task),
        progress: o.progress && process.stderr.isTTY === true,
        detach: o.detach === true,
        reconnectMs: parseDuration(o.reconnect, "--reconnect"),
        workerWaitMs: parseDuration(process.env.BACH_WORKER_WAIT ?? "5s", "BACH_WORKER_WAIT"),
      });
    });

  talksToCoordinator(bach
    .command("task-output <task>")
    .description("print a task's committed output from a coordinator, in input order, waiting for chunks still running")
    .option("--no-keep-order", "print chunks in the order they committed")
    .option("--partial", "for a task that failed or was cancelled: print every chunk that committed, in input order, with a line on stderr for each run of chunks that did not (exit status 1 when there was one)")
    .option("--reconnect <duration>", "when the coordinator goes away, keep trying this long (e.g. --reconnect 30m; 0: give up at once)", "10m")
    .option("--output <dir|s3://bucket/prefix/>", "write the output there instead of stdout: one part a chunk (part-000000...) in input order, then _SUCCESS.json listing them")
    .option("--overwrite", "with --output: replace the output of an earlier run there")
  )
    .addHelpText(
      "after",
      "\nExamples:\n  bach task-output t-20261124-1a2b3c --coordinator 192.168.0.10:7070 --token s3cret > result.tsv\n  ID=$(bach task-run --detach --data big.tsv) && bach task-output $ID | head\n" +
        "  bach task-output t-20261124-1a2b3c --partial > part.tsv   a failed task's committed chunks; stderr names the missing ones:\n" +
        "                                      bach: chunks 7-9 (bytes 7340032-10485759) are missing: the task failed before they committed\n" +
        EXIT_STATUSES,
    )
    .action(async (task: string, o: { keepOrder: boolean; partial?: boolean; output?: string; overwrite?: boolean; coordinator?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; reconnect: string }) => {
      const address = coordinatorAddress(o.coordinator);
      if (!address) throw new InputError("task-output needs --coordinator (an embedded run prints its output as it runs)");
      if (o.partial && !o.keepOrder) throw new InputError("task-output: --partial prints in input order; it cannot be used with --no-keep-order");
      if (o.output && (o.partial || !o.keepOrder)) throw new InputError("task-output: --output writes a whole output in input order; it cannot be used with --partial or --no-keep-order");
      await taskOutput(address, tokenFrom(o.token, o.tokenFile), clientTlsFrom(o), task, o.keepOrder, parseDuration(o.reconnect, "--reconnect"), o.partial === true, o.output ? { to: o.output, overwrite: o.overwrite === true } : null);
    });

  talksToCoordinator(bach
    .command("task-report [task]")
    .description("planned against done for a task (default: the latest): chunks per state, attempts, retries, bytes, how parallel it ran (the -p cap or none, the slots it ran on), workers, failed, lost, cancelled and backup attempts, and what attempts wrote to stderr under \"stderr\": \"log\" (--json: all of it)")
    .option("--json", "print the report as JSON")
    .option("--html <file>", "also write a page with a timeline of attempts per worker, on an axis in seconds, backups outlined (e.g. --html report.html)")
  )
    .addHelpText("after", "\nExamples:\n  bach task-report                    the task started last on this machine (by any embedded run)\n  bach task-report t-20261124-1a2b3c --json\n  bach task-report --html report.html  a timeline of chunks per worker\n  bach task-report --coordinator 192.168.0.10:7070 --token s3cret")
    .action(async (task: string | undefined, o: { json?: boolean; html?: string; coordinator?: string; token?: string }) => {
      const r = await query(o, (api) => api.report(task ?? null), (home) => localTaskReport(home, task ?? null));
      if (o.html) fs.writeFileSync(o.html, htmlReport(r));
      process.stdout.write(`${o.json ? JSON.stringify(r, null, 2) : formatReport(r)}\n`);
    });

  talksToCoordinator(bach
    .command("task-list")
    .description("list the tasks the coordinator knows (without --coordinator: every embedded run on this machine), newest first")
    .option("--json", "print as JSON")
  )
    .addHelpText("after", "\nExample:\n  bach task-list --coordinator 192.168.0.10:7070 --token s3cret")
    .action(async (o: { json?: boolean; coordinator?: string; token?: string }) => {
      const tasks = await query(o, (api) => api.listTasks(), localTaskList);
      process.stdout.write(`${o.json ? JSON.stringify(tasks, null, 2) : formatTasks(tasks)}\n`);
    });

  talksToCoordinator(bach
    .command("task-cancel <task>")
    .description("cancel a running task on a coordinator: its running attempts are killed")
  )
    .addHelpText("after", "\nExample:\n  bach task-cancel t-20261124-1a2b3c --coordinator 192.168.0.10:7070 --token s3cret")
    .action(async (task: string, o: { coordinator?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }) => {
      const address = coordinatorAddress(o.coordinator);
      if (!address) throw new InputError("task-cancel needs --coordinator (an embedded task ends with its bach task-run: press Ctrl-C there)");
      const api = new RemoteApi(address, tokenFrom(o.token, o.tokenFile), clientTlsFrom(o));
      await api.ready();
      await api.cancel(task);
      api.close();
      process.stdout.write(`cancelled ${task}\n`);
    });

  talksToCoordinator(bach
    .command("workers")
    .description("list the workers the coordinator knows: name, host, state (connected; left: drained on SIGTERM and went; lost: killed, cut off or silent), slots, cpus, memory, and when each was last heard from")
    .option("--json", "print as JSON")
  )
    .addHelpText("after", "\nExample:\n  bach workers --coordinator 192.168.0.10:7070 --token s3cret")
    .action(async (o: { json?: boolean; coordinator?: string; token?: string }) => {
      const workers = await query(o, (api) => api.listWorkers(), localWorkerList);
      process.stdout.write(`${o.json ? JSON.stringify(workers, null, 2) : formatWorkers(workers)}\n`);
    });

  const storage = bach
    .command("storage")
    .description("datasets kept in a store, in pages of about 1 GiB cut at record ends: put, ls, get, rm; a task reads one with --data bach://NAME")
    .addHelpText("after", `
The store is a folder (default: $BACH_HOME/storage, where an embedded run reads pages in place) or an S3
prefix (--store s3://bucket/prefix/ or $BACH_STORE, for a cluster: workers read pages by presigned URLs).
Pages are named by their sha256: putting the same file again, or one that grew, uploads only the pages
that are not there yet.

Examples:
  bach storage put events.tsv gdelt-2024         store a file as dataset gdelt-2024
  cat *.tsv | bach storage put - logs            store stdin
  bach storage ls                                list the datasets
  bach storage get gdelt-2024 > copy.tsv         the dataset's bytes
  bach task-run --data bach://gdelt-2024 -p 8    run a task over it
  bach storage rm gdelt-2024`);
  const storeOption = "<dir|s3://bucket/prefix/>";
  const storeHelp = "the store (default $BACH_STORE, else a folder under Bach's home)";
  storage
    .command("put <file> <name>")
    .description("store FILE (- for stdin) as dataset NAME, in pages cut at record ends")
    .option("--store " + storeOption, storeHelp)
    .option("--page-size <size>", "about how big a page is (e.g. 256m)", "1g")
    .option("--delimiter <text>", "what ends a record: pages end just after one", "\n")
    .action(async (file: string, name: string, o: { store?: string; pageSize: string; delimiter: string }) => {
      process.stderr.write(`bach: ${await storagePut(file, name, o)}\n`);
    });
  storage
    .command("ls [prefix]")
    .description("list the stored datasets (whose names start with PREFIX)")
    .option("--store " + storeOption, storeHelp)
    .option("--json", "print as JSON")
    .action(async (prefix: string | undefined, o: { store?: string; json?: boolean }) => {
      const text = await storageLs(prefix, o);
      if (text) process.stdout.write(`${text}\n`);
    });
  storage
    .command("get <name>")
    .description("write a stored dataset to stdout, each page checked against its hash")
    .option("--store " + storeOption, storeHelp)
    .action(async (name: string, o: { store?: string }) => storageGet(name, o));
  storage
    .command("rm <name>")
    .description("remove a stored dataset, and the pages no other dataset uses")
    .option("--store " + storeOption, storeHelp)
    .action(async (name: string, o: { store?: string }) => {
      process.stderr.write(`bach: ${await storageRm(name, o)}\n`);
    });

  bach
    .command("image-base")
    .description("build the base image (bach/base) that the examples and tests run in: this machine's node, sh and text tools, imported, never pulled")
    .option("--tag <name>", "the image name to give it", BASE_IMAGE)
    .addHelpText("after", `
Docker tasks need an image in the local engine, and Bach never pulls from a registry. This builds one from
this machine's own files; a Dockerfile in a task folder can start FROM it.

Examples:
  bach image base                      build bach/base:latest
  bach image-base --tag my/base:1      under another name`)
    .action(async (o: { tag: string }) => {
      const id = await buildBaseImage(o.tag);
      process.stdout.write(`${o.tag}: ${id}\n`);
    });
  return oneLineUsageErrors(bach);
}

/** Asks the named coordinator, or reads this machine's embedded ledgers (local-ledgers.ts) when none is named. */
async function query<T>(o: { coordinator?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }, remote: (api: RemoteApi) => Promise<T>, local: (home: string) => T): Promise<T> {
  const address = coordinatorAddress(o.coordinator);
  if (!address) return local(bachHome());
  const api = new RemoteApi(address, tokenFrom(o.token, o.tokenFile), clientTlsFrom(o));
  try {
    await api.ready();
    return await remote(api);
  } finally {
    api.close();
  }
}

/** The seed's spelling, `bach task run`, is the same command as `bach task-run` (and `bach image base`, `bach image-base`). */
function seedSpelling(argv: string[]): string[] {
  const [node, script, first, second, ...rest] = argv;
  if ((first === "task" || first === "image") && second && !second.startsWith("-")) return [node, script, `${first}-${second}`, ...rest];
  return argv;
}

runMain("bach", async () => {
  await program().parseAsync(seedSpelling(process.argv));
});
