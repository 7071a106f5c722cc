// Where chunk bytes and attempt outputs live, for whatever moves them (gRPC streams to remote
// workers, paths for workers on this filesystem). It refuses attempts the ledger no longer runs, so a
// fenced attempt can neither read its chunk nor write an output. It never changes the ledger.
import { InputError } from "../core/errors";
import type { ChunkRow, Ledger, TaskRow } from "./ledger";
import type { Spool } from "./spool";

export interface ChunkBytes {
  path: string;
  offset: number;
  length: number;
}

export class ChunkData {
  private readonly streamGates = new Map<string, { active: number; waiting: (() => void)[] }>();

  constructor(
    private readonly ledger: Ledger,
    private readonly spool: Spool,
  ) {}

  /** Its own spool file for streamed input, a range of the file otherwise. */
  bytesOf(row: TaskRow, c: ChunkRow): ChunkBytes {
    return row.input_kind === "stream"
      ? { path: this.spool.inputChunk(row.id, c.seq), offset: 0, length: c.length }
      : { path: row.input_path, offset: c.offset, length: c.length };
  }

  /** Where a running attempt's chunk bytes are. */
  source(attempt: number): ChunkBytes & { task: string } {
    const a = this.running(attempt);
    return { ...this.bytesOf(this.ledger.task(a.task_id), this.ledger.chunk(a.task_id, a.seq)), task: a.task_id };
  }

  /**
   * Serves one attempt's chunk bytes through `send`, as one of the task's data streams: with --lb N, at
   * most N are served at once and the rest wait their turn.
   */
  async serve(attempt: number, send: (src: ChunkBytes) => Promise<void>): Promise<void> {
    const src = this.source(attempt);
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

  /** Where a remote worker's upload of a running attempt's output goes. */
  outputTarget(attempt: number): string {
    this.running(attempt);
    return this.spool.attemptOutput(attempt);
  }

  private running(attempt: number) {
    const a = this.ledger.attempt(attempt);
    if (a.state !== "running") throw new InputError(`attempt ${attempt} is no longer running`);
    return a;
  }
}
