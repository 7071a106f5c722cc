// Intake: turns one task's input into chunks in the ledger. Streamed input is appended to the spool's
// input log before any chunk that covers it is recorded (a chunk is only handed out once its bytes are
// on disk); a file input is scanned in place. It never holds more than one read buffer of input.
import fs from "node:fs";
import path from "node:path";
import { Chunker, delimiterOverlapsItself, planCuts, type Cut } from "../core/chunker";
import type { ChunkSizer } from "../core/chunk-size";
import { InputError } from "../core/errors";
import type { Ledger } from "./ledger";
import { planObjectCuts, type InputObject } from "../core/input-objects";

const READ_BUFFER = 4 * 1024 * 1024;

export interface IntakeHooks {
  /**
   * Resolves when the task has room for more planned chunks (backpressure towards the reader); calls
   * `waiting` first when it has to wait.
   */
  room(waiting?: () => Promise<void>): Promise<void>;
  /** Called after chunks (or the end of input) were recorded. */
  recorded(): void;
  /** Work the intake did on its own (a timer's cut) failed: the task cannot go on as it is. */
  failed(err: Error): void;
}

function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

function clearTimer(timer: NodeJS.Timeout | undefined): undefined {
  if (timer) clearTimeout(timer);
  return undefined;
}

/**
 * Writes streamed input into one spool file per chunk. A cut the chunker makes behind what was
 * written (the end of the last whole record, when the record after it outgrew the chunk) moves that
 * partial record's bytes to the next chunk's file. A chunk's file is complete and closed before the
 * chunk is recorded.
 *
 * Its writes are synchronous, on the event loop: a write into the page cache takes ~0.2 ms per MiB,
 * and handing each to libuv's thread pool cost 3-10x the CPU on the machines measured here (1 GiB
 * in 1 MiB writes, one at a time: 0.2 s of system time synchronously, 1.7-2.4 s through the pool,
 * the threads' sleeps and wake-ups, not the copying).
 */
class ChunkFiles {
  private fd: number | null = null;
  /** The chunk the open (or next) file belongs to, and where it starts in the input. */
  private seq = 0;
  private start = 0;
  /** Every input byte before this offset is in some chunk file. */
  private written = 0;
  /** The open chunk's file holds spooled bytes from before a restart: open it without truncating. */
  private keep = false;

  /** `durable`: a chunk's file is fsynced before it is closed (and so before the chunk is recorded). */
  constructor(
    private readonly pathOf: (seq: number) => string,
    private readonly durable = false,
  ) {}

  /** Carries on after a restart: chunk `seq` starts at `start`, and its file holds the bytes up to `written`. */
  static resumed(pathOf: (seq: number) => string, seq: number, start: number, written: number, durable = false): ChunkFiles {
    const files = new ChunkFiles(pathOf, durable);
    files.seq = seq;
    files.start = start;
    files.written = written;
    files.keep = written > start;
    return files;
  }

  /**
   * Writes `data` (input bytes from `dataOffset`, which is where writing has come to), split at `cuts`.
   * On return it is all in the page cache, where a coordinator crash keeps it.
   */
  write(data: Buffer, dataOffset: number, cuts: Cut[]): void {
    for (const cut of cuts) {
      const end = cut.offset + cut.length;
      let carried: Buffer | null = null;
      if (end < this.written) {
        const fd = this.open();
        carried = Buffer.allocUnsafe(this.written - end);
        fs.readSync(fd, carried, 0, carried.length, end - this.start);
        fs.ftruncateSync(fd, end - this.start);
      } else if (end > this.written) {
        this.append(data.subarray(this.written - dataOffset, end - dataOffset));
      }
      this.close();
      // Only the resumed chunk's file is kept: one the cut closes without reopening is complete.
      this.keep = false;
      this.seq = cut.index + 1;
      this.start = end;
      if (carried) this.append(carried, end);
    }
    const rest = data.subarray(this.written - dataOffset);
    if (rest.length > 0) this.append(rest);
  }

  /** Writes `buf` at input offset `at` (default: where writing has come to). */
  private append(buf: Buffer, at = this.written): void {
    writeAll(this.open(), buf, at - this.start);
    this.written = Math.max(this.written, at + buf.length);
  }

  private open(): number {
    if (this.fd === null) {
      const file = this.pathOf(this.seq);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      // Read as well as written: a cut behind what was written reads the partial record back.
      this.fd = fs.openSync(file, this.keep ? "r+" : "w+");
      this.keep = false;
    }
    return this.fd;
  }

