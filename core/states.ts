// The named states of tasks, chunks, attempts and workers, and the only transitions between them.
// The ledger refuses any change not listed here; this file must never touch storage.

export const TaskState = { running: "running", succeeded: "succeeded", failed: "failed", cancelled: "cancelled" } as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

export const ChunkState = {
  pending: "pending", // planned, waiting for a slot
  running: "running", // one attempt (or more, later: backups) under way
  committed: "committed", // its output is part of the result, once and for all
  failed: "failed", // every attempt failed; the task fails with it
  cancelled: "cancelled", // the task ended before it committed
} as const;
export type ChunkState = (typeof ChunkState)[keyof typeof ChunkState];

export const AttemptState = {
  running: "running",
  succeeded: "succeeded", // exited 0; its output is the chunk's commit
  failed: "failed", // non-zero exit, stderr under "fail", timeout, program missing
  lost: "lost", // its worker vanished or stopped answering
  cancelled: "cancelled", // the task ended or the chunk committed elsewhere
} as const;
export type AttemptState = (typeof AttemptState)[keyof typeof AttemptState];

/** A worker as the ledger records it: each hello makes it connected again, whatever it was. */
export const WorkerState = {
  connected: "connected",
  left: "left", // it drained (SIGTERM) and closed its stream: it meant to go
  lost: "lost", // its stream broke or it fell silent (killed, crashed, cut off), or the coordinator restarted
} as const;
export type WorkerState = (typeof WorkerState)[keyof typeof WorkerState];

const taskMoves: Record<TaskState, readonly TaskState[]> = {
  running: ["succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

const chunkMoves: Record<ChunkState, readonly ChunkState[]> = {
  pending: ["running", "cancelled"],
  running: ["pending", "committed", "failed", "cancelled"],
  committed: [],
  failed: [],
  cancelled: [],
};

const attemptMoves: Record<AttemptState, readonly AttemptState[]> = {
  running: ["succeeded", "failed", "lost", "cancelled"],
  succeeded: [],
  failed: [],
  lost: [],
  cancelled: [],
};

/** Thrown when code asks for a transition the tables do not allow: a bug in Bach, never a user error. */
export class IllegalTransition extends Error {
  constructor(kind: string, id: string, from: string, to: string) {
    super(`illegal ${kind} transition for ${id}: ${from} -> ${to}`);
  }
}

export function canMoveTask(from: TaskState, to: TaskState): boolean {
  return taskMoves[from].includes(to);
}
export function canMoveChunk(from: ChunkState, to: ChunkState): boolean {
  return chunkMoves[from].includes(to);
}
export function canMoveAttempt(from: AttemptState, to: AttemptState): boolean {
  return attemptMoves[from].includes(to);
}

export function isFinalTask(state: TaskState): boolean {
  return taskMoves[state].length === 0;
}
