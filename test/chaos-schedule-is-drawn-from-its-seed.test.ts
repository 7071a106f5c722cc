// The chaos schedule is a function of its seed: a failing seed replays the same faults, other seeds
// draw other faults, and every schedule holds the minimums the chaos test counts on.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { CHAOS_KINDS, drawSchedule, parseSeed, PREFIX_LENGTH, type ChaosShape } from "./chaos-schedule";

const shape: ChaosShape = { hosts: 3, count: 20, lostAfterMs: 1500 };
const seed = fc.integer({ min: 0, max: 0xffffffff });

test("the same seed draws the same schedule", () => {
  fc.assert(fc.property(seed, (s) => assert.deepEqual(drawSchedule(s, shape), drawSchedule(s, shape))));
  // Pinned: a change to the drawing makes a seed quoted in an old report replay other faults. Change
  // this only knowingly.
  assert.deepEqual(drawSchedule(1, shape).slice(0, 3), [
    { kind: "coordinator-kill", host: null, pauseMs: 660, forMs: 570, coordinatorKillAtMs: null },
    { kind: "worker-kill", host: 0, pauseMs: 310, forMs: 480, coordinatorKillAtMs: null },
    { kind: "coordinator-kill", host: null, pauseMs: 560, forMs: 1240, coordinatorKillAtMs: null },
  ]);
});

test("different seeds draw different schedules", () => {
  const seen = new Map<string, number>();
  for (let s = 0; s < 500; s++) {
    const key = JSON.stringify(drawSchedule(s, shape));
    assert.equal(seen.get(key), undefined, `seeds ${seen.get(key)} and ${s} drew the same schedule`);
    seen.set(key, s);
  }
  fc.assert(fc.property(seed, seed, (a, b) => a === b || JSON.stringify(drawSchedule(a, shape)) !== JSON.stringify(drawSchedule(b, shape))));
});

test("every schedule kills the coordinator twice while the task is young and holds each fault early", () => {
  fc.assert(
    fc.property(seed, (s) => {
      const actions = drawSchedule(s, shape);
      assert.equal(actions.length, shape.count);
      assert.equal(actions.slice(0, 4).filter((a) => a.kind === "coordinator-kill").length, 2, `seed ${s}`);
      for (const kind of CHAOS_KINDS) assert.ok(actions.slice(0, PREFIX_LENGTH).some((a) => a.kind === kind), `seed ${s}: no ${kind} early`);
      for (const a of actions) {
        assert.equal(a.host === null, a.kind === "coordinator-kill");
        if (a.host !== null) assert.ok(a.host >= 0 && a.host < shape.hosts);
        assert.ok(a.pauseMs >= 200 && a.pauseMs <= 1500);
        // A cut or a stop outlasts --lost-after, so the host is declared lost, not merely slow.
        if (a.kind === "cut" || a.kind === "stop") assert.ok(a.forMs >= shape.lostAfterMs + 500, `seed ${s}: ${a.kind} of ${a.forMs} ms`);
        assert.ok(a.forMs > 0 && a.forMs <= shape.lostAfterMs + 2500);
        if (a.coordinatorKillAtMs !== null) {
          assert.ok(a.kind === "cut" || a.kind === "stop" || a.kind === "disk-full", `seed ${s}: a coordinator kill inside a ${a.kind}`);
          assert.ok(a.coordinatorKillAtMs > 0 && a.coordinatorKillAtMs < a.forMs);
        }
      }
    }),
  );
});

test("a seed is an unsigned 32-bit integer, and anything else is refused by name", () => {
  assert.equal(parseSeed(" 42 ", "BACH_CHAOS_SEED"), 42);
  assert.equal(parseSeed("4294967295", "BACH_CHAOS_SEED"), 0xffffffff);
  for (const bad of ["", "-1", "1.5", "4294967296", "abc", "0x10"]) assert.throws(() => parseSeed(bad, "BACH_CHAOS_SEEDS"), /BACH_CHAOS_SEEDS: .* is not a seed/);
});
