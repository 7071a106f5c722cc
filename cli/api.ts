// What the CLI needs from a coordinator, and its two forms: a remote one over gRPC, and the embedded
// one in this process (called directly, so streamed input does not pay for gRPC twice on one machine).
import fs from "node:fs";
import { once } from "node:events";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { connectivityState } from "@grpc/grpc-js";
import type { CoordinatorClient, OutputFrame } from "../core/generated/bach";
import type { OutputEvent, TaskReport, TaskSummary, WorkerSummary } from "../core/report";
import { connect, userError } from "../core/rpc";
import { outputEventOf } from "../core/wire";
import { frames } from "../core/frames";
import { CoordinatorUnreachableError, InputError } from "../core/errors";
import { readEvents, sendBlocks } from "../core/data-client";
import type { OutputRequest } from "../core/output-wire";
import type { Coordinator, NewTask, NewTaskRequest } from "../coordinator/coordinator";
import { taskList, taskReport, workerList } from "../coordinator/report";
import { filePieces } from "../core/file-pieces";
import { tlsTrouble, type ClientTls } from "../core/tls";

/** What a task needs to start: the same request the coordinator's domain takes. */
export type TaskRequest = NewTaskRequest;

export interface CoordinatorApi {
  readonly address: string;
  hasBundle(hash: string): Promise<boolean>;
  putBundle(hash: string, file: string): Promise<void>;
  hasImage(id: string): Promise<boolean>;
  /** Streams a `docker save` tar of the image to the coordinator. */
  putImage(id: string, tar: Readable): Promise<void>;
  /** Creates the task; `input` says whether the coordinator reads the file in place or wants it streamed. */
  createTask(req: TaskRequest): Promise<NewTask>;
  /**
   * Streams the input with backpressure, `source` starting at byte `offset` of it; resolves with the
   * bytes the coordinator took. Rejects with CoordinatorUnreachableError when the connection breaks.
   */
  putInput(task: string, source: AsyncIterable<Buffer>, offset: number): Promise<number>;
  /** Where the task's input continues (after a lost connection). */
  inputStatus(task: string): Promise<{ offset: number; inputDone: boolean }>;
  /** The task's output from chunk `fromChunk` (in the order asked for), less its first `skipBytes`. */
  /** `partial`: once the task has ended, every committed chunk in input order, with a gap event for each run of the others. */
  output(task: string, fromChunk: number, keepOrder: boolean, skipBytes: number, partial: boolean): AsyncIterable<OutputEvent>;
  report(task: string | null): Promise<TaskReport>;
  listTasks(): Promise<TaskSummary[]>;
  listWorkers(): Promise<WorkerSummary[]>;
  cancel(task: string): Promise<void>;
  close(): void;
}

export class EmbeddedApi implements CoordinatorApi {
  constructor(private readonly c: Coordinator, readonly address: string) {}

  async hasBundle(hash: string): Promise<boolean> {
    return this.c.spool.hasBundle(hash);
  }

  async putBundle(hash: string, file: string): Promise<void> {
    await fs.promises.copyFile(file, this.c.spool.bundle(hash));
  }

  async hasImage(id: string): Promise<boolean> {
    return this.c.spool.hasImage(id);
  }

  async putImage(id: string, tar: Readable): Promise<void> {
    const part = `${this.c.spool.image(id)}.part`;
    await pipeline(tar, fs.createWriteStream(part));
    await fs.promises.rename(part, this.c.spool.image(id));
  }

  async createTask(req: TaskRequest): Promise<NewTask> {
    return this.c.createTask(req);
  }

  /** `source` yields frames; each is spooled before the next is asked for, so it may reuse their memory. */
  async putInput(task: string, source: AsyncIterable<Buffer>, from: number): Promise<number> {
    let offset = from;
    for await (const data of source) {
      await this.c.appendInput(task, offset, data);
      offset += data.length;
    }
    return this.c.endInput(task);
  }

  inputStatus(task: string): Promise<{ offset: number; inputDone: boolean }> {
    return this.c.inputStatus(task);
  }

