// `bach task-run`: pack the task, reach a coordinator (or start the embedded one), submit the task,
// stream its input in and its output out, and exit with the task's verdict.
import os from "node:os";
import { ExitStatus, InputError, TaskCancelledError, TaskFailedError } from "../core/errors";
import { parseSize } from "../core/sizes";
import type { ClientTls } from "../core/tls";
import type { OutputEvent } from "../core/report";
import type { Bachfile } from "../core/bachfile";
import { RemoteApi, type CoordinatorApi, type TaskRequest } from "./api";
import { startEmbedded, type Embedded } from "./embedded";
import { prepareTask, uploadTask } from "./prepare";
import { chunkRanges, gapLine, Progress, summaryLine, WaitNotice } from "./progress";
import { feedInput, followOutput, ReplayableInput, type Reconnecting } from "./reconnect";
import { fileSample } from "../core/file-sample";
import { localFiles, openInput, resolveInput, type Input } from "./input";
import { openOutput, type OutputSink } from "./output-sink";
import { isRemoteSource } from "../coordinator/input-sources";

export interface RunOptions {
  /** A folder or an s3:// prefix for the output, one part a chunk and a manifest (null: stdout). */
  output: string | null;
  overwrite: boolean;
  /** --data, in the order given (empty: stdin). */
  data: string[];
  dataList: string | null;
  /** Where bach://NAME datasets are (--store; default $BACH_STORE, else the folder under Bach's home). */
  store: string | null;
  parallelism: number | null;
  coordinator: string | null;
  token: string;
  /** TLS to the coordinator (--tls-ca, --tls-cert, --tls-key), null for plain TCP. */
  tls: ClientTls | null;
  ip: string | null;
  lb: number;
  keepOrder: boolean;
  chunkSize: string;
  taskDir: string;
  progress: boolean;
  /** Submit, send the input, print the task id and return; the output waits on the coordinator. */
  detach: boolean;
  /** How long to keep trying when a remote coordinator goes away mid-task (0: give up at once). */
  reconnectMs: number;
  /** Say so on stderr when the task has waited this long for a worker ($BACH_WORKER_WAIT); remind every 12 times as long. */
  workerWaitMs: number;
}

/** What follows a task's progress events while its output prints: the progress line, the wait notice. */
interface Watcher {
  update(ev: Extract<OutputEvent, { kind: "progress" }>): void;
  /** A chunk's output has all been printed. */
  chunkDone?(): void;
  clear(): void;
}

/** A remote coordinator may come back (restarted on its data dir); an embedded one ends with us. */
function reconnecting(remote: RemoteApi | null, forMs: number): Reconnecting {
  return {
    forMs: remote ? forMs : 0,
    waitForCoordinator: (deadline) => (remote ? remote.waitUntilBack(deadline) : Promise.reject(new Error("no coordinator to wait for"))),
  };
}

/**
 * How the coordinator is offered the input: a file to read in place; objects for workers to read where
 * they live (an embedded run without --ip also reads local files so, in place); else a stream through
 * this process. `"input": "objects"` cannot be a stream: each object's edges would be lost.
 */
function taskInput(input: Input, bachfile: Bachfile, localWorkersOnly: boolean, embedded: boolean): TaskRequest["input"] {
  if (input.kind === "file" && bachfile.input === "records") return embedded ? { kind: "path", path: input.path, sample: null } : fileOffer(input.path);
  const sources = input.kind === "file" ? [input.path] : input.kind === "sources" ? input.sources : [];
  if (sources.length > 0 && (localWorkersOnly || sources.every(isRemoteSource))) return { kind: "objects", sources, localFiles: localWorkersOnly };
  if (bachfile.input === "objects") {
    throw new InputError(
      input.kind === "stdin"
        ? `"input": "objects" runs the program once per object: name them with --data (s3://, http(s) URLs, files), not stdin`
        : `"input": "objects" with local files needs them on the workers' machine: run embedded (without --coordinator or --ip), or put them in object storage`,
      { field: "input" },
    );
  }
  return { kind: "stream" };
}

/**
 * A file offered to a remote coordinator to read in place, with the sample that proves this CLI sees
 * it; the coordinator takes it only if it sees the same file (on this machine, or a shared mount).
 */
