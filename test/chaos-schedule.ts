// The chaos test's schedule, drawn from a seed: which faults, on which host, after what pause, for how
// long. A pure function of the seed (and the cluster's shape), so a failing seed replays the same
// faults in the same order; it never touches a process or a host (the test does that).

/** mulberry32: a tiny, well-mixed 32-bit PRNG; the same seed gives the same numbers on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type ChaosKind = "worker-kill" | "coordinator-kill" | "cut" | "stop" | "disk-full";
export const CHAOS_KINDS: readonly ChaosKind[] = ["worker-kill", "coordinator-kill", "cut", "stop", "disk-full"];

export interface ChaosAction {
  kind: ChaosKind;
  /** The worker host it strikes; null for the coordinator. */
  host: number | null;
  /** How long the test waits before the action (after the previous one ended). */
  pauseMs: number;
  /**
   * How long the fault lasts: a killed worker or coordinator stays down, a link stays cut, a worker
   * stays stopped, a data dir stays full, this long before it is undone.
   */
  forMs: number;
  /**
   * For a cut, a stop or a full disk: the coordinator is SIGKILLed this long into it and restarted
   * while the fault holds (faults that overlap are where fencing is tested hardest); null: it is not.
   */
  coordinatorKillAtMs: number | null;
}

/** How long a coordinator killed inside another fault stays down before it is restarted. */
export const INNER_RESTART_MS = 300;

export interface ChaosShape {
  hosts: number;
  /** Actions drawn in all (the test may end before it runs them all: the task is done). */
  count: number;
  /** The coordinator's --lost-after: cuts and stops last longer, so the host is declared lost. */
  lostAfterMs: number;
}

/**
 * The first actions hold one of each kind and two coordinator kills, the kills among the first four:
 * the minimums that make a run meaningful come from the schedule's construction, not from luck.
 */
const PREFIX: readonly ChaosKind[] = ["coordinator-kill", "coordinator-kill", "worker-kill", "cut", "stop", "disk-full"];
export const PREFIX_LENGTH = PREFIX.length;
const YOUNG = 4;

/** After the prefix, worker kills are the commonest fault, coordinator kills the rarest (each stalls all). */
const WEIGHTS: readonly [ChaosKind, number][] = [
  ["worker-kill", 3],
  ["coordinator-kill", 1],
  ["cut", 2],
  ["stop", 2],
  ["disk-full", 2],
];

export function drawSchedule(seed: number, shape: ChaosShape): ChaosAction[] {
  if (shape.count < PREFIX.length) throw new Error(`a chaos schedule needs at least ${PREFIX.length} actions, not ${shape.count}`);
  const rng = mulberry32(seed);
  const between = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
  const ms = (lo: number, hi: number) => between(lo / 10, hi / 10) * 10;

  // Two of the first four places for the coordinator kills; the other kinds, shuffled, fill the rest.
  const first = between(0, YOUNG - 1);
  let second = between(0, YOUNG - 2);
  if (second >= first) second++;
  const others = PREFIX.filter((k) => k !== "coordinator-kill");
  for (let i = others.length - 1; i > 0; i--) {
    const j = between(0, i);
    [others[i], others[j]] = [others[j], others[i]];
  }
  const kinds = Array.from({ length: PREFIX.length }, (_, i) => (i === first || i === second ? "coordinator-kill" : (others.shift() as ChaosKind)));

  const total = WEIGHTS.reduce((n, [, w]) => n + w, 0);
  while (kinds.length < shape.count) {
    let r = rng() * total;
    const hit = WEIGHTS.find(([, w]) => (r -= w) < 0) ?? WEIGHTS[0];
    kinds.push(hit[0]);
  }

  return kinds.map((kind, i) => {
    // The prefix comes quickly, while the task is young; later actions are spread out more.
    const pauseMs = i < PREFIX.length ? ms(200, 800) : ms(300, 1500);
    const host = kind === "coordinator-kill" ? null : between(0, shape.hosts - 1);
    const forMs =
      kind === "worker-kill" ? ms(100, 1000)
      : kind === "coordinator-kill" ? ms(200, 1500)
      : kind === "disk-full" ? ms(800, 2500)
      : ms(shape.lostAfterMs + 500, shape.lostAfterMs + 2500); // cut, stop: the host must be declared lost
    // After the prefix, a third of the held faults have a coordinator kill inside them.
    const held = kind === "cut" || kind === "stop" || kind === "disk-full";
    const coordinatorKillAtMs = held && i >= PREFIX.length && rng() < 1 / 3 ? ms(100, forMs - 100) : null;
    return { kind, host, pauseMs, forMs, coordinatorKillAtMs };
  });
}

/** One line a person reads to know what the action does. */
export function describeAction(a: ChaosAction): string {
  const host = `host-${a.host}`;
  const what =
    a.kind === "worker-kill" ? `SIGKILL the worker on ${host}, restart it ${a.forMs} ms later`
    : a.kind === "coordinator-kill" ? `SIGKILL the coordinator, restart it ${a.forMs} ms later`
    : a.kind === "cut" ? `cut ${host}'s link for ${a.forMs} ms`
    : a.kind === "stop" ? `SIGSTOP the worker on ${host} for ${a.forMs} ms, then SIGCONT`
    : `fill ${host}'s data dir for ${a.forMs} ms`;
  const inside = a.coordinatorKillAtMs === null ? "" : `; ${a.coordinatorKillAtMs} ms into it, SIGKILL the coordinator, restart it ${INNER_RESTART_MS} ms later`;
  return `after ${a.pauseMs} ms: ${what}${inside}`;
}

/** Seeds are unsigned 32-bit integers (mulberry32's state); anything else is refused by name. */
export function parseSeed(text: string, from: string): number {
  const t = text.trim();
  const n = Number(t);
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(n) || n > 0xffffffff) throw new Error(`${from}: "${text}" is not a seed (an integer from 0 to 4294967295)`);
  return n;
}
