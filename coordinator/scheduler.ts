// The scheduler's decisions: which pending chunk goes to which free slot. A pure function of a view of
// the ledger and the connected workers, so it can be tested and changed without gRPC or SQLite.

export interface WorkerView {
  id: string;
  freeSlots: number;
}

export interface PendingChunk {
  seq: number;
  /** Workers on which this chunk already failed or was lost; a retry prefers any other. */
  avoid: readonly string[];
}

export interface TaskView {
  id: string;
  /** How many more attempts this task may start now (its -p cap minus what runs). */
  room: number;
  /** Pending chunks in input order. */
  pending: readonly PendingChunk[];
}

export interface Placement {
  worker: string;
  task: string;
  seq: number;
}

/**
 * Fills free slots in task order (oldest task first), chunks in input order, so output in order flows
 * early. Slots are taken round-robin across workers so a task spreads over machines. A retry waits for
 * a worker it has not failed on while one is connected; only when every worker has failed it does it
 * run again where it failed before.
 */
export function placeChunks(workers: readonly WorkerView[], tasks: readonly TaskView[]): Placement[] {
  const connected = workers.map((w) => w.id);
  const free = new Map(workers.filter((w) => w.freeSlots > 0).map((w) => [w.id, w.freeSlots]));
  const placements: Placement[] = [];
  let turn = 0;
  for (const task of tasks) {
    let room = task.room;
    for (const chunk of task.pending) {
      if (room <= 0 || free.size === 0) break;
      const ids = [...free.keys()];
      const rotated = ids.slice(turn % ids.length).concat(ids.slice(0, turn % ids.length));
      const elsewhere = connected.some((id) => !chunk.avoid.includes(id));
      const worker = elsewhere ? rotated.find((id) => !chunk.avoid.includes(id)) : rotated[0];
      if (worker === undefined) continue;
      placements.push({ worker, task: task.id, seq: chunk.seq });
      turn++;
      room--;
      const left = (free.get(worker) ?? 0) - 1;
      if (left > 0) free.set(worker, left);
      else free.delete(worker);
    }
  }
  return placements;
}
