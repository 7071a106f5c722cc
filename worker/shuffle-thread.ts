// The map side's sort, on a thread of its own: an embedded run's workers share the CLI's event loop
// with the coordinator, and two map attempts sorting there at once would take turns on one core.
// It runs one sort (core/shuffle.ts) from its workerData and posts the result, or the error's message.
import { parentPort, workerData } from "node:worker_threads";
import { sortToPlain, sortToRun, type SortOptions } from "../core/shuffle";

/**
 * A sort's memory for one spill (its peak is 4 to 6 times this: the read buffer, its index, the sorted
 * image): two map attempts sort at once in an embedded run of -p 2, each on a thread of the CLI's
 * process, and with the default 32 MiB spills that process peaked near 300 MB.
 */
const SPILL_BYTES = 8 * 1024 * 1024;

export interface SortJob {
  /** run: a run file (the shuffle's); plain: sorted records each ending in the delimiter (a combiner's stdin). */
  to: "run" | "plain";
  input: string;
  output: string;
  delimiter: Uint8Array;
  separator: Uint8Array;
  fields: number;
  partitions: number | null;
  tmpDir: string;
}

export type SortAnswer = { ok: true; bytes: number; records: number; partitionEnds: number[]; marks: number[] } | { ok: false; error: string };

async function sortJob(job: SortJob): Promise<SortAnswer> {
  const options: SortOptions = {
    delimiter: Buffer.from(job.delimiter),
    key: { separator: Buffer.from(job.separator), fields: job.fields },
    partitions: job.partitions,
    tmpDir: job.tmpDir,
    spillBytes: SPILL_BYTES,
  };
  if (job.to === "plain") {
    const done = await sortToPlain(job.input, job.output, options);
    return { ok: true, bytes: done.bytes, records: done.records, partitionEnds: [], marks: [] };
  }
  const run = await sortToRun(job.input, job.output, options);
  return { ok: true, bytes: run.bytes, records: run.records, partitionEnds: run.partitionEnds, marks: run.marks };
}

if (parentPort) {
  const port = parentPort;
  sortJob(workerData as SortJob).then(
    (answer) => port.postMessage(answer),
    (err: Error) => port.postMessage({ ok: false, error: err.message } satisfies SortAnswer),
  );
}
