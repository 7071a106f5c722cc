// Seeded random messages for the coordinator's fuzz test: a small PRNG (one seed replays a whole run),
// request messages of every gRPC method with edge values, and the mutations (truncations, flipped
// bytes, garbage) that make valid encodings into what a broken or hostile peer sends. It sends nothing.
import {
  CancelTaskRequest,
  CreateTaskRequest,
  Empty,
  FetchChunkRequest,
  ImageRef,
  InputFrame,
  InputStatusRequest,
  OutputRequest,
  OutputUpload,
  ReportRequest,
  WorkerMessage,
  BundleFrame,
  BundleRef,
  ImageFrame,
} from "../core/generated/bach";

/** mulberry32: tiny, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Printable text, sometimes with a newline, a quote or a path in it. */
  text(max = 24): string {
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_./\\\"'{}\n :";
    let s = "";
    for (let n = this.int(max + 1); n > 0; n--) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  /** A size skewed small: most are a few bytes, some KiB, a few up to `max`. */
  size(max: number): number {
    return Math.min(max, Math.floor(Math.exp(this.next() * Math.log(max + 1))) - 1);
  }
}

/** Integers that break code: zero, signs, the int32 and safe-integer edges, and random ones. */
export function edgeInt(r: Rng, bits: 32 | 64 = 64): number {
  const edges32 = [0, 1, -1, 2, 7, 1024, 2 ** 31 - 1, -(2 ** 31), 65535];
  const edges64 = [...edges32, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 40];
  if (r.chance(0.6)) return r.pick(bits === 32 ? edges32 : edges64);
  return bits === 32 ? (r.int(2 ** 32) | 0) : r.int(2 ** 41) - 2 ** 40;
}

/** What the fuzz has seen of the cluster, so that some messages name real things and reach deep. */
export interface Known {
  tasks: string[];
  attempts: number[];
  workers: string[];
  bundleHash: string;
  bachfileJson: string;
  /** A file the coordinator can read in place, and its sample: tasks of many chunks at once. */
  inputFile: string;
  inputSample: string;
  /** Attempts a fuzz worker was assigned, with the key the coordinator told it (the last few). */
  owned: { attempt: number; key: string }[];
  /** How many assignments fuzz workers were given in all. */
  assigned: number;
}

export function someTask(r: Rng, k: Known): string {
  if (k.tasks.length > 0 && r.chance(0.7)) return r.pick(k.tasks);
  return r.pick(["", "t-00000000-000000", r.text(), "t-' OR 1=1 --", "../../ledger.sqlite"]);
}

export function someAttempt(r: Rng, k: Known): number {
  if (k.owned.length > 0 && r.chance(0.3)) return r.pick(k.owned).attempt;
  if (k.attempts.length > 0 && r.chance(0.5)) return r.pick(k.attempts);
  return edgeInt(r);
}

function someKey(r: Rng, k: Known, attempt: number): string {
  const own = k.owned.find((o) => o.attempt === attempt);
  if (own && r.chance(0.7)) return own.key;
  return r.pick(["", "0".repeat(64), r.bytes(32).toString("hex"), r.text()]);
}

function someHash(r: Rng, k: Known): string {
  return r.pick([k.bundleHash, "", r.bytes(32).toString("hex"), "../../ledger.sqlite", r.text(70)]);
}

function someImage(r: Rng): string {
  return r.pick(["", `sha256:${r.bytes(32).toString("hex")}`, "sha256:../../x", r.text(80)]);
}

export function hello(r: Rng, k: Known): WorkerMessage {
  return {
    kind: {
      $case: "hello",
      value: {
        name: r.text(),
        host: r.text(),
        slots: r.chance(0.5) ? 1 + r.int(4) : edgeInt(r, 32),
        cpus: r.chance(0.5) ? 1 + r.int(8) : edgeInt(r, 32),
        memoryMb: r.chance(0.5) ? 4096 : edgeInt(r),
        localFiles: r.chance(0.3),
        version: r.pick(["0.1.0", "", r.text()]),
        interruptible: r.chance(0.3),
        // Rarely the real worker's id: a takeover, which the real worker must survive by rejoining.
        workerId: k.workers.length > 0 && r.chance(0.05) ? r.pick(k.workers) : r.pick(["", r.text(), "w-999"]),
        diskMb: r.chance(0.5) ? 100_000 : edgeInt(r),
        gpus: r.chance(0.8) ? 0 : edgeInt(r, 32),
        docker: r.chance(0.2),
      },
    },
  };
}

