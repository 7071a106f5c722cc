// How fast the shuffle sorts and merges, and in how much memory. Generates two map outputs: GDELT-like
// rows (`USA\t2019\t1`, key = first two fields, ~200 distinct keys) and word-count-like rows (1M
// distinct words, key = the word), then times each step in a child process of its own, so that each
// row's peak RSS is that step's alone. Prints a table, with GNU sort's time on the same input.
// Usage: npm run build && node dist/scripts/shuffle-speed.js [--bytes N] [--maps N]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { filePieces } from "../core/file-pieces";
import { mergeRuns, sortToPlain, sortToRun, type SortOptions } from "../core/shuffle";

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const BYTES = Number(flag("--bytes", String(256 * 1024 * 1024)));
/** The reduce-side merge reads this many map runs (the map output cut into as many pieces). */
const MAPS = Number(flag("--maps", "8"));

/** A small deterministic PRNG (mulberry32): the same data on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generate(file: string, bytes: number, line: (r: () => number) => string): void {
  const r = random(42);
  const fd = fs.openSync(file, "w");
  try {
    for (let written = 0; written < bytes; ) {
      const lines: string[] = [];
      for (let n = 0; n < 1 << 20; ) {
        const l = line(r);
        lines.push(l);
        n += l.length;
      }
      const piece = Buffer.from(lines.join(""), "latin1");
      fs.writeSync(fd, piece, 0, Math.min(piece.length, bytes - written));
      written += piece.length;
    }
  } finally {
    fs.closeSync(fd);
  }
}

const COUNTRIES = Array.from({ length: 40 }, (_, i) => String.fromCharCode(65 + (i % 26), 65 + Math.floor(i / 26), 65 + ((i * 7) % 26)));
const gdelt = (r: () => number) => `${COUNTRIES[Math.floor(r() * 40)]}\t${2015 + Math.floor(r() * 5)}\t${1 + Math.floor(r() * 9)}\n`;
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
let WORDS: string[] = [];
/** 1M distinct words, made only by the parent (a child's peak RSS must not count them). */
function makeWords(): void {
  const r = random(7);
  const words = new Set<string>();
  while (words.size < 1_000_000) {
    let w = "";
    for (let n = 3 + Math.floor(r() * 8); n > 0; n--) w += LETTERS[Math.floor(r() * 26)];
    words.add(w);
  }
  WORDS = [...words];
}
const words = (r: () => number) => `${WORDS[Math.floor(r() * WORDS.length)]}\t1\n`;

/** Cuts a file into `n` files at record ends (the map outputs of n chunks). */
function cut(file: string, n: number, dir: string): string[] {
  const all = fs.readFileSync(file);
  const files: string[] = [];
  let from = 0;
  for (let i = 0; i < n; i++) {
    let end = i === n - 1 ? all.length : all.indexOf(10, Math.floor(((i + 1) * all.length) / n)) + 1;
    if (end <= 0) end = all.length;
    files.push(path.join(dir, `map-${i}`));
    fs.writeFileSync(files[i], all.subarray(from, end));
    from = end;
  }
  return files;
}

interface Step {
  step: "sort" | "hash" | "plain" | "merge";
  input: string[];
  fields: number;
  tmpDir: string;
}

/** One step, in this (child) process: prints seconds and bytes as JSON. */
async function runStep(s: Step): Promise<void> {
  const o: SortOptions = { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields: s.fields }, partitions: null, tmpDir: s.tmpDir };
  const started = process.hrtime.bigint();
  let bytes = 0;
  if (s.step === "merge") {
    const sources = s.input.map((f) => () => filePieces(f, 0, Infinity, 1024 * 1024, Buffer.allocUnsafe(1024 * 1024)));
    for await (const frame of mergeRuns(sources, { delimiter: o.delimiter, tmpDir: s.tmpDir })) bytes += frame.length;
  } else {
    const out = path.join(s.tmpDir, `out-${s.step}`);
    bytes = fs.statSync(s.input[0]).size;
    if (s.step === "plain") await sortToPlain(s.input[0], out, o);
    else await sortToRun(s.input[0], out, { ...o, partitions: s.step === "hash" ? 16 : null });
    fs.rmSync(out);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ seconds, bytes, maxRssKiB: peakRssKiB() }));
}

