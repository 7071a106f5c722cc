// The scheduler's decisions: which pending chunk goes to which free slot. A pure function of a view of
// the ledger and the connected workers, so it can be tested and changed without gRPC or SQLite.

/** What a worker has (or has left), and what one attempt of a task takes from it while it runs. */
export interface Resources {
  cpu: number;
  memoryMb: number;
  diskMb: number;
  gpus: number;
}

/** A task's placement requirements: the bachfile's hardware minimums, and an engine if it has an image. */
export interface Needs extends Resources {
  docker: boolean;
  /** The task says "interruptible": false: only workers that cannot be taken back may run it. */
  steady: boolean;
}

export const NO_NEEDS: Needs = { cpu: 0, memoryMb: 0, diskMb: 0, gpus: 0, docker: false, steady: false };

export interface WorkerView {
  id: string;
  freeSlots: number;
  /** All it has, and what its running attempts have not taken. */
  capacity: Resources;
  free: Resources;
  docker: boolean;
  interruptible: boolean;
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
  needs: Needs;
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
 * run again where it failed before. An attempt goes only where the task's needs fit in what the worker
 * has left (cores, memory, disk, GPUs, an engine), so a worker never runs more than fits at once.
 */
export function placeChunks(workers: readonly WorkerView[], tasks: readonly TaskView[]): Placement[] {
  const state = new Map(workers.filter((w) => w.freeSlots > 0).map((w) => [w.id, { slots: w.freeSlots, free: { ...w.free }, docker: w.docker, interruptible: w.interruptible }]));
  const placements: Placement[] = [];
  let turn = 0;
  for (const task of tasks) {
    let room = task.room;
    const able = workers.filter((w) => canEverRun(w, task.needs)).map((w) => w.id);
    for (const chunk of task.pending) {
      if (room <= 0) break;
      const ids = [...state.keys()].filter((id) => fits(state.get(id), task.needs));
      if (ids.length === 0) break;
      const rotated = ids.slice(turn % ids.length).concat(ids.slice(0, turn % ids.length));
      const elsewhere = able.some((id) => !chunk.avoid.includes(id));
      const worker = elsewhere ? rotated.find((id) => !chunk.avoid.includes(id)) : rotated[0];
      if (worker === undefined) continue;
      placements.push({ worker, task: task.id, seq: chunk.seq });
      turn++;
      room--;
      const w = state.get(worker);
      if (!w) continue;
      w.slots--;
      w.free = take(w.free, task.needs);
      if (w.slots <= 0) state.delete(worker);
    }
  }
  return placements;
}

function fits(w: { slots: number; free: Resources; docker: boolean; interruptible: boolean } | undefined, needs: Needs): boolean {
  return w !== undefined && w.slots > 0 && kindFits(w, needs) && covers(w.free, needs);
}

/** A worker that could run the task if it were idle. */
function canEverRun(w: { docker: boolean; interruptible: boolean; capacity: Resources }, needs: Needs): boolean {
  return kindFits(w, needs) && covers(w.capacity, needs);
}

/** An engine for a task with an image; a worker that stays for a task that must not be interrupted. */
function kindFits(w: { docker: boolean; interruptible: boolean }, needs: Needs): boolean {
  return (w.docker || !needs.docker) && !(needs.steady && w.interruptible);
}

const EPSILON = 1e-9;

function covers(have: Resources, needs: Resources): boolean {
  return have.cpu + EPSILON >= needs.cpu && have.memoryMb >= needs.memoryMb && have.diskMb >= needs.diskMb && have.gpus >= needs.gpus;
}

export function take(have: Resources, needs: Resources): Resources {
  return { cpu: have.cpu - needs.cpu, memoryMb: have.memoryMb - needs.memoryMb, diskMb: have.diskMb - needs.diskMb, gpus: have.gpus - needs.gpus };
}

export interface WorkerCapacity {
  name: string;
  docker: boolean;
  interruptible: boolean;
  capacity: Resources;
}

/**
 * Why no connected worker could ever run a task even when idle, naming the first requirement that
 * nothing meets and the largest worker for it; null when some worker could. With no worker connected
 * it answers null: a worker that fits may still join.
 */
export function neverFits(workers: readonly WorkerCapacity[], needs: Needs): string | null {
  if (workers.length === 0 || workers.some((w) => canEverRun(w, needs))) return null;
  const largest = (pick: (w: WorkerCapacity) => number) => workers.reduce((a, b) => (pick(b) > pick(a) ? b : a));
  const checks: { need: number; have: (w: WorkerCapacity) => number; field: string; unit: (n: number) => string }[] = [
    { need: needs.cpu, have: (w) => w.capacity.cpu, field: "hardware.cpu.min", unit: (n) => `${n} core${n === 1 ? "" : "s"}` },
    { need: needs.memoryMb, have: (w) => w.capacity.memoryMb, field: "hardware.memory.min", unit: (n) => `${n} MiB` },
    { need: needs.diskMb, have: (w) => w.capacity.diskMb, field: "hardware.disk.min", unit: (n) => `${n} MiB free disk` },
    { need: needs.gpus, have: (w) => w.capacity.gpus, field: "hardware.graphics", unit: (n) => `${n} GPU${n === 1 ? "" : "s"}` },
  ];
  for (const c of checks) {
    const best = largest(c.have);
    if (c.have(best) + EPSILON < c.need) {
      return `no connected worker can ever run it: ${c.field} asks for ${c.unit(c.need)}, and the largest worker (${best.name}) has ${c.unit(c.have(best))}`;
    }
  }
  if (needs.steady && workers.every((w) => w.interruptible)) {
    return `the bachfile says "interruptible": false, and every connected worker is interruptible (workers: ${workers.map((w) => w.name).join(", ")}): join a worker without --interruptible`;
  }
  if (needs.docker) {
    return `no connected worker can run containers (the task has an image; workers: ${workers.map((w) => w.name).join(", ")}): start Docker Engine on a worker, or remove "image"/"dockerfile" from the bachfile`;
  }
  return `no connected worker has room for all it asks at once (${needs.cpu} cores, ${needs.memoryMb} MiB, ${needs.diskMb} MiB disk, ${needs.gpus} GPUs)`;
}

export interface RunningAttemptView {
  task: string;
  seq: number;
  worker: string;
  elapsedMs: number;
  /** How long this chunk should take, judged by the task's committed attempts; null before any. */
  expectedMs: number | null;
  /** The chunk already has a second attempt running. */
  hasBackup: boolean;
  /** The task may start another attempt now (its -p cap). */
  taskHasRoom: boolean;
  needs: Needs;
}

export interface Speculation {
  /** A straggler runs longer than this many times its expected time... */
  factor: number;
  /** ...and longer than this, so that short chunks are never doubled for noise. */
  minMs: number;
}

export const DEFAULT_SPECULATION: Speculation = { factor: 2, minMs: 3000 };

/**
 * Speculative execution, as Hadoop does it: slots still idle after the pending chunks were placed take
 * backup attempts of the attempts running far longer than their task's typical chunk, the slowest
 * first, each on a worker other than the straggler's. The first attempt to finish commits.
 */
export function placeBackups(workers: readonly WorkerView[], running: readonly RunningAttemptView[], s: Speculation = DEFAULT_SPECULATION): Placement[] {
  const state = new Map(workers.filter((w) => w.freeSlots > 0).map((w) => [w.id, { slots: w.freeSlots, free: { ...w.free }, docker: w.docker, interruptible: w.interruptible }]));
  const stragglers = running
    .filter((r) => !r.hasBackup && r.taskHasRoom && r.expectedMs !== null && r.elapsedMs > Math.max(s.minMs, s.factor * r.expectedMs))
    .sort((a, b) => b.elapsedMs / (b.expectedMs ?? 1) - a.elapsedMs / (a.expectedMs ?? 1));
  const placements: Placement[] = [];
  const backedUp = new Set<string>();
  for (const r of stragglers) {
    const key = `${r.task}/${r.seq}`;
    if (backedUp.has(key)) continue;
    const worker = [...state.keys()].find((id) => id !== r.worker && fits(state.get(id), r.needs));
    if (worker === undefined) continue;
    placements.push({ worker, task: r.task, seq: r.seq });
    backedUp.add(key);
    const w = state.get(worker);
    if (!w) continue;
    w.slots--;
    w.free = take(w.free, r.needs);
    if (w.slots <= 0) state.delete(worker);
  }
  return placements;
}
