// Where chunk bytes and attempt outputs live, for whatever moves them (gRPC streams to remote
// workers, paths for workers on this filesystem). It refuses attempts the ledger no longer runs, so a
// fenced attempt can neither read its chunk nor write an output, and connections that do not present
// the attempt's key: only the worker session the attempt was assigned to was told it. It never
// changes the ledger.
import fs from "node:fs";
import { createHmac, randomBytes } from "node:crypto";
import { InputError } from "../core/errors";
import { sameSecret } from "../core/secrets";
import type { ChunkRow, Ledger, TaskRow } from "./ledger";
import type { Spool } from "./spool";

export interface ChunkBytes {
  path: string;
  offset: number;
  length: number;
  /**
   * Input that lives elsewhere (objects), for a worker that cannot reach it: the coordinator reads the
   * chunk's pieces itself and sends their bytes (path is then "").
   */
  read?: () => AsyncIterable<Buffer>;
}

/** The chunk's pieces of an objects task, read as the worker would (see core/input-objects). */
export type ObjectsOf = (task: TaskRow, chunk: ChunkRow) => (() => AsyncIterable<Buffer>) | null;

export class ChunkData {
  private readonly streamGates = new Map<string, { active: number; waiting: (() => void)[] }>();
  /**
   * Keys are derived from this process's secret: a restart makes every running attempt lost anyway,
   * so nothing about them needs to outlive the process or sit in the ledger.
   */
  private readonly secret = randomBytes(32);

  constructor(
    private readonly ledger: Ledger,
    private readonly spool: Spool,
    private readonly objectsOf: ObjectsOf = () => null,
  ) {}

  /** Its own spool file for streamed input, a range of the file otherwise. */
  bytesOf(row: TaskRow, c: ChunkRow): ChunkBytes {
    if (row.input_kind === "objects") {
      const read = this.objectsOf(row, c);
      if (!read) throw new InputError(`chunk ${c.seq} of task ${row.id} is read from where its objects live, and its task is not running here`);
      return { path: "", offset: c.offset, length: c.length, read };
    }
    return row.input_kind === "stream"
      ? { path: this.spool.inputChunk(row.id, c.seq), offset: 0, length: c.length }
      : { path: row.input_path, offset: c.offset, length: c.length };
  }

  /** The key an attempt's own worker presents to fetch its chunk or send its output. */
  keyOf(attempt: number): string {
    return createHmac("sha256", this.secret).update(String(attempt)).digest("hex");
  }

  /**
   * Where a running attempt's chunk bytes are, for the holder of its key; for a reduce attempt, the
   * range of map chunk `run`'s committed run that holds its partition (run: the map chunk's number).
   */
  source(attempt: number, key: string, run: number | null = null): ChunkBytes & { task: string } {
    const a = this.running(attempt, key);
    const task = this.ledger.task(a.task_id);
    const chunk = this.ledger.chunk(a.task_id, a.seq);
    if (run === null) return { ...this.bytesOf(task, chunk), task: a.task_id };
    return { ...this.runOf(task, chunk, run), task: a.task_id };
  }

  /** A reduce partition's range of a map chunk's committed run. */
  runOf(task: TaskRow, reduce: ChunkRow, run: number): ChunkBytes {
    if (reduce.phase !== "reduce" || task.map_chunks === null) throw new InputError(`chunk ${reduce.seq} of task ${task.id} is not a reduce partition: it has no runs to fetch`);
    const range = this.ledger.shuffleRange(task.id, reduce.seq - task.map_chunks, run);
    const map = this.ledger.findChunk(task.id, run);
    if (!range || !map || map.committed_attempt === null) throw new InputError(`reduce partition ${reduce.seq - task.map_chunks} of task ${task.id} has no run of map chunk ${run}`);
    return { path: this.spool.attemptOutput(map.committed_attempt), offset: range.offset, length: range.length };
  }

  /**
   * Serves one attempt's chunk bytes through `send`, as one of the task's data streams: with --lb N, at
   * most N are served at once and the rest wait their turn.
   */
  async serve(attempt: number, key: string, send: (src: ChunkBytes) => Promise<void>, run: number | null = null): Promise<void> {
    const src = this.source(attempt, key, run);
    const cap = this.ledger.task(src.task).data_streams;
    const gate = this.streamGates.get(src.task) ?? { active: 0, waiting: [] };
    this.streamGates.set(src.task, gate);
    while (cap > 0 && gate.active >= cap) await new Promise<void>((resolve) => gate.waiting.push(resolve));
    gate.active++;
    try {
      await send(src);
    } finally {
      gate.active--;
      gate.waiting.shift()?.();
      if (gate.active === 0 && gate.waiting.length === 0) this.streamGates.delete(src.task);
    }
  }

  /**
   * Writes a remote worker's upload of a running attempt's output (for the holder of its key) where
   * its commit reads it; returns the bytes written. Each piece is written before the next is asked
   * for, synchronously (see Intake's ChunkFiles for why), so a piece may be a reused buffer. The same
   * for gRPC's PutOutput and the data port.
   */
  async receiveOutput(attempt: number, key: string, pieces: AsyncIterable<Buffer>): Promise<number> {
    this.running(attempt, key);
    // Written aside and renamed into place at its end, and only while the attempt still runs: an
    // upload that outlives its attempt's commit (or a second one) never changes committed bytes.
    const target = this.spool.attemptOutput(attempt);
    const part = `${target}.${randomBytes(4).toString("hex")}.part`;
    const fd = fs.openSync(part, "w");
    let bytes = 0;
    try {
      try {
        for await (const piece of pieces) {
          for (let done = 0; done < piece.length; ) done += fs.writeSync(fd, piece, done, piece.length - done, bytes + done);
          bytes += piece.length;
        }
      } finally {
        fs.closeSync(fd);
      }
      this.running(attempt, key);
      fs.renameSync(part, target);
    } finally {
      fs.rmSync(part, { force: true });
    }
    return bytes;
  }

  private running(attempt: number, key: string) {
    if (!sameSecret(key, this.keyOf(attempt))) throw new InputError(`attempt ${attempt}: wrong or missing attempt key (only the worker it was assigned to may read its chunk or send its output)`);
    const a = this.ledger.findAttempt(attempt);
    if (!a) throw new InputError(`no attempt ${attempt}`);
    if (a.state !== "running") throw new InputError(`attempt ${attempt} is no longer running`);
    return a;
  }
}