  close(): void {
    this.sync();
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  /** Under --durable, the open file's bytes reach the disk (before the ledger says they are spooled). */
  sync(): void {
    if (this.durable && this.fd !== null) fs.fdatasyncSync(this.fd);
  }
}

/**
 * A streamed chunk that has held a whole record this long, and that the input, at the pace it came in
 * meanwhile, would not fill within FILLS_SOON_MS more, is cut and runs: a slow stream (a log followed
 * with tail -f) gives output within seconds instead of when a chunk of 128 MiB fills, while a fast
 * one, even slowed by the programs it feeds, keeps its big chunks.
 */
export const CUT_AFTER_MS = 2000;
const FILLS_SOON_MS = 5000;

/** How often streamed input marks how far it is spooled: what a CLI may have to send again after a restart. */
const MARK_EVERY = 4 * 1024 * 1024;

/** Where a task's input stood when its coordinator stopped, from the ledger. */
export interface IntakeResume {
  /** The next chunk's number, and where it starts: the end of the last recorded chunk. */
  index: number;
  offset: number;
  /** The size the chunk being filled was given (0: not known). */
  openChunkSize: number;
  /** Streamed bytes spooled before the stop (at least `offset`). */
  spooled: number;
}

export class Intake {
  private readonly chunker: Chunker;
  private files: ChunkFiles | null = null;
  private bytesIn = 0;
  private done = false;
  private closed = false;
  /** An append is under way (waiting for room, or spooling). */
  private appending = false;
  private cutTimer: NodeJS.Timeout | undefined;
  /** bytesIn when cutTimer was armed: the pace of the input since. */
  private bytesAtArming = 0;
  private marked = 0;

  private readonly delimiter: Buffer;

  constructor(
    private readonly task: string,
    delimiter: string,
    private readonly sizer: ChunkSizer,
    private readonly ledger: Ledger,
    private readonly hooks: IntakeHooks,
    private readonly resume: IntakeResume | null = null,
    /** Spool files are fsynced before the ledger records what they hold (bach-coordinator --durable). */
    private readonly durable = false,
  ) {
    this.delimiter = Buffer.from(delimiter, "utf8");
    this.chunker = new Chunker(this.delimiter, (i) => this.sizeOf(i), resume ?? undefined);
    this.bytesIn = this.marked = resume?.offset ?? 0;
  }

  /** The chunk's target size; the one being filled is remembered, so a restart cuts it the same way. */
  private sizeOf(index: number): number {
    const size = this.resume && index === this.resume.index && this.resume.openChunkSize > 0 ? this.resume.openChunkSize : this.sizer.next(index);
    this.ledger.setOpenChunkSize(this.task, size);
    return size;
  }