function fileOffer(file: string): TaskRequest["input"] {
  const sample = fileSample(file);
  return sample ? { kind: "path", path: file, sample } : { kind: "stream" };
}

/**
 * Ctrl-C, SIGTERM, or a reader that stops reading (`bach task-run | head`) stop the task too, not just
 * this process: a cluster would otherwise run it for nobody. The stop owns the exit status: 130 for
 * Ctrl-C, 143 for SIGTERM, and 141 for a closed stdout (quietly, as a program killed by SIGPIPE); the
 * task's end, which the cancel brings on, must not turn it into a failure. Returns whether a stop is
 * under way.
 */
function stopTaskWithUs(api: CoordinatorApi, task: string, embedded: Embedded | null): () => boolean {
  let stopping = false;
  const stop = (why: string, status: number) => {
    if (stopping) return;
    stopping = true;
    if (why) process.stderr.write(`\nbach: ${why}: cancelling task ${task}\n`);
    const exit = () => {
      const stopped = embedded ? embedded.stop() : Promise.resolve();
      stopped.then(
        () => process.exit(status),
        (err: Error) => {
          process.stderr.write(`bach: could not stop the embedded coordinator: ${err.message}\n`);
          process.exit(status);
        },
      );
    };
    api.cancel(task).then(exit, (err: Error) => {
      process.stderr.write(`bach: could not cancel ${task}: ${err.message}\n`);
      exit();
    });
  };
  process.once("SIGINT", () => stop("SIGINT", ExitStatus.interrupted));
  process.once("SIGTERM", () => stop("SIGTERM", 143));
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    stop("", 141);
  });
  return () => stopping;
}

/**
 * Writes task output to stdout; resolves once it is written (the output's buffer is then free for the
 * next piece, see OutputEvent). A pipe's write fails with EPIPE when its reader has gone; that becomes
 * stdout's "error" (see stopTaskWithUs, which ends the run) and this never resolves.
 */
function writeOutput(data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    try {
      process.stdout.write(data, (err) => {
        if (!err) resolve();
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EPIPE") throw err;
      process.stdout.emit("error", err);
    }
  });
}

type Ending = Extract<OutputEvent, { kind: "end" }>;

/**
 * Prints a task's committed output to stdout as it commits, until the task ends; returns how it ended,
 * how many chunks it printed and how many gaps it said were missing. `partial`: see CoordinatorApi.output.
 * `summary`: the task's summary line on stderr at its end.
 */
export async function printOutput(
  api: CoordinatorApi,
  task: string,
  o: { keepOrder: boolean; partial: boolean; summary: boolean; progress: Watcher | null; reconnect: Reconnecting; sink?: OutputSink | null },
): Promise<{ end: Ending; printed: number; gaps: number }> {
  let end: Ending = { kind: "end", state: "failed", error: "the output stream ended early", tally: null };
  let printed = 0;
  let gaps = 0;
  for await (const ev of followOutput(api, task, o.keepOrder, o.reconnect, o.partial)) {
    if (ev.kind === "data") {
      await (o.sink ? o.sink.write(ev.data) : writeOutput(ev.data));
    } else if (ev.kind === "chunk-done") {
      await o.sink?.chunkDone();
      printed++;
      o.progress?.chunkDone?.();
    } else if (ev.kind === "progress") {
      o.progress?.update(ev);
    } else if (ev.kind === "gap") {
      gaps++;
      process.stderr.write(`${gapLine(ev)}\n`);
    } else if (ev.kind === "end") {
      end = ev;
    }
  }
  o.progress?.clear();
  if (o.summary && end.tally) process.stderr.write(`${summaryLine({ ...end.tally, state: end.state })}\n`);
  return { end, printed, gaps };
}

/**
 * What a task that did not succeed still offers: which chunks committed, and how to get those not
 * printed (a coordinator keeps them for task-output --partial; an embedded run's end removes them).
 */
