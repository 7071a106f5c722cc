// The reduce phase's plan (coordinator/reduce-plan.ts): a map attempt's word about its run is checked
// before it may commit (a worker's numbers never index a file unchecked), hash ranges follow the
// partition ends, and "auto" partitions follow the slots and the size.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTO_PARTITION_BYTES, autoPartitions, checkRunIndex, planHash } from "../coordinator/reduce-plan";

test("a run index that does not fit its run is refused, naming why", () => {
  assert.deepEqual(checkRunIndex({ partitionEnds: [10, 10, 30], marks: [] }, 30, "hash", 3), { partitionEnds: [10, 10, 30], marks: [] });
  assert.match(String(checkRunIndex({ partitionEnds: [10, 30], marks: [] }, 30, "hash", 3)), /2 partition ends, not 3/);
  assert.match(String(checkRunIndex({ partitionEnds: [20, 10, 30], marks: [] }, 30, "hash", 3)), /not in order/);
  assert.match(String(checkRunIndex({ partitionEnds: [10, 20, 29], marks: [] }, 30, "hash", 3)), /do not end at its size/);
  assert.match(String(checkRunIndex({ partitionEnds: [-1, 20, 30], marks: [] }, 30, "hash", 3)), /not in order/);
  assert.deepEqual(checkRunIndex({ partitionEnds: [], marks: [0, 70_000] }, 140_000, "total", 0), { partitionEnds: [], marks: [0, 70_000] });
  assert.deepEqual(checkRunIndex({ partitionEnds: [], marks: [] }, 0, "total", 0), { partitionEnds: [], marks: [] });
  assert.match(String(checkRunIndex({ partitionEnds: [], marks: [5, 10] }, 100, "total", 0)), /marks are not in order/);
  assert.match(String(checkRunIndex({ partitionEnds: [], marks: [0, 100] }, 100, "total", 0)), /marks are not in order/);
  assert.match(String(checkRunIndex({ partitionEnds: [], marks: [0, 10, 10] }, 100_000, "total", 0)), /marks are not in order/);
  assert.match(String(checkRunIndex({ partitionEnds: [], marks: Array.from({ length: 1000 }, (_, i) => i) }, 10_000, "total", 0)), /1000 marks for 10000 bytes/);
});

test("hash ranges run between each run's partition ends, empty ones included", () => {
  const plan = planHash(3, [
    { seq: 0, file: "a", bytes: 30, index: { partitionEnds: [10, 10, 30], marks: [] } },
    { seq: 1, file: "b", bytes: 0, index: { partitionEnds: [0, 0, 0], marks: [] } },
  ]);
  assert.deepEqual(plan.ranges, [
    { part: 0, seq: 0, offset: 0, length: 10 },
    { part: 1, seq: 0, offset: 10, length: 0 },
    { part: 2, seq: 0, offset: 10, length: 20 },
    { part: 0, seq: 1, offset: 0, length: 0 },
    { part: 1, seq: 1, offset: 0, length: 0 },
    { part: 2, seq: 1, offset: 0, length: 0 },
  ]);
  assert.equal(plan.partitions.length, 3);
});

test('"auto" partitions: one a slot, at least one per AUTO_PARTITION_BYTES, from 1 to 1000', () => {
  assert.equal(autoPartitions(0, 0), 1);
  assert.equal(autoPartitions(100, 4), 4);
  assert.equal(autoPartitions(3 * AUTO_PARTITION_BYTES + 1, 2), 4);
  assert.equal(autoPartitions(10_000 * AUTO_PARTITION_BYTES, 2), 1000);
});