  output(task: string, fromChunk: number, keepOrder: boolean, skipBytes: number, partial: boolean): AsyncIterable<OutputEvent> {
    return this.c.streamOutput(task, fromChunk, keepOrder, skipBytes, partial);
  }

  async report(task: string | null): Promise<TaskReport> {
    return taskReport(this.c.ledger, task);
  }

  async listTasks(): Promise<TaskSummary[]> {
    return taskList(this.c.ledger);
  }

  async listWorkers(): Promise<WorkerSummary[]> {
    return workerList(this.c.ledger, this.c.workers.seenAt());
  }

  async cancel(task: string): Promise<void> {
    this.c.cancelTask(task);
  }

  close(): void {
    // The embedded coordinator's lifetime belongs to whoever started it (see embedded.ts).
  }
}

export class RemoteApi implements CoordinatorApi {
  private client: CoordinatorClient;
  /** Each task's TCP data port, as CreateTask told it (0: bytes go through gRPC). */
  private readonly dataPorts = new Map<string, number>();

  constructor(
    readonly address: string,
    private readonly token: string,
    private readonly secure: ClientTls | null = null,
  ) {
    this.client = connect(address, token, secure);
  }

  /**
   * Fails with a clear line when nothing answers at the address (at once if the connection fails), or
   * when it answers but the TLS handshake fails (said as such: retrying would not help).
   */
  async ready(timeoutMs = 10_000): Promise<void> {
    const channel = this.client.getChannel();
    const deadline = Date.now() + timeoutMs;
    const unreachable = (why: string) => new CoordinatorUnreachableError(`coordinator ${this.address} unreachable: ${why} (is bach-coordinator running there?)`, this.address);
    const failed = await new Promise<Error | null>((resolve) => {
      const check = () => {
        const state = channel.getConnectivityState(true);
        if (state === connectivityState.READY) return resolve(null);
        if (state === connectivityState.TRANSIENT_FAILURE) return resolve(unreachable("connection failed"));
        channel.watchConnectivityState(state, deadline, (err) => (err ? resolve(unreachable(`nothing answered within ${timeoutMs / 1000} s`)) : check()));
      };
      check();
    });
    if (!failed) return;
    const trouble = await tlsTrouble(this.address, this.secure);
    throw trouble ? new CoordinatorUnreachableError(`coordinator ${this.address}: ${trouble}`, this.address, true) : failed;
  }