/** A message a worker sends after its hello (or before it, when the fuzz says so). */
export function workerMessage(r: Rng, k: Known): WorkerMessage {
  switch (r.int(6)) {
    case 0: {
      const running = Array.from({ length: r.size(20) }, () => someAttempt(r, k));
      return { kind: { $case: "heartbeat", value: { running, fed: [] } } };
    }
    case 1:
    case 2: {
      const attemptId = someAttempt(r, k);
      return {
        kind: {
          $case: "result",
          value: {
            attemptId,
            ok: r.chance(0.5),
            exitCode: edgeInt(r, 32),
            signal: r.pick(["", "SIGKILL", r.text()]),
            reason: r.text(),
            stderr: r.text(200),
            bytesIn: edgeInt(r),
            bytesOut: r.chance(0.3) ? 0 : edgeInt(r),
            seconds: r.pick([0, 0.5, -1, 1e308, Number.NaN, Number.POSITIVE_INFINITY]),
            kind: r.pick(["", "ok", "exit", "lost", "timeout", "input", r.text()]),
            retryable: r.chance(0.5),
            partitionEnds: r.chance(0.8) ? [] : Array.from({ length: r.int(4) }, () => edgeInt(r)),
            marks: r.chance(0.8) ? [] : Array.from({ length: r.int(4) }, () => edgeInt(r)),
          },
        },
      };
    }
    case 3:
      return { kind: { $case: "sharedSpool", value: { ok: r.chance(0.5) } } };
    case 4:
      return { kind: { $case: "draining", value: { graceMs: edgeInt(r) } } };
    default:
      return r.chance(0.5) ? hello(r, k) : { kind: undefined };
  }
}

