// The messages that carry bulk bytes are serialized by hand (core/wire.ts) for speed: whatever their
// fields hold, ts-proto's decoder reads back exactly the message, as it does its own encoding.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BundleFrame, DataFrame, ImageFrame, InputFrame, OutputFrame, OutputUpload } from "../core/generated/bach";
import {
  serializeBundleFrame,
  serializeDataFrame,
  serializeImageFrame,
  serializeInputFrame,
  serializeOutputFrame,
  serializeOutputUpload,
} from "../core/wire";

// Lengths around the varint steps (127/128, 16383/16384) and up to a frame.
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.constantFrom(127, 128, 16383, 16384, 1 << 20).map((n) => new Uint8Array(n).map((_, i) => i % 251)),
).map((a) => Buffer.from(a));
const text = fc.string({ maxLength: 80 });
const int64 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

test("hand-serialized bulk frames decode to the same message with ts-proto", () => {
  fc.assert(
    fc.property(text, int64, bytes, fc.boolean(), (taskId, offset, data, eof) => {
      const m: InputFrame = { taskId, offset, data, eof };
      assert.deepEqual(InputFrame.decode(serializeInputFrame(m)), m);
    }),
  );
  fc.assert(
    fc.property(text, bytes, (hash, data) => {
      assert.deepEqual(BundleFrame.decode(serializeBundleFrame({ hash, data })), { hash, data });
      assert.deepEqual(ImageFrame.decode(serializeImageFrame({ id: hash, data })), { id: hash, data });
    }),
  );
  fc.assert(
    fc.property(int64, bytes, text, (attemptId, data, key) => {
      assert.deepEqual(OutputUpload.decode(serializeOutputUpload({ attemptId, data, key })), { attemptId, data, key });
      assert.deepEqual(DataFrame.decode(serializeDataFrame({ data })), { data });
      const frame: OutputFrame = { kind: { $case: "data", value: data } };
      assert.deepEqual(OutputFrame.decode(serializeOutputFrame(frame)), frame);
    }),
  );
  const done: OutputFrame = { kind: { $case: "chunkDone", value: 7 } };
  assert.deepEqual(OutputFrame.decode(serializeOutputFrame(done)), done);
});