function committedOffer(task: string, end: Ending, printed: number, coordinator: string | null): string {
  const t = end.tally;
  if (!t || t.committed === 0) return "";
  const which = `${t.committed === 1 ? "chunk" : "chunks"} ${chunkRanges(t.ranges)} of ${t.planned} committed`;
  if (coordinator) return `\n${which}; bach task-output ${task} --partial --coordinator ${coordinator} prints them in input order`;
  if (printed === t.committed) return `\n${which}; their output is above`;
  return `\n${which}; the first ${printed} were printed (in input order), and an embedded run keeps no output once it ends: --no-keep-order prints chunks as they commit, and a task on a coordinator (--coordinator) keeps them for bach task-output TASK --partial`;
}

/**
 * `bach task-output TASK`: the committed output of a task on a coordinator (waiting while it runs).
 * `partial`: every committed chunk of a task that did not succeed, in input order, a line on stderr
 * for each gap, and a failure (status 1) when there was one.
 */
export async function taskOutput(address: string, token: string, secure: ClientTls | null, task: string, keepOrder: boolean, reconnectMs: number, partial: boolean, output: { to: string; overwrite: boolean } | null = null): Promise<void> {
  const api = new RemoteApi(address, token, secure);
  let sink: OutputSink | null = null;
  let sinkDone = false;
  try {
    await api.ready();
    sink = output ? await openOutput(output.to, output.overwrite) : null;
    process.stdout.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err;
      process.exit(141);
    });
    const { end, gaps } = await printOutput(api, task, { keepOrder: keepOrder || partial, partial, summary: false, progress: null, reconnect: reconnecting(api, reconnectMs), sink });
    sinkDone = true;
    const written = await sink?.finish(task, end.state === "succeeded");
    if (written) process.stderr.write(`bach: ${written}\n`);
    if (end.state === "cancelled" && !partial) throw new TaskCancelledError(`task ${task} was cancelled (by bach task-cancel, or Ctrl-C on its bach task-run)`, task);
    if (end.state !== "succeeded" && (!partial || gaps > 0)) {
      // A partial read has printed what there was; a whole one says what --partial would add.
      const offer = partial ? "" : committedOffer(task, end, 0, address);
      throw new TaskFailedError(`task ${task} ${end.state}: ${end.error}${offer}`, task);
    }
  } finally {
    if (sink && !sinkDone) await sink.finish(task, false).catch(() => undefined);
    api.close();
  }
}

