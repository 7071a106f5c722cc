// The gRPC service as the three programs use it: ts-proto's definition, except that the messages
// carrying bulk bytes (input, chunk data, outputs, bundles, images) are serialized in one allocation.
// ts-proto's encoder copies a frame's bytes into its writer's buffers, joins them, and then
// Buffer.from copies the result once more: for 100 MiB of output that was ~0.9 s of the
// coordinator's CPU on the machines measured. Here the message's small fields are encoded as ts-proto
// does, and the bytes field follows them (protobuf parsers accept fields in any order); decoding is
// ts-proto's, which hands out views of the received buffer without copying.
import { makeGenericClientConstructor } from "@grpc/grpc-js";
import { BundleFrame, CoordinatorClient, CoordinatorService, DataFrame, ImageFrame, InputFrame, OutputFrame, OutputUpload } from "./generated/bach";
import type { OutputEvent } from "./report";

const EMPTY = Buffer.alloc(0);

/** `head` (a message encoded without its bytes field) followed by bytes field `field` holding `data`. */
export function withBytesField(head: Uint8Array, field: number, data: Uint8Array): Buffer {
  let lengthBytes = 1;
  for (let n = data.length; n >= 0x80; n >>>= 7) lengthBytes++;
  const out = Buffer.allocUnsafe(head.length + 1 + lengthBytes + data.length);
  out.set(head, 0);
  let at = head.length;
  out[at++] = (field << 3) | 2; // a length-delimited field; every field number here is below 16
  let n = data.length;
  for (; n >= 0x80; n >>>= 7) out[at++] = (n & 0x7f) | 0x80;
  out[at++] = n;
  out.set(data, at);
  return out;
}

export const serializeInputFrame = (m: InputFrame): Buffer => withBytesField(InputFrame.encode({ ...m, data: EMPTY }).finish(), 3, m.data);
export const serializeOutputFrame = (m: OutputFrame): Buffer =>
  m.kind?.$case === "data" ? withBytesField(EMPTY, 1, m.kind.value) : Buffer.from(OutputFrame.encode(m).finish());
export const serializeBundleFrame = (m: BundleFrame): Buffer => withBytesField(BundleFrame.encode({ ...m, data: EMPTY }).finish(), 2, m.data);
export const serializeImageFrame = (m: ImageFrame): Buffer => withBytesField(ImageFrame.encode({ ...m, data: EMPTY }).finish(), 2, m.data);
export const serializeDataFrame = (m: DataFrame): Buffer => withBytesField(EMPTY, 1, m.data);
export const serializeOutputUpload = (m: OutputUpload): Buffer => withBytesField(OutputUpload.encode({ ...m, data: EMPTY }).finish(), 2, m.data);

const S = CoordinatorService;
export const CoordinatorWire = {
  ...S,
  putInput: { ...S.putInput, requestSerialize: serializeInputFrame },
  streamOutput: { ...S.streamOutput, responseSerialize: serializeOutputFrame },
  putBundle: { ...S.putBundle, requestSerialize: serializeBundleFrame },
  fetchBundle: { ...S.fetchBundle, responseSerialize: serializeBundleFrame },
  putImage: { ...S.putImage, requestSerialize: serializeImageFrame },
  fetchImage: { ...S.fetchImage, responseSerialize: serializeImageFrame },
  fetchChunk: { ...S.fetchChunk, responseSerialize: serializeDataFrame },
  putOutput: { ...S.putOutput, requestSerialize: serializeOutputUpload },
} as const;

export const WireClient = makeGenericClientConstructor(CoordinatorWire, "bach.Coordinator") as unknown as typeof CoordinatorClient;

/** An output event as the gRPC frame that carries it (both ends of StreamOutput map here, and only here). */
export function outputFrameOf(ev: OutputEvent): OutputFrame {
  switch (ev.kind) {
    case "data":
      return { kind: { $case: "data", value: ev.data } };
    case "chunk-done":
      return { kind: { $case: "chunkDone", value: ev.seq } };
    case "progress":
      return {
        kind: {
          $case: "progress",
          value: { bytesIn: ev.bytesIn, inputDone: ev.inputDone, chunksPlanned: ev.planned, chunksCommitted: ev.committed, attemptsRunning: ev.running, workersConnected: ev.workers, waitingForWorkerMs: ev.waitingMs, bytesProcessed: ev.processed, bytesTotal: ev.total ?? 0 },
        },
      };
    case "gap":
      return { kind: { $case: "gap", value: { from: ev.from, to: ev.to, offset: ev.offset, end: ev.end, state: ev.state } } };
    case "end": {
      const t = ev.tally;
      const tally = t
        ? { chunksPlanned: t.planned, chunksCommitted: t.committed, bytesCommitted: t.bytes, seconds: t.seconds, attemptsFailed: t.failedAttempts, committed: t.ranges.map(([from, to]) => ({ from, to })) }
        : { chunksPlanned: 0, chunksCommitted: 0, bytesCommitted: 0, seconds: 0, attemptsFailed: 0, committed: [] };
      return { kind: { $case: "end", value: { state: ev.state, error: ev.error, ...tally } } };
    }
  }
}

/** The output event a gRPC frame carries (null: an empty frame). */
export function outputEventOf(frame: OutputFrame): OutputEvent | null {
  const kind = frame.kind;
  if (!kind) return null;
  switch (kind.$case) {
    case "data":
      return { kind: "data", data: kind.value };
    case "chunkDone":
      return { kind: "chunk-done", seq: kind.value };
    case "progress": {
      const p = kind.value;
      return { kind: "progress", bytesIn: p.bytesIn, inputDone: p.inputDone, planned: p.chunksPlanned, committed: p.chunksCommitted, running: p.attemptsRunning, workers: p.workersConnected, waitingMs: p.waitingForWorkerMs, processed: p.bytesProcessed, total: p.bytesTotal > 0 ? p.bytesTotal : null };
    }
    case "gap":
      return { kind: "gap", ...kind.value };
    case "end": {
      const e = kind.value;
      // A coordinator older than the tally sends none: its end has no planned chunks and no time.
      const tally = e.chunksPlanned > 0 || e.seconds > 0
        ? { planned: e.chunksPlanned, committed: e.chunksCommitted, bytes: e.bytesCommitted, seconds: e.seconds, failedAttempts: e.attemptsFailed, ranges: e.committed.map((r): [number, number] => [r.from, r.to]) }
        : null;
      return { kind: "end", state: e.state, error: e.error, tally };
    }
  }
}
