// What the CLI needs from a coordinator, and its two forms: a remote one over gRPC, and the embedded
// one in this process (called directly, so streamed input does not pay for gRPC twice on one machine).
import fs from "node:fs";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { connectivityState } from "@grpc/grpc-js";
import type { Bachfile } from "../core/bachfile";
import type { CoordinatorClient, OutputFrame } from "../core/generated/bach";
import type { OutputEvent, TaskReport, TaskSummary, WorkerSummary } from "../core/report";
import { FRAME_BYTES, connect, userError } from "../core/rpc";
import { CoordinatorUnreachableError } from "../core/errors";
import type { Coordinator } from "../coordinator/coordinator";
import { taskList, taskReport, workerList } from "../coordinator/report";

export interface TaskRequest {
  bachfile: Bachfile;
  bundleHash: string;
  parallelism: number;
  chunkSize: number | null;
  input: { kind: "stream" } | { kind: "path"; path: string };
  dataStreams: number;
}

export interface CoordinatorApi {
  readonly address: string;
  hasBundle(hash: string): Promise<boolean>;
  putBundle(hash: string, file: string): Promise<void>;
  createTask(req: TaskRequest): Promise<string>;
  /** Streams the input with backpressure; resolves with the bytes the coordinator took. */
  putInput(task: string, source: Readable): Promise<number>;
  output(task: string, fromChunk: number, keepOrder: boolean): AsyncIterable<OutputEvent>;
  report(task: string | null): Promise<TaskReport>;
  listTasks(): Promise<TaskSummary[]>;
  listWorkers(): Promise<WorkerSummary[]>;
  cancel(task: string): Promise<void>;
  close(): void;
}

/**
 * Reads a stream in frames of about FRAME_BYTES: a pipe gives 64 KiB at a time, and one write to the
 * spool per MiB costs far less than one per 64 KiB.
 */
async function* frames(source: Readable): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    const b = chunk as Buffer;
    if (size === 0 && b.length >= FRAME_BYTES) {
      for (let i = 0; i < b.length; i += FRAME_BYTES) yield b.subarray(i, i + FRAME_BYTES);
      continue;
    }
    pending.push(b);
    size += b.length;
    if (size >= FRAME_BYTES) {
      const frame = Buffer.concat(pending, size);
      pending = [];
      size = 0;
      for (let i = 0; i < frame.length; i += FRAME_BYTES) yield frame.subarray(i, i + FRAME_BYTES);
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}

export class EmbeddedApi implements CoordinatorApi {
  constructor(private readonly c: Coordinator, readonly address: string) {}

  async hasBundle(hash: string): Promise<boolean> {
    return this.c.spool.hasBundle(hash);
  }

  async putBundle(hash: string, file: string): Promise<void> {
    await fs.promises.copyFile(file, this.c.spool.bundle(hash));
  }

  async createTask(req: TaskRequest): Promise<string> {
    return this.c.createTask(req);
  }

  async putInput(task: string, source: Readable): Promise<number> {
    let offset = 0;
    for await (const data of frames(source)) {
      await this.c.appendInput(task, offset, data);
      offset += data.length;
    }
    return this.c.endInput(task);
  }

  output(task: string, fromChunk: number, keepOrder: boolean): AsyncIterable<OutputEvent> {
    return this.c.streamOutput(task, fromChunk, keepOrder);
  }

  async report(task: string | null): Promise<TaskReport> {
    return taskReport(this.c.ledger, task);
  }

  async listTasks(): Promise<TaskSummary[]> {
    return taskList(this.c.ledger);
  }

  async listWorkers(): Promise<WorkerSummary[]> {
    return workerList(this.c.ledger);
  }

  async cancel(task: string): Promise<void> {
    this.c.cancelTask(task);
  }

  close(): void {
    // The embedded coordinator's lifetime belongs to whoever started it (see embedded.ts).
  }
}

export class RemoteApi implements CoordinatorApi {
  private readonly client: CoordinatorClient;

  constructor(readonly address: string, token: string) {
    this.client = connect(address, token);
  }

