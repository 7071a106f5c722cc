// The bachfile: its schema (zod, strict: an unknown field is an error), its defaults, and the one clear
// line per problem a user gets, naming the field's path. It never runs anything.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { BachfileError, InputError } from "./errors";
import { parseDuration, parseSize } from "./sizes";

export interface Hardware {
  cpu: { min: number; max: number | null };
  memory: { min: number; max: number | null };
  disk: { min: number };
  graphics: null | { count: number };
  network: "none" | "default";
}

/** Map-reduce's second phase (see README "Map-reduce"): how map output is keyed, partitioned and reduced. */
export interface Reduce {
  binary: string;
  args: string[];
  /** A map output record's key: its first `fields` fields by `separator` (the whole record when it has fewer). */
  key: { separator: string; fields: number };
  /** How many reduce partitions: a number, or "auto" (see README). */
  partitions: number | "auto";
  /** hash: partition by a stable hash of the key; total: key ranges, so the output is in key order. */
  order: "hash" | "total";
  /** Run the reduce program on each map chunk's sorted output before the shuffle (Hadoop's combiner). */
  combine: boolean;
  /** What ends a record of the map output. */
  delimiter: string;
}

/** The most reduce partitions a task may ask for. */
export const MAX_PARTITIONS = 1000;

export interface Bachfile {
  logicalName: string;
  interruptible: boolean;
  binary: string;
  args: string[];
  delimiter: string;
  /** "records": the input is cut into chunks of records; "objects": each input object is one record, one run. */
  input: "records" | "objects";
  hardware: Hardware;
  image: string | null;
  dockerfile: string | null;
  reduce: Reduce | null;
  stderr: "fail" | "log" | "ignore";
  retries: number;
  chunkSize: "auto" | number;
  timeoutMs: number | null;
  env: Record<string, string>;
}

const range = z.strictObject({ min: z.number().min(0).optional(), max: z.number().positive().nullable().optional() });

const schema = z.strictObject({
  "logical-name": z.string().min(1).optional(),
  interruptible: z.boolean().optional(),
  binary: z.string().min(1),
  args: z.array(z.string()).optional(),
  delimiter: z.string().min(1).optional(),
  input: z.enum(["records", "objects"]).optional(),
  hardware: z
    .strictObject({
      cpu: range.optional(),
      memory: range.optional(),
      disk: z.strictObject({ min: z.union([z.string(), z.number().min(0)]).optional() }).optional(),
      graphics: z.union([z.null(), z.strictObject({ count: z.number().int().min(1) })]).optional(),
      network: z.union([z.null(), z.literal("default")]).optional(),
    })
    .optional(),
  image: z.string().min(1).optional(),
  dockerfile: z.string().min(1).optional(),
  reduce: z
    .strictObject({
      binary: z.string().min(1),
      args: z.array(z.string()).optional(),
      key: z.strictObject({ separator: z.string().min(1).optional(), fields: z.number().int().min(1).optional() }).optional(),
      partitions: z.union([z.literal("auto"), z.number().int().min(1).max(MAX_PARTITIONS)]).optional(),
      order: z.enum(["hash", "total"]).optional(),
      combine: z.boolean().optional(),
      delimiter: z.string().min(1).optional(),
    })
    .optional(),
  stderr: z.enum(["fail", "log", "ignore"]).optional(),
  retries: z.number().int().min(0).max(100).optional(),
  "chunk-size": z.union([z.string(), z.number().positive()]).optional(),
  timeout: z.union([z.string(), z.number().positive(), z.null()]).optional(),
  env: z.record(z.string(), z.string()).optional(),
});

type Raw = z.infer<typeof schema>;

/** What a field accepts, said the way a user writes it, where zod's own words would be vague. */
const HINTS: Record<string, string> = {
  "hardware.graphics": 'must be null or {"count": N}',
  "hardware.network": 'must be null (no network) or "default"',
  "hardware.disk.min": 'must be a size such as "1g" or a number of bytes',
  "chunk-size": 'must be "auto" or a size such as "64m"',
  timeout: 'must be a duration such as "10m" or "30s", or null',
  stderr: 'must be "fail", "log" or "ignore"',
  input: 'must be "records" (cut the input into chunks of records) or "objects" (each input object is one record)',
  "reduce.partitions": `must be "auto" or a whole number from 1 to ${MAX_PARTITIONS}`,
  "reduce.order": 'must be "hash" or "total"',
  "reduce.key": 'must be {"separator": "\\t", "fields": N}',
  "reduce.key.fields": "must be a whole number of at least 1",
};

const KNOWN_FIELDS = [
  ...Object.keys(schema.shape),
  "cpu", "memory", "disk", "graphics", "network", "min", "max", "count", "partitions", "key", "order", "combine", "separator", "fields",
];