/** Encodings of one valid-shaped request of `method` (several frames for client streams). */
export function requestFrames(method: string, r: Rng, k: Known): Buffer[] {
  const many = <T>(one: (i: number) => T, enc: (m: T) => Uint8Array) => Array.from({ length: 1 + r.size(6) }, (_, i) => Buffer.from(enc(one(i))));
  switch (method) {
    case "createTask":
      return [
        Buffer.from(
          CreateTaskRequest.encode({
            bachfileJson: r.chance(0.6) ? k.bachfileJson : r.pick(["", "{}", "null", "[]", "42", k.bachfileJson.slice(0, r.int(k.bachfileJson.length + 1)), r.text()]),
            bundleHash: r.chance(0.7) ? k.bundleHash : someHash(r, k),
            parallelism: r.chance(0.5) ? r.int(3) : edgeInt(r, 32),
            // Mostly small chunks: input becomes many chunks, more than the real worker takes at once.
            chunkSize: r.chance(0.5) ? 1 + r.int(4096) : r.chance(0.4) ? 0 : edgeInt(r),
            inputKind: r.pick(["stream", "path", "path", "objects", "", r.text()]),
            inputPath: r.chance(0.5) ? k.inputFile : r.pick(["", "/etc/hostname", "/nonexistent", "/dev/zero", "/proc/self/mem", "/", r.text()]),
            dataStreams: r.chance(0.7) ? r.int(3) : edgeInt(r, 32),
            name: r.text(),
            imageId: r.chance(0.8) ? "" : someImage(r),
            inputSample: r.chance(0.6) ? k.inputSample : r.pick(["", r.text()]),
            // Loopback only: nothing listens on port 1.
            inputSources: r.pick([[], [r.text()], ["http://127.0.0.1:1/x"], ["http://127.0.0.1:1/" + r.text()], Array.from({ length: r.int(4) }, () => "https://127.0.0.1:1/y")]),
          }).finish(),
        ),
      ];
    case "putInput": {
      const taskId = someTask(r, k);
      let offset = r.chance(0.7) ? 0 : edgeInt(r);
      return many(
        (i) => {
          const data = r.bytes(r.size(64 * 1024));
          const frame = { taskId: i === 0 || r.chance(0.2) ? taskId : "", offset, data, eof: r.chance(0.15) };
          offset += data.length;
          return frame;
        },
        (m) => InputFrame.encode(m).finish(),
      );
    }
    case "getInputStatus":
      return [Buffer.from(InputStatusRequest.encode({ taskId: someTask(r, k) }).finish())];
    case "streamOutput":
      return [Buffer.from(OutputRequest.encode({ taskId: someTask(r, k), fromChunk: r.chance(0.5) ? 0 : edgeInt(r, 32), keepOrder: r.chance(0.5), skipBytes: r.chance(0.6) ? 0 : edgeInt(r), partial: r.chance(0.3) }).finish())];
    case "hasBundle":
    case "fetchBundle":
      return [Buffer.from(BundleRef.encode({ hash: someHash(r, k) }).finish())];
    case "putBundle": {
      const hash = someHash(r, k);
      return many((i) => ({ hash: i === 0 ? hash : "", data: r.bytes(r.size(32 * 1024)) }), (m) => BundleFrame.encode(m).finish());
    }
    case "hasImage":
    case "fetchImage":
      return [Buffer.from(ImageRef.encode({ id: someImage(r) }).finish())];
    case "putImage": {
      const id = someImage(r);
      return many((i) => ({ id: i === 0 ? id : "", data: r.bytes(r.size(32 * 1024)) }), (m) => ImageFrame.encode(m).finish());
    }
    case "report":
      return [Buffer.from(ReportRequest.encode({ taskId: r.chance(0.2) ? "" : someTask(r, k) }).finish())];
    case "listTasks":
    case "listWorkers":
      return [Buffer.from(Empty.encode({}).finish())];
    case "cancelTask":
      // Rarely a real task: cancelled tasks would leave no chunks for the fuzz's workers to be given.
      return [Buffer.from(CancelTaskRequest.encode({ taskId: r.chance(0.03) ? someTask(r, k) : r.text() }).finish())];
    case "fetchChunk": {
      const attemptId = someAttempt(r, k);
      return [Buffer.from(FetchChunkRequest.encode({ attemptId, key: someKey(r, k, attemptId), run: r.chance(0.2) ? edgeInt(r, 32) : 0 }).finish())];
    }
    case "putOutput": {
      const attemptId = someAttempt(r, k);
      const key = someKey(r, k, attemptId);
      return many((i) => ({ attemptId: i === 0 ? attemptId : r.chance(0.1) ? someAttempt(r, k) : 0, key: i === 0 ? key : "", data: r.bytes(r.size(16 * 1024)) }), (m) => OutputUpload.encode(m).finish());
    }
    case "work": {
      const first = r.chance(0.85) ? [hello(r, k)] : [];
      const rest = Array.from({ length: r.size(12) }, () => workerMessage(r, k));
      return [...first, ...rest].map((m) => Buffer.from(WorkerMessage.encode(m).finish()));
    }
    default:
      throw new Error(`no generator for method ${method}`);
  }
}

/** Most encodings pass as they are; the rest are cut, flipped, padded with garbage or replaced by it. */
export function mutate(r: Rng, b: Buffer, rate = 0.3): Buffer {
  if (!r.chance(rate)) return b;
  switch (r.int(5)) {
    case 0:
      return b.subarray(0, r.int(b.length + 1));
    case 1: {
      const out = Buffer.from(b);
      for (let n = 1 + r.int(4); n > 0 && out.length > 0; n--) out[r.int(out.length)] = r.int(256);
      return out;
    }
    case 2:
      return Buffer.concat([b, r.bytes(1 + r.size(64))]);
    case 3:
      // A field that does not exist, or an existing one again with another wire type.
      return Buffer.concat([b, Buffer.from([(1 + r.int(20)) << 3 | r.int(6)]), r.bytes(r.int(10))]);
    default:
      return r.bytes(r.size(256));
  }
}
