// User-facing failures: typed errors that carry the thing at fault and map to a documented exit status.
// A BachError is printed as one line, `bach: <message>`, never with a stack.

export const ExitStatus = {
  done: 0,
  taskFailed: 1,
  badInput: 2,
  unreachable: 3,
  /**
   * The task was cancelled from elsewhere (`bach task-cancel`). Not 130: that says this process got
   * Ctrl-C, and a shell script would stop as if its own user had pressed it; nor 1: nothing failed.
   */
  cancelled: 4,
  /** Ctrl-C: 128 + SIGINT, what shells expect of a program interrupted from the keyboard. */
  interrupted: 130,
} as const;
export type ExitStatus = (typeof ExitStatus)[keyof typeof ExitStatus];

export class BachError extends Error {
  constructor(
    message: string,
    readonly exitStatus: ExitStatus,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad usage or bad input: a bachfile field, a flag, a path. */
export class InputError extends BachError {
  constructor(
    message: string,
    readonly where?: { field?: string; path?: string; offset?: number },
  ) {
    super(message, ExitStatus.badInput, "bad-input");
  }
}

/** Every problem found in one bachfile, one line each, so a user fixes them all at once. */
export class BachfileError extends InputError {
  constructor(
    readonly file: string,
    readonly problems: { field: string; message: string }[],
  ) {
    super(problems.map((p) => `${file}: ${p.field || "(top level)"}: ${p.message}`).join("\n"), { path: file });
  }
}

/** The coordinator could not be reached (or the connection broke), or it refused us (wrong token). */
export class CoordinatorUnreachableError extends BachError {
  constructor(
    message: string,
    readonly address: string,
    /** It answered and said no: trying again cannot help. */
    readonly refused = false,
  ) {
    super(message, ExitStatus.unreachable, refused ? "refused" : "unreachable");
  }
}

/** The task ran and failed: a chunk failed every attempt (or its input broke off). */
export class TaskFailedError extends BachError {
  constructor(message: string, readonly taskId: string) {
    super(message, ExitStatus.taskFailed, "task-failed");
  }
}

/** The task was cancelled by someone else than the one waiting for it (`bach task-cancel`). */
export class TaskCancelledError extends BachError {
  constructor(message: string, readonly taskId: string) {
    super(message, ExitStatus.cancelled, "task-cancelled");
  }
}

/** The coordinator's data dir (or a worker's disk) has no room: the task that needed it fails. */
export class DiskFullError extends BachError {
  constructor(message: string) {
    super(message, ExitStatus.taskFailed, "disk-full");
  }
}

/** An error that says a disk is full: SQLite's SQLITE_FULL, or ENOSPC / EDQUOT from a write. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT" || err instanceof DiskFullError;
}

/** What a user reads when the coordinator's data dir is full. */
export function diskFullMessage(err: unknown): string {
  if (err instanceof DiskFullError) return err.message;
  return `the coordinator's data dir is full (${err instanceof Error ? err.message : String(err)}): free space there, or give it a --data-dir with room`;
}
