// A CLI that outlives its coordinator: when the coordinator dies mid-task (killed, its machine
// restarted) and comes back on the same data dir, `bach task-run` reconnects, re-sends the input from
// the last byte the coordinator had spooled, and carries on printing the output where it stopped,
// so the output is still complete, in order, and nothing is printed twice.
import { CoordinatorUnreachableError } from "../core/errors";
import { FRAME_BYTES } from "../core/rpc";
import type { OutputEvent } from "../core/report";
import type { CoordinatorApi } from "./api";

/** Input bytes kept after sending, for re-sending what a restarted coordinator had not yet spooled. */
const REPLAY_BYTES = 64 * 1024 * 1024;

/** A connection that broke or a coordinator that is down, not one that said no: worth trying again. */
export function isConnectionLoss(err: unknown): boolean {
  return err instanceof CoordinatorUnreachableError && !err.refused;
}

/**
 * Input read once (stdin cannot be read twice) that can be replayed from any offset within the last
 * REPLAY_BYTES sent: memory stays bounded however long the input is.
 */
export class ReplayableInput {
  private readonly kept: Buffer[] = [];
  /** Buffers of kept pieces that left the window, for copies of the next ones (no fresh memory a frame). */
  private readonly spare: Buffer[] = [];
  /** The input offset of kept[0], and how many bytes have been read from the source in all. */
  private keptFrom = 0;
  private read = 0;
  private ended = false;
  private pulling: Promise<void> | null = null;
  private readonly source: AsyncIterator<Buffer | Uint8Array>;

  constructor(source: AsyncIterable<Buffer | Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  /** The input from byte `offset` on. An abandoned earlier reader loses nothing: every read is kept. */
  async *from(offset: number): AsyncGenerator<Buffer> {
    let at = offset;
    for (;;) {
      while (at < this.read) {
        if (at < this.keptFrom) {
          throw new CoordinatorUnreachableError(`the coordinator lost the input from byte ${at} on, and this run kept only the last ${REPLAY_BYTES >> 20} MiB (from byte ${this.keptFrom})`, "", true);
        }
        const piece = this.keptAt(at);
        at += piece.length;
        yield piece;
      }
      if (this.ended) return;
      await this.pull();
    }
  }

  /** The kept bytes from `at` to the end of the kept buffer holding it. */
  private keptAt(at: number): Buffer {
    const last = this.kept[this.kept.length - 1];
    if (last && at >= this.read - last.length) return last.subarray(at - (this.read - last.length));
    let pos = this.keptFrom;
    for (const b of this.kept) {
      if (pos + b.length > at) return b.subarray(at - pos);
      pos += b.length;
    }
    throw new Error(`byte ${at} is not kept`);
  }

  /**
   * A kept copy of a piece the source may reuse once asked for the next (see pipeFrames). A full frame
   * goes into a spare buffer of its own; the small pieces of a slow stream are copied as they are.
   */
  private copy(v: Buffer | Uint8Array): Buffer {
    if (v.byteLength !== FRAME_BYTES) return Buffer.from(v);
    const into = this.spare.pop() ?? Buffer.allocUnsafeSlow(FRAME_BYTES);
    into.set(v);
    return into;
  }

  /** Reads the next piece of the source into the kept window (one read at a time, shared by all readers). */
  private pull(): Promise<void> {
    this.pulling ??= this.source.next().then((next) => {
      this.pulling = null;
      if (next.done) {
        this.ended = true;
        return;
      }
      const b = this.copy(next.value);
      this.kept.push(b);
      this.read += b.length;
      while (this.read - this.keptFrom - (this.kept[0]?.length ?? 0) >= REPLAY_BYTES) {
        const old = this.kept.shift() as Buffer;
        this.keptFrom += old.length;
        if (old.length === FRAME_BYTES) this.spare.push(old);
      }
    });
    return this.pulling;
  }
}

export interface Reconnecting {
  /** Try again for this long after losing the coordinator (0: never). */
  forMs: number;
  /** Resolves when the coordinator answers again, or rejects at the deadline. */
  waitForCoordinator(deadline: number): Promise<void>;
}

async function retrying<T>(what: string, r: Reconnecting, attempt: () => Promise<T>): Promise<T> {
  let deadline = 0;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (r.forMs <= 0 || !isConnectionLoss(err)) throw err;
      if (deadline === 0) {
        deadline = Date.now() + r.forMs;
        process.stderr.write(`bach: lost the coordinator while ${what} (${(err as Error).message}); reconnecting for up to ${Math.round(r.forMs / 1000)} s\n`);
      }
      await r.waitForCoordinator(deadline);
    }
  }
}

/** Sends the whole input, resuming where the coordinator's spool ends after each lost connection. */
export async function feedInput(api: CoordinatorApi, task: string, input: ReplayableInput, r: Reconnecting): Promise<void> {
  let offset = 0;
  let first = true;
  await retrying("sending the input", r, async () => {
    if (!first) {
      const status = await api.inputStatus(task);
      if (status.inputDone) return;
      offset = status.offset;
    }
    first = false;
    await api.putInput(task, input.from(offset), offset);
  });
}

/** The task's output as events, carrying on after a lost connection exactly where the last one stopped. */
export async function* followOutput(api: CoordinatorApi, task: string, keepOrder: boolean, r: Reconnecting, partial = false): AsyncGenerator<OutputEvent> {
  let chunk = 0;
  let bytesIntoChunk = 0;
  let deadline = 0;
  for (;;) {
    try {
      for await (const ev of api.output(task, chunk, keepOrder, bytesIntoChunk, partial)) {
        deadline = 0;
        if (ev.kind === "data") bytesIntoChunk += ev.data.length;
        if (ev.kind === "chunk-done") {
          chunk++;
          bytesIntoChunk = 0;
        }
        // A partial reader's gap: the chunks in it are passed, as printed ones are.
        if (ev.kind === "gap" && ev.to >= 0) chunk = ev.to + 1;
        yield ev;
        if (ev.kind === "end") return;
      }
      return;
    } catch (err) {
      if (r.forMs <= 0 || !isConnectionLoss(err)) throw err;
      if (deadline === 0) {
        deadline = Date.now() + r.forMs;
        process.stderr.write(`bach: lost the coordinator while reading the output (${(err as Error).message}); reconnecting for up to ${Math.round(r.forMs / 1000)} s\n`);
      }
      await r.waitForCoordinator(deadline);
    }
  }
}
