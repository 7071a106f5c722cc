// Chunk sizing for `--chunk-size auto`: from what a task's attempts measure (the fixed cost of a fresh
// program process and its bytes per second), pick chunks big enough that the fixed cost stays a few
// percent, yet small enough that every slot gets several chunks. Pure: no clocks, no I/O.

const MiB = 1024 * 1024;
export const MIN_CHUNK = 1 * MiB;
/** Bounds the work a lost attempt throws away. */
export const MAX_CHUNK = 1024 * MiB;
/**
 * A streamed chunk runs only once all of it is spooled: this bounds how long a slot waits for it and
 * the spool an unstarted chunk holds.
 */
export const MAX_STREAM_CHUNK = 512 * MiB;
/**
 * A stream's first round of chunks (one per slot) holds this much in all, so every slot has a chunk
 * after about this much input; each chunk within 4-128 MiB. Later rounds grow 4x: for a node mapper
 * each chunk costs a fresh process's warm-up (see PRIOR_FIXED_SECONDS). 1 GiB of stdin through -p 2,
 * measured here in interleaved runs: 16-32-64... MiB rounds (11 chunks) 4.5-5.0 s; 64-256 MiB rounds
 * capped at 256 MiB (6 chunks) 4.4-6.0 s and 8.1-10.7 CPU-s; 128-512 MiB rounds capped at 512 MiB
 * (4 chunks) 4.1-4.8 s and 6.9-7.7 CPU-s.
 */
export const FIRST_ROUND = 256 * MiB;
const FIRST_CHUNK_BOUNDS = [4 * MiB, 128 * MiB] as const;
const ROUND_GROWTH = 4;
/** Fixed cost at most 1/(1+19) = 5% of an attempt. */
const FIXED_COST_SHARE = 19;
/**
 * Priors until measured: a light node mapper, the worst case (~450 MB/s on one core). Its fixed cost
 * is more than its start: a cold V8 runs the first ~100 MB at about half speed. Measured here, 512 MiB
 * as two processes took 0.3-0.5 CPU-s more than as one; with two slots busy each extra chunk of 1 GiB
 * -p 2 cost ~0.7 s (4 chunks of 256 MiB 3.4-3.9 s, 2 of 512 MiB 2.8-3.1 s, pipepart 2.5-3.1 s).
 */
const PRIOR_FIXED_SECONDS = 0.3;
const PRIOR_BYTES_PER_SECOND = 400e6;
/**
 * No fresh process is free (fork, exec, a runtime's start): a fit that finds less is noise (timings
 * of busy slots; it once sized a node mapper's chunks down to 1 MiB), and the prior stands instead.
 */
const MIN_FIXED_SECONDS = 0.02;
const CHUNKS_PER_SLOT = 8;
const EVEN_SLACK = 1.01;

export interface Observation {
  bytes: number;
  seconds: number;
}

/** Least squares of seconds = fixed + bytes / rate; falls back to the priors where the data cannot tell. */
export function fitCost(obs: readonly Observation[]): { fixedSeconds: number; bytesPerSecond: number } {
  const prior = { fixedSeconds: PRIOR_FIXED_SECONDS, bytesPerSecond: PRIOR_BYTES_PER_SECOND };
  const usable = obs.filter((o) => o.bytes > 0 && o.seconds > 0);
  if (usable.length === 0) return prior;
  const n = usable.length;
  const mx = usable.reduce((s, o) => s + o.bytes, 0) / n;
  const my = usable.reduce((s, o) => s + o.seconds, 0) / n;
  const sxx = usable.reduce((s, o) => s + (o.bytes - mx) ** 2, 0);
  const sxy = usable.reduce((s, o) => s + (o.bytes - mx) * (o.seconds - my), 0);
  if (n >= 2 && sxx >= (0.25 * mx) ** 2) {
    const slope = sxy / sxx;
    const intercept = my - slope * mx;
    if (slope <= 0) return prior;
    if (intercept >= MIN_FIXED_SECONDS) return { fixedSeconds: intercept, bytesPerSecond: 1 / slope };
  }
  // One size only, or no fixed cost to be seen: keep the prior fixed cost, take the rate from what is left.
  const perByte = Math.max(my - prior.fixedSeconds, my * 0.5) / mx;
  return { fixedSeconds: prior.fixedSeconds, bytesPerSecond: 1 / perByte };
}

export interface SizerOptions {
  /** An explicit --chunk-size always wins. */
  explicit: number | null;
  /** The input's size when known (a file), else null (a stream). */
  totalBytes: number | null;
  slots: number;
}

export class ChunkSizer {
  private readonly observations: Observation[] = [];

  constructor(private readonly opts: SizerOptions) {}

  observe(o: Observation): void {
    this.observations.push(o);
  }

  /** The smallest chunk whose fixed cost stays under 5%, by what has been measured so far. */
  efficientSize(): number {
    const { fixedSeconds, bytesPerSecond } = fitCost(this.observations);
    return clamp(fixedSeconds * bytesPerSecond * FIXED_COST_SHARE, MIN_CHUNK, MAX_CHUNK);
  }

  /** Target size of chunk `index`, consulted when that chunk starts. */
  next(index: number): number {
    if (this.opts.explicit !== null) return this.opts.explicit;
    const efficient = this.efficientSize();
    const slots = Math.max(1, this.opts.slots);
    if (this.opts.totalBytes !== null) {
      // Known size: several chunks per slot when the fixed cost allows it, never below efficient,
      // and never so big that a slot gets nothing.
      const total = this.opts.totalBytes;
      const spread = Math.ceil(total / (slots * CHUNKS_PER_SLOT));
      const oneEach = Math.ceil(total / slots);
      const target = clamp(Math.min(Math.max(spread, efficient), oneEach), MIN_CHUNK, MAX_CHUNK);
      // Split evenly, so the input does not end in a sliver that costs a whole process (1 GiB and
      // 32 KiB in 256 MiB chunks was 5 chunks). The 1% slack absorbs chunks ending a little short of
      // their size at a record boundary, which would otherwise push a sliver to the end again.
      const count = Math.max(1, Math.round(total / target));
      return Math.max(MIN_CHUNK, Math.ceil((total / count) * EVEN_SLACK));
    }
    // A stream's chunk can start only once it has all arrived: sizes grow once per round of slots,
    // so every slot has a first chunk early (growing every chunk left one slot working alone).
    const first = clamp(FIRST_ROUND / slots, ...FIRST_CHUNK_BOUNDS);
    const ramp = first * ROUND_GROWTH ** Math.min(Math.floor(index / slots), 10);
    return clamp(Math.min(ramp, efficient), MIN_CHUNK, MAX_STREAM_CHUNK);
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.round(Math.min(hi, Math.max(lo, n)));
}