  /** Waits for a coordinator that went away to answer again, until `deadline` (ms since the epoch). */
  async waitUntilBack(deadline: number): Promise<void> {
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new CoordinatorUnreachableError(`coordinator ${this.address} did not come back in time`, this.address);
      // A fresh channel each try: grpc-js's old one may hang on a coordinator restarted on the same
      // port (grpc/grpc-node#2785).
      this.client.close();
      this.client = connect(this.address, this.token, this.secure);
      try {
        await this.ready(Math.min(2000, left));
        return;
      } catch (err) {
        if (!(err instanceof CoordinatorUnreachableError) || err.refused) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(0, deadline - Date.now()))));
      }
    }
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
        for await (const data of filePieces(file)) {
          if (!stream.write({ hash, data })) await once(stream, "drain");
        }
        stream.end();
      })().catch((err: Error) => stream.destroy(err));
    });
  }

  async hasImage(id: string): Promise<boolean> {
    return (await this.call<{ present: boolean }>((cb) => this.client.hasImage({ id }, cb))).present;
  }

  async putImage(id: string, tar: Readable): Promise<void> {
    await this.call<{ id: string }>((cb) => {
      const stream = this.client.putImage(cb);
      (async () => {
        let first = true;
        for await (const data of frames(tar)) {
          if (!stream.write({ id: first ? id : "", data })) await once(stream, "drain");
          first = false;
        }
        stream.end();
      })().catch((err: Error) => stream.destroy(err));
    });
  }

  async createTask(req: TaskRequest): Promise<NewTask> {
    const reply = await this.call<{ taskId: string; inputKind: string; inputNote: string; dataPort: number }>((cb) =>
      this.client.createTask(
        {
          bachfileJson: JSON.stringify(req.bachfile),
          bundleHash: req.bundleHash,
          imageId: req.imageId,
          parallelism: req.parallelism,
          chunkSize: req.chunkSize ?? 0,
          inputKind: req.input.kind,
          inputPath: req.input.kind === "path" ? req.input.path : "",
          inputSample: req.input.kind === "path" ? (req.input.sample ?? "") : "",
          inputSources: req.input.kind === "objects" ? req.input.sources : [],
          dataStreams: req.dataStreams,
          name: req.bachfile.logicalName,
        },
        cb,
      ),
    );
    this.dataPorts.set(reply.taskId, reply.dataPort);
    const input = reply.inputKind === "path" || reply.inputKind === "objects" ? reply.inputKind : "stream";
    return { id: reply.taskId, input, why: reply.inputNote || undefined };
  }

  async putInput(task: string, source: AsyncIterable<Buffer>, offset: number): Promise<number> {
    const port = this.dataPorts.get(task) ?? 0;
    if (port > 0) {
      const sent = await sendBlocks({ address: this.address, port, token: this.token, tls: this.secure }, { task, offset }, source);
      if (sent !== null) return sent;
      process.stderr.write(`bach: the coordinator's data port ${port} did not answer; sending the input over gRPC (slower)\n`);
      this.dataPorts.set(task, 0);
    }
    return this.putInputGrpc(task, source, offset);
  }

  async inputStatus(task: string): Promise<{ offset: number; inputDone: boolean }> {
    const s = await this.call<{ offset: number; dataPort: number; inputDone: boolean }>((cb) => this.client.getInputStatus({ taskId: task }, cb));
    this.dataPorts.set(task, s.dataPort);
    return s;
  }

  private async putInputGrpc(task: string, source: AsyncIterable<Buffer>, from: number): Promise<number> {
    // A source that fails (a corrupt input file) is that failure, not a lost coordinator.
    let sourceError: Error | null = null;
    async function* watched(): AsyncGenerator<Buffer> {
      try {
        yield* source;
      } catch (err) {
        sourceError = err as Error;
        throw err;
      }
    }
    const reply = await this.call<{ bytesReceived: number }>((cb) => {
      const stream = this.client.putInput(cb);
      (async () => {
        let offset = from;
        for await (const data of watched()) {
          if (!stream.write({ taskId: task, offset, data, eof: false })) await once(stream, "drain");
          offset += data.length;
        }
        stream.write({ taskId: task, offset, data: Buffer.alloc(0), eof: true });
        stream.end();
      })().catch((err: Error) => stream.destroy(err));
    }).catch((err: Error) => {
      throw sourceError ?? err;
    });
    return reply.bytesReceived;
  }

  async *output(task: string, fromChunk: number, keepOrder: boolean, skipBytes: number, partial: boolean): AsyncGenerator<OutputEvent> {
    // A reader that did not start the task (bach task-output) asks where the data port is.
    if (!this.dataPorts.has(task)) await this.inputStatus(task).catch((err: Error) => this.noPortFor(err));
    const port = this.dataPorts.get(task) ?? 0;
    const output: OutputRequest = { fromChunk, keepOrder, skipBytes, partial };
    const tcp = port > 0 ? await readEvents({ address: this.address, port, token: this.token, tls: this.secure }, { task, offset: 0, output }) : null;
    if (tcp) {
      yield* tcp;
      return;
    }
    if (port > 0) {
      process.stderr.write(`bach: the coordinator's data port ${port} did not answer; reading the output over gRPC (slower)\n`);
      this.dataPorts.set(task, 0);
    }
    const call = this.client.streamOutput({ taskId: task, fromChunk, keepOrder, skipBytes, partial });
    try {
      for await (const frame of call) {
        const ev = outputEventOf(frame as OutputFrame);
        if (ev) yield ev;
      }
    } catch (err) {
      throw userError(err, this.address);
    }
  }

  /** A task the coordinator does not know has no data port: the gRPC call that follows says what is wrong. */
  private noPortFor(err: Error): void {
    if (!(err instanceof InputError)) throw err;
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
