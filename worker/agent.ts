// The worker agent: keeps one bidirectional stream to the coordinator (reconnecting with backoff),
// says what it has, sends heartbeats, runs each assigned attempt and reports its result. It never
// decides what commits: the coordinator does, and fences results it has given up on.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { once } from "node:events";
import { status, type ClientDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Bachfile } from "../core/bachfile";
import type { Assign, CoordinatorClient, CoordinatorMessage, Piece, WorkerMessage } from "../core/generated/bach";
import { connect, FRAME_BYTES } from "../core/rpc";
import { createHash } from "node:crypto";
import { connectDocker, dockerAnswers, DockerUnavailableError } from "../core/docker";
import { BundleCache } from "./bundle-cache";
import { measureCapacity, type Capacity } from "./capacity";
import { DockerRuntime } from "./docker-runtime";
import { runProcess, type AttemptOutcome, type ChunkInput, type RunningAttempt } from "./process-runtime";
import { filePieces } from "../core/file-pieces";
import { OutcomeKind, retryableKind } from "../core/outcome";
import type { ClientTls } from "../core/tls";
import { BadBundleError } from "../core/bundle";
import { readEvents, sendBlocks, type DataPort } from "../core/data-client";
import { isOutcome, mapOutputToRun, reduceInput, reducerBachfile, runFailed, type Run } from "./map-reduce";
import { piecesFrames, type Frame } from "../core/input-objects";


/** auto: containers when a Docker Engine answers; docker: an engine is required; process: never containers. */
export type RuntimeChoice = "auto" | "docker" | "process";

export interface WorkerOptions {
  coordinator: string;
  token: string;
  /** TLS to the coordinator's gRPC and data ports (null: plain TCP). */
  tls?: ClientTls | null;
  slots: number;
  name: string;
  dataDir: string;
  /** Shares the coordinator's filesystem (the embedded case): read chunks and write outputs in place. */
  localFiles: boolean;
  /** Look for the coordinator's spool on this filesystem and use it in place when found (default true). */
  probeSpool?: boolean;
  interruptible: boolean;
  runtime: RuntimeChoice;
  /** What this worker offers, when less than the machine has. */
  offered?: { cpus?: number; memoryMb?: number; gpus?: number };
  log: Logger;
  /**
   * Longest wait between reconnection tries (default 1 s): a restarted coordinator is back within a
   * second or two, and with 5 s a worker could find it seconds late (the bench's first commit after a
   * coordinator restart took 8.6 s); one try a second per worker costs a down coordinator nothing.
   */
  maxBackoffMs?: number;
  /** How long a cached bundle nobody uses stays (default 7 days). */
  keepBundlesMs?: number;
  /** The coordinator refused our token: retrying cannot help. */
  onRefused?(message: string): void;
  /**
   * Lines for the person who started the worker (bach-worker prints them plainly on stderr): that
   * nothing answers at the coordinator's address yet, and when it joins after all.
   */
  say?(line: string): void;
  /** While nothing has ever answered, say so again this often (default 1 minute). */
  remindEveryMs?: number;
  /**
   * Give up when no coordinator has answered this long after start (absent: try for ever). A worker
   * that has joined once always reconnects: its coordinator is restarting, not absent.
   */
  giveUpMs?: number;
  /** Called once the worker has given up (it has stopped), with why the last try failed. */
  onGiveUp?(lastReason: string): void;
}

/** A read that never got through to its store (refused, unreachable, unresolvable), not one cut short. */
function cannotConnect(err: Error): boolean {
  return /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT/.test(err.message);
}

/** Plain words for why a connection to the coordinator failed, from grpc-js's details. */
export function unansweredWhy(details: string): string {
  const code = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ECONNRESET)\b/.exec(details)?.[1];
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ENOTFOUND: "no such host",
    EAI_AGAIN: "its name does not resolve",
    EHOSTUNREACH: "no route to the host",
    ENETUNREACH: "network unreachable",
    ETIMEDOUT: "connection timed out",
    ECONNRESET: "connection reset",
  };
  if (/Name resolution failed/.test(details)) return "its name does not resolve";
  return (code && words[code]) || details.replace(/^.*Last error: (Error: )?/, "").replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)$/, "");
}

