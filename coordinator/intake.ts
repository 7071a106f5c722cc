// Intake: turns one task's input into chunks in the ledger. Streamed input is appended to the spool's
// input log before any chunk that covers it is recorded (a chunk is only handed out once its bytes are
// on disk); a file input is scanned in place. It never holds more than one read buffer of input.
import fs from "node:fs";
import { Chunker, type Cut } from "../core/chunker";
import type { ChunkSizer } from "../core/chunk-size";
import { InputError } from "../core/errors";
import type { Ledger } from "./ledger";

const READ_BUFFER = 4 * 1024 * 1024;

export interface IntakeHooks {
  /** Resolves when the task has room for more planned chunks (backpressure towards the reader). */
  room(): Promise<void>;
  /** Called after chunks (or the end of input) were recorded. */
  recorded(): void;
}

export class Intake {
  private readonly chunker: Chunker;
  private log: fs.promises.FileHandle | null = null;
  private bytesIn = 0;
  private done = false;

  constructor(
    private readonly task: string,
    delimiter: string,
    sizer: ChunkSizer,
    private readonly ledger: Ledger,
    private readonly hooks: IntakeHooks,
  ) {
    this.chunker = new Chunker(Buffer.from(delimiter, "utf8"), (i) => sizer.next(i));
  }

  get received(): number {
    return this.bytesIn;
  }

  get finished(): boolean {
    return this.done;
  }

  /** Appends streamed bytes at `offset` (which must be where the input has come to) to the input log. */
  async append(logPath: string, offset: number, data: Buffer): Promise<void> {
    if (this.done) throw new InputError(`task ${this.task}: input already ended`);
    if (offset !== this.bytesIn) {
      throw new InputError(`task ${this.task}: input continues at byte ${this.bytesIn}, not ${offset}`, { offset });
    }
    if (data.length === 0) return;
    this.log ??= await fs.promises.open(logPath, "a");
    await this.hooks.room();
    const cuts = this.chunker.push(data);
    await this.log.write(data);
    this.bytesIn += data.length;
    this.record(cuts, false);
  }

  async endStream(): Promise<void> {
    if (this.done) return;
    await this.log?.sync();
    await this.log?.close();
    this.log = null;
    this.record(this.chunker.end(), true);
  }

  /** Plans chunks over a file every worker can read, reading it only to find record boundaries. */
  async scanFile(file: string): Promise<void> {
    const handle = await fs.promises.open(file, "r");
    try {
      const buffer = Buffer.allocUnsafe(READ_BUFFER);
      for (;;) {
        await this.hooks.room();
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.bytesIn);
        if (bytesRead === 0) break;
        const cuts = this.chunker.push(buffer.subarray(0, bytesRead));
        this.bytesIn += bytesRead;
        this.record(cuts, false);
      }
    } finally {
      await handle.close();
    }
    this.record(this.chunker.end(), true);
  }

  private record(cuts: Cut[], end: boolean): void {
    if (cuts.length === 0 && !end) return;
    this.done = end;
    this.ledger.addChunks(
      this.task,
      cuts.map((c) => ({ seq: c.index, offset: c.offset, length: c.length })),
      this.bytesIn,
      end,
    );
    this.hooks.recorded();
  }
}