/**
 * This process's peak RSS. On Linux, VmHWM: process.resourceUsage().maxRSS (getrusage) survives exec,
 * so a child reports its parent's peak at the fork when that is higher (here the parent holds the 1M
 * generated words: every child read 150-230 MiB, against 86 MiB for a merge run alone).
 */
function peakRssKiB(): number {
  const status = fs.existsSync("/proc/self/status") ? fs.readFileSync("/proc/self/status", "utf8") : "";
  const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
  return hwm !== null ? Number(hwm[1]) : process.resourceUsage().maxRSS;
}

function child(s: Step): { seconds: number; bytes: number; maxRssKiB: number } {
  const r = spawnSync(process.execPath, [__filename, "--step", JSON.stringify(s)], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`step ${s.step} failed with status ${r.status}`);
  return JSON.parse(r.stdout) as { seconds: number; bytes: number; maxRssKiB: number };
}

async function main(): Promise<void> {
  const stepArg = flag("--step", "");
  if (stepArg !== "") return runStep(JSON.parse(stepArg) as Step);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "bach-shuffle-speed-"));
  try {
    const mib = (n: number) => (n / (1024 * 1024)).toFixed(0);
    console.log(`shuffle speed: ${mib(BYTES)} MiB map outputs, defaults (32 MiB spills, fan-in 16), ${os.cpus().length} CPUs, node ${process.version}`);
    console.log("data      step                         MiB     s   MB/s  peak RSS MiB");
    for (const [name, line, fields] of [["gdelt", gdelt, 2], ["words", words, 1]] as const) {
      const input = path.join(work, `${name}.tsv`);
      if (name === "words") makeWords();
      generate(input, BYTES, line);
      const maps = cut(input, MAPS, work);
      const runs: string[] = [];
      for (const [i, m] of maps.entries()) {
        runs.push(path.join(work, `run-${i}`));
        await sortToRun(m, runs[i], { delimiter: Buffer.from("\n"), key: { separator: Buffer.from("\t"), fields }, partitions: null, tmpDir: work });
        fs.rmSync(m);
      }
      const steps: [Step["step"], string, string[]][] = [
        ["sort", "sortToRun (key order)", [input]],
        ["hash", "sortToRun (16 hash parts)", [input]],
        ["plain", "sortToPlain", [input]],
        ["merge", `mergeRuns (${MAPS} runs)`, runs],
      ];
      for (const [step, label, files] of steps) {
        const r = child({ step, input: files, fields, tmpDir: work });
        const mb = r.bytes / 1e6;
        console.log(`${name.padEnd(9)} ${label.padEnd(26)} ${mib(r.bytes).padStart(5)} ${r.seconds.toFixed(2).padStart(5)} ${(mb / r.seconds).toFixed(0).padStart(6)} ${(r.maxRssKiB / 1024).toFixed(0).padStart(13)}`);
      }
      // The reference the output must equal, on the same machine: GNU sort (which may use every CPU).
      const started = process.hrtime.bigint();
      const sorted = spawnSync("sort", ["-s", "-t", "\t", `-k1,${fields}`, "-o", "/dev/null", input], { env: { LC_ALL: "C" }, stdio: "ignore" });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (sorted.status === 0) console.log(`${name.padEnd(9)} ${"LC_ALL=C sort -s (GNU)".padEnd(26)} ${mib(BYTES).padStart(5)} ${seconds.toFixed(2).padStart(5)} ${(BYTES / 1e6 / seconds).toFixed(0).padStart(6)} ${"-".padStart(13)}`);
      for (const f of [input, ...runs]) fs.rmSync(f);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