function seconds(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)}s` : `${Math.round(ms / 60_000)}m`;
}

export const KEEP_BUNDLES_MS = 7 * 24 * 60 * 60 * 1000;

export class WorkerAgent {
  private client: CoordinatorClient;
  private stream: ClientDuplexStream<WorkerMessage, CoordinatorMessage> | null = null;
  private workerId = "";
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly running = new Map<number, RunningAttempt>();
  private stopping = false;
  private backoffMs = 100;
  private readonly bundles: BundleCache;
  private sharedSpool = false;
  /** The coordinator's TCP data port (0: none, or it did not answer): chunks and outputs go there. */
  private dataPort = 0;
  private containers: DockerRuntime | null = null;
  /** Every assigned attempt until its result is sent (drain waits for these). */
  private readonly inflight = new Set<Promise<void>>();
  /** The ids of those attempts: heartbeats list them, so the coordinator can reconcile its ledger. */
  private readonly assigned = new Set<number>();
  /** Tasks whose objects this worker could not reach: their chunks come through the coordinator. */
  private readonly unreachableObjects = new Set<string>();
  private capacity: Capacity | null = null;
  /** A coordinator has welcomed this worker at least once (then a lost connection is a restart to wait for). */
  private joinedOnce = false;
  /** Until the first welcome: when the worker began trying, and when it last said nothing answers (0: not yet). */
  private tryingSince = 0;
  private saidUnanswered = 0;
  private lastReason = "";
  private giveUp: NodeJS.Timeout | null = null;

  constructor(private readonly opts: WorkerOptions) {
    this.client = connect(opts.coordinator, opts.token, opts.tls ?? null);
    fs.mkdirSync(path.join(opts.dataDir, "attempts"), { recursive: true });
    this.bundles = new BundleCache(path.join(opts.dataDir, "bundles"), (hash) => this.fetchBundle(hash), opts.keepBundlesMs ?? KEEP_BUNDLES_MS);
  }

  /** Finds the engine (removing containers an earlier run of this worker left), then joins. */
  async start(): Promise<void> {
    if (this.opts.runtime !== "process") {
      const docker = connectDocker();
      if (await dockerAnswers(docker)) {
        this.containers = new DockerRuntime(docker, {
          dataDir: this.opts.dataDir,
          key: createHash("sha256").update(`${os.hostname()}\0${path.resolve(this.opts.dataDir)}`).digest("hex").slice(0, 16),
          log: this.opts.log,
          fetchImage: (id) => this.fetchImage(id),
        });
        await this.containers.removeLeftovers();
      } else if (this.opts.runtime === "docker") {
        throw new DockerUnavailableError("bach-worker --runtime docker");
      } else {
        this.opts.log.info("no Docker Engine answers: tasks with an image will not be placed here");
      }
    }
    this.capacity = measureCapacity(this.opts.dataDir, this.opts.offered);
    this.tryingSince = Date.now();
    if (this.opts.giveUpMs !== undefined) {
      this.giveUp = setTimeout(() => {
        if (this.joinedOnce || this.stopping) return;
        this.stop().then(
          () => this.opts.onGiveUp?.(this.lastReason),
          (err: Error) => this.opts.log.error({ err: err.message }, "stopping after giving up failed"),
        );
      }, this.opts.giveUpMs);
    }
    this.open();
  }

  /**
   * Leaves gracefully (SIGTERM; a spare machine being taken back): tells the coordinator to place
   * nothing more here, lets running attempts finish and report within `graceMs`, then stops; what
   * still runs then is killed and handed back (its chunks run elsewhere).
   */
  async drain(graceMs: number): Promise<void> {
    this.send({ kind: { $case: "draining", value: { graceMs } } });
    this.opts.log.info({ running: this.running.size, graceMs }, "draining: finishing running chunks, taking no new ones");
    const until = Date.now() + graceMs;
    while (this.inflight.size > 0 && Date.now() < until) {
      await Promise.race([Promise.allSettled([...this.inflight]), new Promise((resolve) => setTimeout(resolve, Math.min(200, until - Date.now())))]);
    }
    if (this.inflight.size > 0) this.opts.log.warn({ handedBack: this.inflight.size }, "grace period over: handing back the chunks still running");
    await this.stop();
  }

  /** Stops at once: running attempts are killed (the coordinator runs their chunks again), containers removed. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.giveUp) clearTimeout(this.giveUp);
    this.bundles.stop();
    const running = [...this.running.values()];
    for (const a of running) a.kill("worker stopping");
    const stream = this.stream;
    if (stream) {
      // Results written just before must reach the coordinator: close the channel only once it has
      // answered our end of the stream (or after a short wait, if it is gone).
      const answered = new Promise((resolve) => {
        stream.once("status", resolve);
        stream.once("error", resolve);
        stream.once("close", resolve);
      });
      stream.end();
      await Promise.race([answered, new Promise((resolve) => setTimeout(resolve, 2000))]);
    }
    this.client.close();
    await Promise.all(running.map((a) => a.done));
    await this.containers?.close();
  }

  private open(): void {
    const stream = this.client.work();
    this.stream = stream;
    stream.write({
      kind: {
        $case: "hello",
        value: {
          name: this.opts.name,
          host: os.hostname(),
          slots: this.opts.slots,
          cpus: this.capacity?.cpus ?? os.availableParallelism(),
          memoryMb: this.capacity?.memoryMb ?? Math.round(os.totalmem() / 2 ** 20),
          diskMb: this.capacity?.diskMb ?? 0,
          gpus: this.capacity?.gpus ?? 0,
          docker: this.containers !== null,
          localFiles: this.opts.localFiles,
          version: "0.1.0",
          interruptible: this.opts.interruptible,
          workerId: this.workerId,
        },
      },
    });
    stream.on("data", (msg: CoordinatorMessage) => this.onMessage(msg));
    stream.on("error", (err: Error & { code?: number; details?: string }) => {
      if (err.code === status.UNAUTHENTICATED) {
        // The refusal is what ends this worker (onRefused); a stop that fails on the way is logged.
        this.stop().catch((stopErr: Error) => this.opts.log.error({ err: stopErr.message }, "stopping after the coordinator refused us failed"));
        this.opts.onRefused?.(`coordinator ${this.opts.coordinator} refused us: ${err.details ?? err.message}`);
        return;
      }
      this.lost(stream, err.details ?? err.message);
    });
    stream.on("end", () => this.lost(stream, "coordinator closed the stream"));
  }

  private lost(stream: ClientDuplexStream<WorkerMessage, CoordinatorMessage>, reason: string): void {
    if (this.stream !== stream) return;
    this.stream = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    // The coordinator counts our running attempts as lost; finishing them would only be refused.
    for (const a of this.running.values()) a.kill("connection to the coordinator lost");
    if (this.stopping) return;
    if (this.joinedOnce) this.opts.log.warn({ reason, retryInMs: this.backoffMs }, "lost the coordinator; reconnecting");
    else this.unanswered(reason);
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 1000);
    setTimeout(() => {
      if (this.stopping) return;
      // A fresh channel: grpc-js's old one may hang on a coordinator restarted on the same port
      // (grpc/grpc-node#2785).
      this.client.close();
      this.client = connect(this.opts.coordinator, this.opts.token, this.opts.tls ?? null);
      this.open();
    }, wait);
  }

  /**
   * Nothing has answered yet (a wrong address, or a coordinator not started yet): said once in plain
   * words, then again every remindEveryMs, rather than a log line per try.
   */
  private unanswered(reason: string): void {
    this.lastReason = unansweredWhy(reason);
    this.opts.log.debug({ reason, retryInMs: this.backoffMs }, "no coordinator answers yet; trying again");
    const now = Date.now();
    if (this.saidUnanswered === 0) {
      this.opts.say?.(`nothing answers at ${this.opts.coordinator} (${this.lastReason}); trying again every second until a coordinator does`);
      this.saidUnanswered = now;
    } else if (now - this.saidUnanswered >= (this.opts.remindEveryMs ?? 60_000)) {
      this.opts.say?.(`still nothing answers at ${this.opts.coordinator} after ${seconds(now - this.tryingSince)} (${this.lastReason}); trying again every second`);
      this.saidUnanswered = now;
    }
  }

  /** Same machine (or the same shared disk): the coordinator's probe file is here, and its spool writable. */
  private sharesSpool(probe: string, token: string): boolean {
    if (!probe || !token) return false;
    const attempts = path.join(path.dirname(probe), "attempts");
    try {
      if (fs.readFileSync(probe, "utf8") !== token) return false;
      fs.accessSync(attempts, fs.constants.W_OK);
      return true;
    } catch (err) {
      // Not there or not ours to write: chunks come over the network, as on any other machine.
      this.opts.log.debug({ probe, err: (err as Error).message }, "coordinator's spool is not on this filesystem");
      return false;
    }
  }

  private send(msg: WorkerMessage): void {
    this.stream?.write(msg);
  }

  private onMessage(msg: CoordinatorMessage): void {
    const kind = msg.kind;
    if (!kind) return;
    switch (kind.$case) {
      case "welcome":
        this.workerId = kind.value.workerId;
        this.dataPort = kind.value.dataPort;
        this.backoffMs = 100;
        this.opts.log.info({ worker: this.workerId, coordinator: this.opts.coordinator }, "joined");
        if (!this.joinedOnce && this.saidUnanswered > 0) this.opts.say?.(`joined ${this.opts.coordinator} after ${seconds(Date.now() - this.tryingSince)}`);
        this.joinedOnce = true;
        if (this.giveUp) clearTimeout(this.giveUp);
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => this.send({ kind: { $case: "heartbeat", value: { running: [...this.assigned], fed: [...this.running].map(([attemptId, a]) => ({ attemptId, bytes: a.fed() })) } } }),
          kind.value.heartbeatMs,
        );
        this.heartbeat.unref();
        // The coordinator places nothing here until it knows whether chunks may be read in place.
        this.sharedSpool = !this.opts.localFiles && this.opts.probeSpool !== false && this.sharesSpool(kind.value.spoolProbe, kind.value.spoolToken);
        if (!this.opts.localFiles) this.send({ kind: { $case: "sharedSpool", value: { ok: this.sharedSpool } } });
        break;
      case "assign": {
        if (this.assigned.has(kind.value.attemptId)) break;
        this.assigned.add(kind.value.attemptId);
        const done: Promise<void> = this.runAttempt(kind.value)
          .then(
            (outcome) => this.report(kind.value.attemptId, outcome),
            (err: Error) => this.report(kind.value.attemptId, failedBeforeStart(err)),
          )
          .finally(() => this.inflight.delete(done));
        this.inflight.add(done);
        break;
      }
      case "cancel":
        this.running.get(kind.value.attemptId)?.kill(kind.value.reason);
        break;
      case "taskEnded":
        this.containers?.taskEnded(kind.value.taskId);
        this.unreachableObjects.delete(kind.value.taskId);
        break;
    }
  }

  private report(attemptId: number, o: AttemptOutcome & { run?: Run }): void {
    this.running.delete(attemptId);
    this.assigned.delete(attemptId);
    this.send({
      kind: {
        $case: "result",
        value: {
          attemptId, ok: o.ok, kind: o.kind, retryable: o.retryable, exitCode: o.exitCode, signal: o.signal, reason: o.reason, stderr: o.stderr, bytesIn: o.bytesIn, bytesOut: o.bytesOut, seconds: o.seconds,
          partitionEnds: o.run?.partitionEnds ?? [], marks: o.run?.marks ?? [],
        },
      },
    });
  }

  private async runAttempt(a: Assign): Promise<AttemptOutcome & { run?: Run }> {
    const bundle = await this.bundles.use(a.bundleHash);
    try {
      return await this.runIn(bundle.dir, a);
    } finally {
      bundle.release();
    }
  }

  private async runIn(cwd: string, a: Assign): Promise<AttemptOutcome & { run?: Run }> {
    const bachfile = JSON.parse(a.bachfileJson) as Bachfile;
    const reduce = bachfile.reduce;
    const inPlace = this.opts.localFiles || this.sharedSpool;
    // A reduce attempt has no chunk of its own: its input is its partition's runs (paths when in place).
    // Pieces of objects are read from where they live, in place or not; only the output's place differs.
    const pieces = a.source?.pieces ?? [];
    const local = inPlace && (a.reduce ? a.reduce.runs.every((r) => r.path) : a.source?.path || pieces.length > 0);
    const attempts = path.join(this.opts.dataDir, "attempts");
    const outputFile = local ? a.outputPath : path.join(attempts, `${a.attemptId}.out`);
    // A map attempt of a map-reduce task writes aside: its output is the run made from what it wrote.
    const mapOfReduce = reduce !== null && !a.reduce;
    const programOutput = mapOfReduce ? path.join(attempts, `${a.attemptId}.map`) : outputFile;
    const input: ChunkInput =
      reduce && a.reduce ? reduceInput(reduce, a.reduce.runs.map((r) => () => (local ? filePieces(r.path, r.offset, r.offset + r.length) : this.fetchChunk(a.attemptId, a.key, r.chunk))), attempts)
      : pieces.length > 0 ? { kind: "stream", frames: this.objectBytes(a, pieces, bachfile) }
      : local ? { kind: "range", path: a.source?.path ?? "", offset: a.source?.offset ?? 0, length: a.source?.length ?? 0 }
      : { kind: "stream", frames: this.fetchChunk(a.attemptId, a.key) };
    const env: Record<string, string> = { BACH_TASK: a.taskId, BACH_CHUNK: String(a.chunk), BACH_ATTEMPT: String(a.attemptId), BACH_WORKER: this.opts.name };
    // "input": "objects": the program's one record is this object; this is its name.
    if (bachfile.input === "objects" && pieces.length === 1) env.BACH_OBJECT = pieces[0].name;
    if (a.imageId && !this.containers) throw new Error(`worker ${this.opts.name} runs no containers (no Docker Engine answered when it started)`);
    const start = (program: Bachfile, chunk: ChunkInput, output: string): RunningAttempt => {
      const run = { bachfile: program, cwd, input: chunk, outputFile: output, workerName: this.opts.name, env };
      return a.imageId && this.containers ? this.containers.run({ ...run, taskId: a.taskId, imageId: a.imageId }) : runProcess(run);
    };
    const attempt = start(reduce && a.reduce ? reducerBachfile(bachfile, reduce) : bachfile, input, programOutput);
    this.running.set(a.attemptId, attempt);
    let outcome: AttemptOutcome & { run?: Run } = await attempt.done;
    if (mapOfReduce && reduce) {
      try {
        if (outcome.ok) {
          const made = await mapOutputToRun(reduce, {
            programOutput,
            runFile: outputFile,
            partitions: a.partitions,
            tmpDir: attempts,
            combine: (chunk, output) => start(reducerBachfile(bachfile, reduce), chunk, output),
            running: (combiner) => this.running.set(a.attemptId, combiner),
          });
          outcome = isOutcome(made) ? made : { ...outcome, bytesOut: made.bytes, run: made };
        }
      } catch (err) {
        outcome = runFailed(outcome, err as Error);
      } finally {
        await fs.promises.rm(programOutput, { force: true });
      }
    }
    if (!local) {
      try {
        if (outcome.ok) await this.uploadOutput(a.attemptId, a.key, outputFile);
      } catch (err) {
        // The program did its part; the output did not reach the coordinator (a full disk there, a cut link).
        return { ...outcome, ok: false, kind: OutcomeKind.input, retryable: true, reason: `sending the output failed: ${(err as Error).message}` };
      } finally {
        await fs.promises.rm(outputFile, { force: true });
      }
    }
    return outcome;
  }

  private fetchImage(id: string): Readable {
    const call = this.client.fetchImage({ id });
    return Readable.from((async function* () {
      for await (const frame of call) yield (frame as { data: Buffer }).data;
    })());
  }

  /** The coordinator's data port, as its welcome said; falls back to gRPC (for good) when it does not answer. */
  private dataPortNow(): DataPort | null {
    return this.dataPort === 0 ? null : { address: this.opts.coordinator, port: this.dataPort, token: this.opts.token, tls: this.opts.tls ?? null };
  }

  private dataPortGone(what: string): void {
    this.opts.log.warn({ port: this.dataPort }, `the coordinator's data port did not answer; ${what} over gRPC (slower)`);
    this.dataPort = 0;
  }

  /**
   * A chunk of objects, read where they live; when this worker cannot reach them (its first read of a
   * task's objects fails to connect), from the coordinator instead, for the rest of that task too. It
   * says so once a task.
   */
  private async *objectBytes(a: Assign, pieces: Piece[], bachfile: Bachfile): AsyncGenerator<Frame> {
    if (!this.unreachableObjects.has(a.taskId)) {
      let given = false;
      try {
        for await (const data of piecesFrames(pieces, bachfile.delimiter, bachfile.input === "objects", (why) => this.opts.log.warn({ attempt: a.attemptId, why }, "a read of the input was cut: reading on"))) {
          given = true;
          yield data;
        }
        return;
      } catch (err) {
        if (given || !cannotConnect(err as Error)) throw err;
        // Attempts running side by side may all find it out: the first says so.
        if (!this.unreachableObjects.has(a.taskId)) this.opts.log.warn({ task: a.taskId, why: (err as Error).message }, "cannot reach the task's objects: reading them through the coordinator");
        this.unreachableObjects.add(a.taskId);
      }
    }
    yield* this.fetchChunk(a.attemptId, a.key);
  }

  /**
   * A running attempt's chunk from the coordinator: over its data port into a ring of reused buffers
   * (each frame valid until the next is asked for), or over gRPC.
   */
  private async *fetchChunk(attemptId: number, key: string, run: number | null = null): AsyncGenerator<Buffer> {
    const port = this.dataPortNow();
    const events = port ? await readEvents(port, run === null ? { chunk: attemptId, key } : { chunk: attemptId, key, run }) : null;
    if (events) {
      // The events end with the chunk's end message (or throw when the stream breaks off).
      for await (const ev of events) if (ev.kind === "data") yield ev.data;
      return;
    }
    if (port) this.dataPortGone("fetching chunks");
    // run: map chunk N's run is N + 1 over gRPC (0: the attempt's own chunk).
    for await (const frame of this.client.fetchChunk({ attemptId, key, run: run === null ? 0 : run + 1 })) yield (frame as { data: Buffer }).data;
  }

  private async uploadOutput(attemptId: number, key: string, file: string): Promise<void> {
    const port = this.dataPortNow();
    if (port) {
      // Each piece is sent before the next is read: one buffer serves the whole file.
      const sent = await sendBlocks(port, { upload: attemptId, key }, filePieces(file, 0, Infinity, FRAME_BYTES, Buffer.allocUnsafeSlow(FRAME_BYTES)));
      if (sent !== null) return;
      this.dataPortGone("sending outputs");
    }
    return this.uploadOutputGrpc(attemptId, key, file);
  }

  private uploadOutputGrpc(attemptId: number, key: string, file: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client.putOutput((err) => (err ? reject(err) : resolve()));
      (async () => {
        let first = true;
        for await (const data of filePieces(file)) {
          if (!call.write({ attemptId: first ? attemptId : 0, key: first ? key : "", data })) await once(call, "drain");
          first = false;
        }
        if (first) call.write({ attemptId, key, data: Buffer.alloc(0) });
        call.end();
      })().catch((err: Error) => {
        call.destroy(err);
        reject(err);
      });
    });
  }

  private async *fetchBundle(hash: string): AsyncIterable<Buffer> {
    for await (const frame of this.client.fetchBundle({ hash })) yield (frame as { data: Buffer }).data;
  }
}

function failedBeforeStart(err: Error): AttemptOutcome {
  const kind = err instanceof BadBundleError ? OutcomeKind.badBundle : OutcomeKind.worker;
  return { ok: false, kind, retryable: retryableKind(kind), exitCode: -1, signal: "", reason: `could not start the attempt: ${err.message}`, stderr: "", bytesIn: 0, bytesOut: 0, seconds: 0 };
}