  /** Fails with a clear line when nothing answers at the address: at once if the connection fails. */
  ready(timeoutMs = 10_000): Promise<void> {
    const channel = this.client.getChannel();
    const deadline = Date.now() + timeoutMs;
    const unreachable = (why: string) => new CoordinatorUnreachableError(`coordinator ${this.address} unreachable: ${why} (is bach-coordinator running there?)`, this.address);
    return new Promise((resolve, reject) => {
      const check = () => {
        const state = channel.getConnectivityState(true);
        if (state === connectivityState.READY) return resolve();
        if (state === connectivityState.TRANSIENT_FAILURE) return reject(unreachable("connection failed"));
        channel.watchConnectivityState(state, deadline, (err) => (err ? reject(unreachable(`nothing answered within ${timeoutMs / 1000} s`)) : check()));
      };
      check();
    });
  }

  /** Wraps a callback-style unary call into a promise that rejects with a user error. */
  private call<T>(fn: (cb: (err: Error | null, res: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => fn((err, res) => (err ? reject(userError(err, this.address)) : resolve(res))));
  }

  async hasBundle(hash: string): Promise<boolean> {
    return (await this.call<{ present: boolean }>((cb) => this.client.hasBundle({ hash }, cb))).present;
  }

  async putBundle(hash: string, file: string): Promise<void> {
    await this.call<{ hash: string }>((cb) => {
      const stream = this.client.putBundle(cb);
      (async () => {
        for await (const data of fs.createReadStream(file, { highWaterMark: FRAME_BYTES })) {
          if (!stream.write({ hash, data: data as Buffer })) await once(stream, "drain");
        }
        stream.end();
      })().catch((err: Error) => stream.destroy(err));
    });
  }

  async createTask(req: TaskRequest): Promise<string> {
    const reply = await this.call<{ taskId: string }>((cb) =>
      this.client.createTask(
        {
          bachfileJson: JSON.stringify(req.bachfile),
          bundleHash: req.bundleHash,
          parallelism: req.parallelism,
          chunkSize: req.chunkSize ?? 0,
          inputKind: req.input.kind,
          inputPath: req.input.kind === "path" ? req.input.path : "",
          dataStreams: req.dataStreams,
          name: req.bachfile.logicalName,
        },
        cb,
      ),
    );
    return reply.taskId;
  }

  async putInput(task: string, source: Readable): Promise<number> {
    const reply = await this.call<{ bytesReceived: number }>((cb) => {
      const stream = this.client.putInput(cb);
      (async () => {
        let offset = 0;
        for await (const data of frames(source)) {
          if (!stream.write({ taskId: task, offset, data, eof: false })) await once(stream, "drain");
          offset += data.length;
        }
        stream.write({ taskId: task, offset, data: Buffer.alloc(0), eof: true });
        stream.end();
      })().catch((err: Error) => stream.destroy(err));
    });
    return reply.bytesReceived;
  }

  async *output(task: string, fromChunk: number, keepOrder: boolean): AsyncGenerator<OutputEvent> {
    const call = this.client.streamOutput({ taskId: task, fromChunk, keepOrder });
    try {
      for await (const frame of call) {
        const kind = (frame as OutputFrame).kind;
        if (!kind) continue;
        if (kind.$case === "data") yield { kind: "data", data: kind.value };
        else if (kind.$case === "chunkDone") yield { kind: "chunk-done", seq: kind.value };
        else if (kind.$case === "progress")
          yield { kind: "progress", bytesIn: kind.value.bytesIn, inputDone: kind.value.inputDone, planned: kind.value.chunksPlanned, committed: kind.value.chunksCommitted, running: kind.value.attemptsRunning };
        else yield { kind: "end", state: kind.value.state, error: kind.value.error };
      }
    } catch (err) {
      throw userError(err, this.address);
    }
  }

  async report(task: string | null): Promise<TaskReport> {
    const r = await this.call<{ json: string }>((cb) => this.client.report({ taskId: task ?? "" }, cb));
    return JSON.parse(r.json) as TaskReport;
  }

  async listTasks(): Promise<TaskSummary[]> {
    return JSON.parse((await this.call<{ json: string }>((cb) => this.client.listTasks({}, cb))).json) as TaskSummary[];
  }

  async listWorkers(): Promise<WorkerSummary[]> {
    return JSON.parse((await this.call<{ json: string }>((cb) => this.client.listWorkers({}, cb))).json) as WorkerSummary[];
  }

  async cancel(task: string): Promise<void> {
    await this.call((cb) => this.client.cancelTask({ taskId: task }, cb));
  }

  close(): void {
    this.client.close();
  }
}
