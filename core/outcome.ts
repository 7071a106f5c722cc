// How an attempt ended, as a type rather than a string: the worker names the kind, the proto carries
// it, the ledger stores it, and the coordinator decides a retry from `retryable`, never from the words
// of `reason` (which is for people). It never runs or stores anything.

export const OutcomeKind = {
  ok: "ok",
  /** The program exited non-zero. */
  exit: "exit",
  /** The program was killed by a signal it was not sent by Bach. */
  signal: "signal",
  /** The program wrote to stderr under `"stderr": "fail"`. */
  stderr: "stderr",
  timeout: "timeout",
  /** The kernel killed it for memory (the container's limit). */
  oom: "oom",
  /** The program (the bachfile's binary) is not on the worker or in the image. */
  notFound: "not-found",
  /** The task's bundle could not be unpacked safely (paths out of its folder, links, devices). */
  badBundle: "bad-bundle",
  /** The task's image is missing and could not be loaded. */
  badImage: "bad-image",
  /** The chunk could not be read, or the output could not be written or sent. */
  input: "input",
  /** The input changed during the task (an object's ETag is not the one planned): no retry can read it. */
  changed: "changed",
  /** The input's bytes cannot be decoded as their name says (a corrupt .gz): every retry reads the same. */
  corrupt: "corrupt",
  /** Something on the worker around the program failed (a container would not start, say). */
  worker: "worker",
  /** Bach stopped it: the task ended, a rival committed, the worker is leaving. */
  cancelled: "cancelled",
  /** Its worker vanished or stopped answering while it ran (set by the coordinator). */
  lost: "lost",
} as const;
export type OutcomeKind = (typeof OutcomeKind)[keyof typeof OutcomeKind];

const KINDS = new Set<string>(Object.values(OutcomeKind));

/** Kinds that no retry can mend: the same bundle, image and binary fail the same way on every worker. */
const FINAL = new Set<OutcomeKind>([OutcomeKind.notFound, OutcomeKind.badBundle, OutcomeKind.badImage, OutcomeKind.changed, OutcomeKind.corrupt]);

export function retryableKind(kind: OutcomeKind): boolean {
  return !FINAL.has(kind);
}

/** Why feeding a chunk failed: an error may name its own kind (an object that changed), else input. */
export function feedFailureKind(err: Error): OutcomeKind {
  const kind = (err as Error & { outcome?: string }).outcome;
  return kind !== undefined && KINDS.has(kind) ? (kind as OutcomeKind) : OutcomeKind.input;
}

/** A kind off the wire: an unknown or missing one (an older worker) counts as a plain failure. */
export function outcomeKindOf(text: string): OutcomeKind {
  return KINDS.has(text) ? (text as OutcomeKind) : OutcomeKind.exit;
}

/**
 * A hint for a program that was not found: a `run.sh` that is in the task's folder was meant as
 * `./run.sh` (a name without a slash is looked up on PATH, as a shell does).
 */
export function notFoundHint(binary: string, inTaskFolder: boolean): string {
  return !binary.includes("/") && inTaskFolder ? `; did you mean ./${binary}?` : "";
}