  /**
   * After a restart: the chunk being filled keeps the bytes spooled before the stop (replayed through
   * the chunker, which so reaches the state it had), and streamed input continues after them.
   */
  async resumeStream(chunkPath: (seq: number) => string): Promise<number> {
    if (!this.resume) return 0;
    const { index, offset } = this.resume;
    const file = chunkPath(index);
    const onDisk = fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    const kept = Math.min(Math.max(0, this.resume.spooled - offset), onDisk);
    // Files after the open one were being written when the coordinator stopped: they are re-sent.
    const dir = path.dirname(file);
    for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      if (/^\d+$/.test(name) && Number(name) > index) fs.rmSync(path.join(dir, name), { force: true });
    }
    if (kept === 0) {
      fs.rmSync(file, { force: true });
      this.files = ChunkFiles.resumed(chunkPath, index, offset, offset, this.durable);
      return 0;
    }
    await fs.promises.truncate(file, kept);
    this.files = ChunkFiles.resumed(chunkPath, index, offset, offset + kept, this.durable);
    const handle = await fs.promises.open(file, "r");
    try {
      const buffer = Buffer.allocUnsafe(READ_BUFFER);
      for (let at = 0; at < kept; ) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, kept - at), at);
        const cuts = this.chunker.push(buffer.subarray(0, bytesRead));
        at += bytesRead;
        this.bytesIn = offset + at;
        if (cuts.length) this.files.write(Buffer.alloc(0), this.bytesIn, cuts);
        this.record(cuts, false);
      }
    } finally {
      await handle.close();
    }
    this.marked = this.bytesIn;
    return kept;
  }

  get received(): number {
    return this.bytesIn;
  }

  get finished(): boolean {
    return this.done;
  }

  /**
   * Appends streamed bytes at `offset` (which must be where the input has come to) to the spool. It
   * resolves once they are written (to the page cache), so the caller may reuse `data`'s memory.
   */
  async append(chunkPath: (seq: number) => string, offset: number, data: Buffer): Promise<void> {
    if (this.done) throw new InputError(`task ${this.task}: input already ended`);
    if (offset !== this.bytesIn) {
      throw new InputError(`task ${this.task}: input continues at byte ${this.bytesIn}, not ${offset}`, { offset });
    }
    if (data.length === 0) return;
    const files = (this.files ??= new ChunkFiles(chunkPath, this.durable));
    this.appending = true;
    try {
      // A reader held back marks all it has sent: a restart meanwhile would not ask for it again.
      await this.hooks.room(async () => this.markSpooled());
      if (this.closed) throw new InputError(`task ${this.task} has ended: it takes no more input`);
      const cuts = this.chunker.push(data);
      files.write(data, this.bytesIn, cuts);
      this.bytesIn += data.length;
      this.record(cuts, false);
      // A cut marks too: the chunk after it already holds the rest of this frame, which a restart keeps.
      if (cuts.length > 0 || this.bytesIn - this.marked >= MARK_EVERY) this.markSpooled();
      if (cuts.length > 0) this.cutTimer = clearTimer(this.cutTimer);
      if (this.chunker.holdsRecord && !this.cutTimer) this.armCut();
    } finally {
      this.appending = false;
    }
  }

  private armCut(): void {
    this.bytesAtArming = this.bytesIn;
    this.cutTimer = setTimeout(() => this.cutWaitingChunk(), CUT_AFTER_MS);
    this.cutTimer.unref();
  }

  /** The chunk being filled has held a whole record for CUT_AFTER_MS: unless it is about to fill, it is cut there and runs. */
  private cutWaitingChunk(): void {
    this.cutTimer = undefined;
    try {
      this.cutNow();
    } catch (err) {
      // A timer has no caller to throw to: a full disk, say, is the task's failure, not the process's.
      this.hooks.failed(err as Error);
    }
  }

  private cutNow(): void {
    // A reader held back for room has chunks enough waiting; its next append arms the timer again.
    if (this.done || this.closed || this.appending || !this.files) return;
    const perMs = (this.bytesIn - this.bytesAtArming) / CUT_AFTER_MS;
    if (perMs > 0 && this.chunker.left / perMs < FILLS_SOON_MS) return this.armCut();
    const cuts = this.chunker.flush();
    if (cuts.length === 0) return;
    this.files.write(Buffer.alloc(0), this.bytesIn, cuts);
    this.record(cuts, false);
    this.markSpooled();
  }

  private markSpooled(): void {
    if (this.bytesIn === this.marked) return;
    this.files?.sync();
    this.ledger.setSpooled(this.task, this.bytesIn);
    this.marked = this.bytesIn;
  }

  /** The task ended: its open spool file is closed, and it takes no more input. */
  close(): void {
    this.closed = true;
    this.cutTimer = clearTimer(this.cutTimer);
    this.files?.close();
  }

  async endStream(chunkPath: (seq: number) => string): Promise<void> {
    if (this.done) return;
    this.cutTimer = clearTimer(this.cutTimer);
    this.files ??= new ChunkFiles(chunkPath, this.durable);
    const cuts = this.chunker.end();
    this.files.write(Buffer.alloc(0), this.bytesIn, cuts);
    this.files.close();
    this.record(cuts, true);
  }

  /**
   * Plans chunks over a file every worker can read. With a delimiter that cannot overlap itself it
   * reads only small windows around each chunk's limit; otherwise it scans the file.
   */
  async scanFile(file: string): Promise<void> {
    const handle = await fs.promises.open(file, "r");
    try {
      if (delimiterOverlapsItself(this.delimiter)) await this.scanAll(handle);
      else await this.planByWindows(handle);
    } finally {
      await handle.close();
    }
  }

  /**
   * Plans chunks over input that workers read and align themselves (core/input-objects): byte ranges
   * of the line of objects, cut by size (objects read whole alone); a restart carries on after the
   * last recorded chunk.
   */
  async planObjects(objects: readonly InputObject[], whole: (o: InputObject) => boolean): Promise<void> {
    const total = objects.reduce((n, o) => n + o.size, 0);
    for (const cut of planObjectCuts(objects, whole, (i) => this.sizeOf(i), { index: this.resume?.index ?? 0, offset: this.resume?.offset ?? 0 })) {
      await this.hooks.room();
      this.bytesIn = cut.offset + cut.length;
      this.record([cut], this.bytesIn >= total);
    }
    if (!this.done) this.record([], true);
  }

  private async planByWindows(handle: fs.promises.FileHandle): Promise<void> {
    const total = (await handle.stat()).size;
    const read = async (offset: number, length: number) => {
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    };
    for await (const cut of planCuts(read, total, this.delimiter, (i) => this.sizeOf(i), this.resume ?? undefined)) {
      await this.hooks.room();
      this.bytesIn = cut.offset + cut.length;
      this.record([cut], this.bytesIn >= total);
    }
    if (!this.done) this.record([], true);
  }

  private async scanAll(handle: fs.promises.FileHandle): Promise<void> {
    const buffer = Buffer.allocUnsafe(READ_BUFFER);
    for (;;) {
      await this.hooks.room();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.bytesIn);
      if (bytesRead === 0) break;
      const cuts = this.chunker.push(buffer.subarray(0, bytesRead));
      this.bytesIn += bytesRead;
      this.record(cuts, false);
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