export function fieldPath(parts: readonly PropertyKey[]): string {
  return parts.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p)), "");
}

function valueAt(root: unknown, parts: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of parts) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return JSON.stringify(v.length > 30 ? `${v.slice(0, 30)}...` : v);
  return String(v);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = row[j];
      row[j] = next;
    }
  }
  return row[b.length];
}

function suggestion(key: string): string {
  const best = KNOWN_FIELDS.map((k) => ({ k, d: editDistance(key.toLowerCase(), k) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 2 ? ` (did you mean "${best.k}"?)` : "";
}

function problemsOf(issues: readonly z.core.$ZodIssue[], raw: unknown): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  for (const issue of issues) {
    const field = fieldPath(issue.path);
    const value = valueAt(raw, issue.path);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push({ field: fieldPath([...issue.path, key]), message: `unknown field${suggestion(key)}` });
    } else if (HINTS[field]) {
      out.push({ field, message: `${HINTS[field]}, got ${describe(value)}` });
    } else if (issue.code === "invalid_type") {
      out.push({ field, message: value === undefined ? "is required" : `expected ${issue.expected === "array" ? "a list" : `a ${issue.expected}`}, got ${describe(value)}` });
    } else if (issue.code === "too_small") {
      out.push({ field, message: typeof value === "string" ? "must not be empty" : `must be at least ${issue.minimum}${issue.inclusive === false ? " (exclusive)" : ""}, got ${describe(value)}` });
    } else if (issue.code === "too_big") {
      out.push({ field, message: `must be at most ${issue.maximum}, got ${describe(value)}` });
    } else {
      out.push({ field, message: `${issue.message}, got ${describe(value)}` });
    }
  }
  return out;
}

/** JSON has no comments; keys starting with "//" (npm's convention) are comments and dropped. */
function withoutComments(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutComments);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith("//")).map(([k, x]) => [k, withoutComments(x)]));
}

function jsonError(text: string, err: Error): string {
  const at = /at position (\d+)/.exec(err.message);
  if (!at) return err.message;
  const before = text.slice(0, Number(at[1]));
  const line = before.split("\n").length;
  const column = Number(at[1]) - before.lastIndexOf("\n");
  return `${err.message.replace(/ in JSON at position \d+.*/, "")} (line ${line}, column ${column})`;
}

export function parseBachfile(text: string, file: string, folderName: string): Bachfile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new BachfileError(file, [{ field: "", message: `not valid JSON: ${jsonError(text, err as Error)}` }]);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new BachfileError(file, [{ field: "", message: `expected a JSON object, got ${describe(json)}` }]);
  }
  const raw = withoutComments(json);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new BachfileError(file, problemsOf(parsed.error.issues, raw));
  const problems: { field: string; message: string }[] = [];
  const b = normalize(parsed.data, folderName, problems);
  for (const part of ["cpu", "memory"] as const) {
    const { min, max } = b.hardware[part];
    if (max !== null && min > max) problems.push({ field: `hardware.${part}.min`, message: `must not exceed hardware.${part}.max (${min} > ${max})` });
  }
  if (b.image && b.dockerfile) problems.push({ field: "dockerfile", message: 'give either "image" or "dockerfile", not both' });
  if (problems.length) throw new BachfileError(file, problems);
  return b;
}

/** Applies defaults and turns sizes and durations into numbers, collecting problems instead of stopping. */
function normalize(r: Raw, folderName: string, problems: { field: string; message: string }[]): Bachfile {
  const attempt = <T>(field: string, fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push({ field, message: err.message.replace(/^[^:]+: /, "") });
      return fallback;
    }
  };
  const hw = r.hardware ?? {};
  const chunk = r["chunk-size"];
  return {
    logicalName: r["logical-name"] ?? folderName,
    interruptible: r.interruptible ?? true,
    binary: r.binary,
    args: r.args ?? [],
    delimiter: r.delimiter ?? "\n",
    input: r.input ?? "records",
    hardware: {
      cpu: { min: hw.cpu?.min ?? 0, max: hw.cpu?.max ?? null },
      memory: { min: hw.memory?.min ?? 0, max: hw.memory?.max ?? null },
      disk: { min: attempt("hardware.disk.min", () => parseSize(hw.disk?.min ?? 0, "hardware.disk.min"), 0) },
      graphics: hw.graphics ?? null,
      network: hw.network === null ? "none" : "default",
    },
    image: r.image ?? null,
    dockerfile: r.dockerfile ?? null,
    reduce: r.reduce
      ? {
          binary: r.reduce.binary,
          args: r.reduce.args ?? [],
          key: { separator: r.reduce.key?.separator ?? "\t", fields: r.reduce.key?.fields ?? 1 },
          partitions: r.reduce.partitions ?? "auto",
          order: r.reduce.order ?? "hash",
          combine: r.reduce.combine ?? false,
          delimiter: r.reduce.delimiter ?? "\n",
        }
      : null,
    stderr: r.stderr ?? "fail",
    retries: r.retries ?? 3,
    chunkSize: chunk === undefined || chunk === "auto" ? "auto" : attempt<number | "auto">("chunk-size", () => parseSize(chunk, "chunk-size"), "auto"),
    timeoutMs: r.timeout === undefined || r.timeout === null ? null : attempt<number | null>("timeout", () => parseDuration(r.timeout ?? 0, "timeout"), null),
    env: r.env ?? {},
  };
}

