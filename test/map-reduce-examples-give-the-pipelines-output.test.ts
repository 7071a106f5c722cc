// Map-reduce gives the pipeline's output: for the two map-reduce examples, `bach task-run` prints what
// `map < input | LC_ALL=C sort -s -t SEP -k1,N | reduce` prints when run once. In total order that is
// byte for byte. In hash order the output is the partitions one after another, each the pipeline's
// output over its own keys, so the whole is not sorted: as every key reaches exactly one partition and
// these reducers print one line per key, the output's lines are the pipeline's lines in another order,
// which the tests compare sorted (and run a copy of the bachfile in total order byte for byte).
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { exampleDir, gdeltFile, root, runBach, tempDir } from "./harness";

interface Program {
  binary: string;
  args?: string[];
}
interface MapReduceBachfile extends Program {
  reduce: Program & { key?: { separator?: string; fields?: number }; order?: string; partitions?: number | string; combine?: boolean };
}

const gdeltTask = exampleDir("gdelt-per-country-year");
const wordTask = exampleDir("word-count");

/** Real samples for checks by hand; present on the project's machines, not in CI (the tests say so). */
const shared = path.resolve(root, "..", "shared", "data");
const realGdelt = path.join(shared, "gdelt1.westafrica-conflict-1979-1997.tsv.xz");
const realLog = path.join(shared, "loghub_2k_all.log.xz");
const absent = (file: string) => (fs.existsSync(file) ? false : `${file} is not on this machine`);

function readBachfile(dir: string): MapReduceBachfile {
  return JSON.parse(fs.readFileSync(path.join(dir, "bachfile.json"), "utf8")) as MapReduceBachfile;
}

const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
const command = (p: Program) => [p.binary, ...(p.args ?? [])].map(quote).join(" ");

/** The reference: the task's map, a stable byte-order sort on its key, and its reduce, run once in its folder. */
function pipeline(dir: string, input: string): Buffer {
  const b = readBachfile(dir);
  const separator = b.reduce.key?.separator ?? "\t";
  const fields = b.reduce.key?.fields ?? 1;
  const script = `set -o pipefail; ${command(b)} < ${quote(input)} | LC_ALL=C sort -s -t ${quote(separator)} -k1,${fields} | ${command(b.reduce)}`;
  const r = spawnSync("bash", ["-c", script], { cwd: dir, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`the pipeline failed: ${script}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A copy of an example's folder whose bachfile's reduce block has `change` laid over it. */
function variant(dir: string, change: Partial<MapReduceBachfile["reduce"]>): string {
  const copy = path.join(tempDir("bach-map-reduce-"), path.basename(dir));
  fs.cpSync(dir, copy, { recursive: true });
  const b = readBachfile(dir);
  fs.writeFileSync(path.join(copy, "bachfile.json"), JSON.stringify({ ...b, reduce: { ...b.reduce, ...change } }, null, 2));
  return copy;
}

function unxz(file: string): string {
  const out = path.join(tempDir("bach-data-"), path.basename(file, ".xz"));
  const r = spawnSync("sh", ["-c", `xz -dc ${quote(file)} > ${quote(out)}`]);
  if (r.status !== 0) throw new Error(`xz -dc ${file} failed: ${r.stderr.toString()}`);
  return out;
}

/** Text of the repository's own (README and core sources): real prose and code that every checkout has. */
function repositoryText(): string {
  const file = path.join(tempDir("bach-data-"), "repository.txt");
  const core = fs.readdirSync(path.join(root, "core")).filter((f) => f.endsWith(".ts")).sort().map((f) => path.join(root, "core", f));
  fs.writeFileSync(file, Buffer.concat([path.join(root, "README.md"), ...core].map((f) => fs.readFileSync(f))));
  return file;
}

const lines = (b: Buffer) => b.toString("latin1").split("\n");
/** The lines in byte order (latin1 maps bytes to characters below 256, which sort as the bytes do). */
const sortedLines = (b: Buffer) => lines(b).sort();
const sumOfCounts = (b: Buffer) => lines(b).filter(Boolean).reduce((n, l) => n + Number(l.slice(l.lastIndexOf("\t") + 1)), 0);

/** Runs the task in `dir` over `input` as a user would, several chunks on two slots; its stdout. */
async function bach(dir: string, input: string, chunkSize: string): Promise<Buffer> {
  const r = await runBach(["task-run", "--data", input, "-p", "2", "--chunk-size", chunkSize], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe("gdelt-per-country-year: events per country and year", () => {
  let input = "";
  let expected: Buffer;
  before(() => {
    input = gdeltFile(4 * 1024 * 1024);
    expected = pipeline(gdeltTask, input);
    const rows = lines(fs.readFileSync(input)).filter(Boolean).length;
    assert.equal(sumOfCounts(expected), rows, "the pipeline counts every row once");
  });

  test("as shipped (hash order, combine): the pipeline's lines, each key once", async () => {
    const out = await bach(gdeltTask, input, "512k");
    assert.deepEqual(sortedLines(out), sortedLines(expected));
    const keys = lines(out).filter(Boolean).map((l) => l.slice(0, l.lastIndexOf("\t")));
    assert.equal(new Set(keys).size, keys.length, "a key is reduced in one partition only");
  });

  test("in total order over 3 partitions, with combine: byte for byte the pipeline's output", async () => {
    const out = await bach(variant(gdeltTask, { order: "total", partitions: 3 }), input, "512k");
    assert.ok(out.equals(expected), "output identical to the pipeline's");
  });

  test("in total order without combine: byte for byte the pipeline's output", async () => {
    const out = await bach(variant(gdeltTask, { order: "total", combine: false }), input, "1m");
    assert.ok(out.equals(expected), "output identical to the pipeline's");
  });

  test("real GDELT 1.0 rows, as shipped and in total order: the pipeline's output", { skip: absent(realGdelt) }, async () => {
    const real = unxz(realGdelt);
    const reference = pipeline(gdeltTask, real);
    assert.deepEqual(sortedLines(await bach(gdeltTask, real, "2m")), sortedLines(reference));
    assert.ok((await bach(variant(gdeltTask, { order: "total" }), real, "2m")).equals(reference), "total order: identical to the pipeline's");
  });
});

describe("word-count: words and their counts, with awk", () => {
  let input = "";
  let expected: Buffer;
  before(() => {
    input = repositoryText();
    expected = pipeline(wordTask, input);
    assert.ok(lines(expected).length > 1000, "the text has words");
  });

  test("as shipped (total order, combine): byte for byte the pipeline's output", async () => {
    const out = await bach(wordTask, input, "64k");
    assert.ok(out.equals(expected), "output identical to the pipeline's");
  });

  test("in hash order over 4 partitions: the pipeline's lines", async () => {
    const out = await bach(variant(wordTask, { order: "hash", partitions: 4 }), input, "64k");
    assert.deepEqual(sortedLines(out), sortedLines(expected));
  });

  test("a real sample of 16 system logs: byte for byte the pipeline's output", { skip: absent(realLog) }, async () => {
    const real = unxz(realLog);
    const out = await bach(wordTask, real, "512k");
    assert.ok(out.equals(pipeline(wordTask, real)), "output identical to the pipeline's");
  });
});
