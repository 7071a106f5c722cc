// A worker's part of map-reduce (README "Map-reduce"). After a map attempt's program has exited 0, its
// output becomes a run: sorted by key (and cut into the task's hash partitions), optionally reduced
// first by the reduce program (the combiner), on a thread of its own. A reduce attempt's stdin is the
// merge, in key order, of its partition's ranges of every map chunk's run.
import fs from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Bachfile, Reduce } from "../core/bachfile";
import { mergeRuns } from "../core/shuffle";
import type { SortAnswer, SortJob } from "./shuffle-thread";
import type { AttemptOutcome, ChunkInput, RunningAttempt } from "./process-runtime";
import { OutcomeKind } from "../core/outcome";

/**
 * Sorts a file on a thread of its own (see shuffle-thread.ts). Its young generation is held to 4 MiB:
 * a sort makes its garbage in big buffers, and V8's default young space let two sorting threads take
 * the CLI of an embedded run to 296 MB peak RSS (512 MiB of map output, a key a record); with this,
 * 244 MB, in the same time.
 */
export function sortOnThread(job: SortJob): Promise<Extract<SortAnswer, { ok: true }>> {
  return new Promise((resolve, reject) => {
    const thread = new Worker(path.join(__dirname, "shuffle-thread.js"), { workerData: job, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    let answered = false;
    thread.once("message", (answer: SortAnswer) => {
      answered = true;
      if (answer.ok) resolve(answer);
      else reject(new Error(answer.error));
    });
    thread.once("error", reject);
    thread.once("exit", (code) => {
      if (!answered) reject(new Error(`the sort thread exited (${code}) without an answer`));
    });
  });
}

/** The bachfile an attempt runs the reduce program with: the task's, with the reduce program in place of the map program. */
export function reducerBachfile(b: Bachfile, r: Reduce): Bachfile {
  return { ...b, binary: r.binary, args: r.args };
}

export interface MapOutput {
  /** The map program's output, as it wrote it. */
  programOutput: string;
  /** Where the run goes: the attempt's output. */
  runFile: string;
  /** Hash partitions (0: total order). */
  partitions: number;
  tmpDir: string;
  /** Runs the reduce program over a file (the combiner), as the attempt's runtime runs programs. */
  combine(input: ChunkInput, outputFile: string): RunningAttempt;
  /** While the combiner runs, a cancel of the attempt stops it. */
  running(attempt: RunningAttempt): void;
}

export interface Run {
  bytes: number;
  partitionEnds: number[];
  marks: number[];
}

/**
 * Turns a map attempt's output into its run; the combiner's failure is the attempt's (returned as its
 * outcome, saying so). Every file but the run is removed.
 */
export async function mapOutputToRun(reduce: Reduce, m: MapOutput): Promise<Run | AttemptOutcome> {
  const base = { delimiter: Buffer.from(reduce.delimiter), separator: Buffer.from(reduce.key.separator), fields: reduce.key.fields, tmpDir: m.tmpDir };
  const partitions = reduce.order === "hash" ? m.partitions : null;
  const sorted = `${m.programOutput}.sorted`;
  const combined = `${m.programOutput}.combined`;
  try {
    let source = m.programOutput;
    if (reduce.combine) {
      const plain = await sortOnThread({ ...base, to: "plain", input: m.programOutput, output: sorted, partitions: null });
      const combiner = m.combine({ kind: "range", path: sorted, offset: 0, length: plain.bytes }, combined);
      m.running(combiner);
      const outcome = await combiner.done;
      if (!outcome.ok) return { ...outcome, reason: `the combiner (the reduce program over this chunk's map output) failed: ${outcome.reason}` };
      source = combined;
    }
    const run = await sortOnThread({ ...base, to: "run", input: source, output: m.runFile, partitions });
    return { bytes: run.bytes, partitionEnds: run.partitionEnds, marks: run.marks };
  } finally {
    for (const f of [sorted, combined]) await fs.promises.rm(f, { force: true });
  }
}

export function isOutcome(r: Run | AttemptOutcome): r is AttemptOutcome {
  return "ok" in r;
}

/** A run that could not be made (a disk full, a malformed record count): the attempt fails and is retried. */
export function runFailed(outcome: AttemptOutcome, err: Error): AttemptOutcome {
  return { ...outcome, ok: false, kind: OutcomeKind.worker, retryable: true, reason: `sorting the map output failed: ${err.message}` };
}

/** A reduce attempt's stdin: its runs merged in key order (each opened when the merge needs it). */
export function reduceInput(reduce: Reduce, runs: (() => AsyncIterable<Buffer>)[], tmpDir: string): ChunkInput {
  return { kind: "stream", frames: mergeRuns(runs, { delimiter: Buffer.from(reduce.delimiter), tmpDir }) };
}