export async function taskRun(opts: RunOptions): Promise<void> {
  if (opts.detach && !opts.coordinator) {
    throw new InputError("--detach needs --coordinator: an embedded run ends with this process (start a coordinator with bach-coordinator start)");
  }
  if (opts.output && opts.detach) throw new InputError("--output with --detach: the output is written as it arrives; detach, then write it with bach task-output TASK --output DIR");
  if (opts.output && !opts.keepOrder) throw new InputError("--output writes parts in input order; it cannot be used with --no-keep-order");
  const input = await resolveInput(opts.data, opts.dataList, opts.store ?? undefined);
  const chunkSize = opts.chunkSize === "auto" ? null : parseSize(opts.chunkSize, "--chunk-size");
  const prepared = await prepareTask(opts.taskDir, undefined, localFiles(input), (line) => process.stderr.write(`bach: ${line}\n`));
  const { bachfile, bundle } = prepared;

  let embedded: Embedded | null = null;
  let api: CoordinatorApi;
  if (opts.coordinator) {
    const remote = new RemoteApi(opts.coordinator, opts.token, opts.tls);
    await remote.ready();
    api = remote;
  } else {
    // With --ip, workers on other machines share -p: this machine keeps at most one slot per core.
    const cores = os.availableParallelism();
    const slots = opts.ip ? Math.min(opts.parallelism ?? cores, cores) : (opts.parallelism ?? cores);
    embedded = await startEmbedded({ slots, listenIp: opts.ip, containers: prepared.image !== null });
    api = embedded.api;
    if (opts.ip) {
      process.stderr.write(`bach: workers on other machines can join this run with: bach-worker join ${embedded.joinAddress} --token ${embedded.token}\n`);
    }
  }
  let taskId = "";
  let sink: OutputSink | null = null;
  let sinkDone = false;
  try {
    // Checked before the task exists: an output that may not be written stops the run here.
    sink = opts.output ? await openOutput(opts.output, opts.overwrite) : null;
    // The embedded worker shares this engine; only workers on other machines need the image sent.
    await uploadTask(api, prepared, !embedded || opts.ip !== null);
    const req: TaskRequest = {
      bachfile,
      bundleHash: bundle.hash,
      imageId: prepared.image?.id ?? "",
      parallelism: opts.parallelism ?? 0,
      chunkSize,
      input: taskInput(input, bachfile, embedded !== null && opts.ip === null, embedded !== null),
      dataStreams: opts.lb,
    };
    const created = await api.createTask(req);
    const task = created.id;
    taskId = task;
    const stopping = stopTaskWithUs(api, task, embedded);
    const reconnect = reconnecting(embedded ? null : (api as RemoteApi), opts.reconnectMs);
    // Only a remote coordinator can come back after a restart: only its input is kept for re-sending.
    if (created.why) process.stderr.write(`bach: ${created.why}: the input goes through ${embedded ? "this process" : "the coordinator"}\n`);
    const source = created.input === "stream" ? await openInput(input, bachfile.delimiter) : null;
    const feeding = !source ? Promise.resolve() : embedded ? api.putInput(task, source, 0).then(() => undefined) : feedInput(api, task, new ReplayableInput(source), reconnect);
    // An upload that breaks ends the task (a no-op when the coordinator already failed it), so the
    // output below ends too instead of waiting for input that will not come.
    const fed = feeding.then(
      () => null,
      async (err: Error) => {
        await api.cancel(task).catch((cancelErr: Error) => process.stderr.write(`bach: could not cancel ${task}: ${cancelErr.message}\n`));
        return err;
      },
    );
    if (opts.detach) {
      const inputError = await fed;
      if (inputError) throw inputError;
      process.stdout.write(`${task}\n`);
      return;
    }
    const line = opts.progress ? new Progress(input.kind === "stdin" ? null : input.size) : null;
    const notice = new WaitNotice({
      task,
      coordinator: opts.coordinator ?? embedded?.joinAddress ?? "HOST:PORT",
      afterMs: opts.workerWaitMs,
      remindEveryMs: 12 * opts.workerWaitMs,
      say: (text) => {
        line?.clear();
        process.stderr.write(`bach: ${text}\n`);
      },
    });
    const watch: Watcher = {
      update: (ev) => {
        notice.update(ev);
        line?.update(ev);
      },
      chunkDone: () => notice.ran(),
      clear: () => line?.clear(),
    };
    const { end, printed } = await printOutput(api, task, { keepOrder: opts.keepOrder, partial: false, summary: false, progress: watch, reconnect, sink });
    // Our own stop cancelled the task: it ends the process with its status, once the cancel is through.
    if (stopping()) await new Promise<never>(() => undefined);
    const inputError = await fed;
    // A task cancelled because its input could not be read ends with that one line, not a summary too.
    if (end.tally && !(inputError && end.state === "cancelled")) process.stderr.write(`${summaryLine({ ...end.tally, state: end.state })}\n`);
    sinkDone = true;
    const written = await sink?.finish(task, end.state === "succeeded");
    if (written) process.stderr.write(`bach: ${written}\n`);
    if (end.state !== "succeeded") {
      if (inputError && end.state !== "failed") throw inputError;
      if (end.state === "cancelled") throw new TaskCancelledError(`task ${task} was cancelled (by bach task-cancel)`, task);
      // --output keeps nothing of a task that failed: no committed chunk's output is "above".
      const offer = committedOffer(task, end, sink ? 0 : opts.keepOrder ? printed : end.tally?.committed ?? 0, embedded ? null : opts.coordinator);
      throw new TaskFailedError(`task ${task} ${end.state}: ${end.error}${offer}`, task);
    }
  } finally {
    // A run that stopped before its task ended leaves nothing in --output's place.
    if (sink && !sinkDone) await sink.finish(taskId, false).catch(() => undefined);
    // The embedded run has printed what it had: its spooled bytes are of no further use.
    if (embedded && taskId) embedded.coordinator.purgeTask(taskId);
    api.close();
    await embedded?.stop();
  }
}