export function loadBachfile(dir: string): Bachfile {
  const file = path.join(dir, "bachfile.json");
  if (!fs.existsSync(file)) throw new InputError(`no bachfile.json in ${dir} (run \`bach init\` to write one)`, { path: file });
  return parseBachfile(fs.readFileSync(file, "utf8"), "bachfile.json", path.basename(dir));
}

/** A commented bachfile for `bach init`, running `program` (cli/init.ts finds it in the folder). */
export function bachfileTemplate(folderName: string, program: { binary: string; args: string[] }): string {
  const t = {
    "//": "A Bach task: `bach task-run --data FILE` runs `binary args...` once per chunk of records, chunk on stdin.",
    "logical-name": folderName,
    "// binary": "the program: a name on PATH or a path in this folder; it must exit 0 when a chunk is done",
    binary: program.binary,
    args: program.args,
    "// delimiter": "what ends a record; chunks never split a record",
    delimiter: "\n",
    "// interruptible": "true: may run on workers that can be taken back (spare machines)",
    interruptible: true,
    "// hardware": "cpu in cores, memory in MiB: min is what a slot needs, max the limit; network null: none",
    hardware: { cpu: { min: 0.1, max: 1 }, memory: { min: 128, max: 512 }, disk: { min: "1g" }, graphics: null, network: null },
    "// stderr": "fail (default): writing to stderr fails the attempt; log: keep it in the report (an embedded run prints it too); ignore",
    stderr: "fail",
    "// retries": "failed attempts retried per chunk before the task fails",
    retries: 3,
    "// chunk-size": "auto measures the program; or a size such as 64m",
    "chunk-size": "auto",
    "// timeout": "an attempt running longer is killed and retried; null for none",
    timeout: "10m",
    env: {},
  };
  return `${JSON.stringify(t, null, 2)}\n`;
}

const limit = z.strictObject({ min: z.number().min(0), max: z.number().positive().nullable() });

/** The normalized form (Bachfile) as it travels from a CLI to the coordinator and sits in the ledger. */
const normalizedSchema = z.strictObject({
  logicalName: z.string().min(1),
  interruptible: z.boolean(),
  binary: z.string().min(1),
  args: z.array(z.string()),
  delimiter: z.string().min(1),
  // Absent from what an older bach sent or stored: records, as it was then.
  input: z.enum(["records", "objects"]).default("records"),
  hardware: z.strictObject({
    cpu: limit,
    memory: limit,
    disk: z.strictObject({ min: z.number().min(0) }),
    graphics: z.union([z.null(), z.strictObject({ count: z.number().int().min(1) })]),
    network: z.enum(["none", "default"]),
  }),
  image: z.string().min(1).nullable(),
  dockerfile: z.string().min(1).nullable(),
  reduce: z.union([
    z.null(),
    z.strictObject({
      binary: z.string().min(1),
      args: z.array(z.string()),
      key: z.strictObject({ separator: z.string().min(1), fields: z.number().int().min(1) }),
      partitions: z.union([z.literal("auto"), z.number().int().min(1).max(MAX_PARTITIONS)]),
      order: z.enum(["hash", "total"]),
      combine: z.boolean(),
      delimiter: z.string().min(1),
    }),
  ]),
  stderr: z.enum(["fail", "log", "ignore"]),
  retries: z.number().int().min(0).max(100),
  chunkSize: z.union([z.literal("auto"), z.number().int().positive()]),
  timeoutMs: z.number().positive().nullable(),
  env: z.record(z.string(), z.string()),
}) satisfies z.ZodType<Bachfile>;

/**
 * Checks a normalized bachfile that came over the network (CreateTask) or out of the ledger before
 * anything is stored or run: a partial or hostile one is one clear line naming its first bad field.
 */
export function checkBachfileJson(text: string, what = "bachfile_json"): Bachfile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${what}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = normalizedSchema.safeParse(json);
  if (!parsed.success) {
    const problems = problemsOf(parsed.error.issues, json);
    throw new InputError(`${what}: ${problems.map((p) => `${p.field || "(top level)"}: ${p.message}`).join("; ")}`, { field: problems[0]?.field });
  }
  return parsed.data;
}
