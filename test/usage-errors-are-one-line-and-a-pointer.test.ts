// A usage mistake (a shell glob after --data, an unknown option, a missing value, a misspelt command)
// gets one line saying what is wrong and one pointing at the help, exit status 2, from each of the
// three programs; and no option's help says its default twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { bin, tempDir } from "./harness";

function run(program: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [program, ...args], { cwd: tempDir(), env: { ...process.env, BACH_HOME: tempDir("bach-home-") }, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertUsage(program: string, args: string[], lines: string[]): void {
  const r = run(program, args);
  assert.equal(r.stderr, lines.map((l) => `${l}\n`).join(""), `${program} ${args.join(" ")}`);
  assert.equal(r.status, 2, `${program} ${args.join(" ")}: exit status`);
  assert.equal(r.stdout, "", "nothing on stdout");
}

test("bach task-run --data a b (a shell glob) says what is left over, not the whole help", () => {
  assertUsage(bin.bach, ["task-run", "--data", "a.tsv", "b.tsv"], [
    "bach: task-run: unexpected argument b.tsv: --data takes one input (quote a glob: --data 'dir/*.tsv', or give --data once per input)",
    "(see bach task-run --help)",
  ]);
  assertUsage(bin.bach, ["task-run", "a.tsv"], [
    "bach: task-run: unexpected argument a.tsv (the input goes in --data a.tsv)",
    "(see bach task-run --help)",
  ]);
});

test("bach: an unknown option, a missing option argument, an unknown command, too many arguments", () => {
  assertUsage(bin.bach, ["task-run", "--frobnicate"], ["bach: unknown option '--frobnicate'", "(see bach task-run --help)"]);
  assertUsage(bin.bach, ["task-run", "--dat", "x"], ["bach: unknown option '--dat' (did you mean --data?)", "(see bach task-run --help)"]);
  assertUsage(bin.bach, ["task-run", "--data"], ["bach: option '--data <file|url|->' argument missing", "(see bach task-run --help)"]);
  assertUsage(bin.bach, ["task-rn"], ["bach: unknown command 'task-rn' (did you mean task-run?)", "(see bach --help)"]);
  assertUsage(bin.bach, ["--frobnicate"], ["bach: unknown option '--frobnicate'", "(see bach --help)"]);
  assertUsage(bin.bach, ["task-report", "a", "b"], ["bach: too many arguments for 'task-report'. Expected 1 argument but got 2.", "(see bach task-report --help)"]);
  assertUsage(bin.bach, ["task-cancel"], ["bach: missing required argument 'task'", "(see bach task-cancel --help)"]);
});

test("bach-coordinator: the same mistakes, the same two lines", () => {
  assertUsage(bin.coordinator, ["start", "--frobnicate"], ["bach-coordinator: unknown option '--frobnicate'", "(see bach-coordinator start --help)"]);
  assertUsage(bin.coordinator, ["start", "--listen"], ["bach-coordinator: option '--listen <host:port>' argument missing", "(see bach-coordinator start --help)"]);
  assertUsage(bin.coordinator, ["stat"], ["bach-coordinator: unknown command 'stat' (did you mean start?)", "(see bach-coordinator --help)"]);
  assertUsage(bin.coordinator, ["start", "extra"], ["bach-coordinator: too many arguments for 'start'. Expected 0 arguments but got 1.", "(see bach-coordinator start --help)"]);
});

test("bach-worker: the same mistakes, the same two lines", () => {
  assertUsage(bin.worker, ["join"], ["bach-worker: missing required argument 'host:port'", "(see bach-worker join --help)"]);
  assertUsage(bin.worker, ["join", "a:1", "b:2"], ["bach-worker: too many arguments for 'join'. Expected 1 argument but got 2.", "(see bach-worker join --help)"]);
  assertUsage(bin.worker, ["join", "a:1", "--slots"], ["bach-worker: option '--slots <n>' argument missing", "(see bach-worker join --help)"]);
  assertUsage(bin.worker, ["join", "a:1", "--frobnicate"], ["bach-worker: unknown option '--frobnicate'", "(see bach-worker join --help)"]);
  assertUsage(bin.worker, ["jion"], ["bach-worker: unknown command 'jion' (did you mean join?)", "(see bach-worker --help)"]);
});

/** The help's option entries, one string each, however commander wrapped them. */
function optionEntries(help: string): string[] {
  const section = /\nOptions:\n([\s\S]*?)(\n\n|$)/.exec(help)?.[1] ?? "";
  const entries: string[] = [];
  for (const line of section.split("\n")) {
    if (/^ {2}-/.test(line)) entries.push(line.trim());
    else if (entries.length) entries[entries.length - 1] += ` ${line.trim()}`;
  }
  return entries;
}

function commandsOf(help: string): string[] {
  const section = /\nCommands:\n([\s\S]*?)(\n\n|$)/.exec(help)?.[1] ?? "";
  return section.split("\n").map((l) => /^ {2}([a-z][\w-]*)/.exec(l)?.[1]).filter((c): c is string => !!c && c !== "help");
}

test("no option's help says its default twice, in any command of the three programs", () => {
  let checked = 0;
  for (const program of [bin.bach, bin.coordinator, bin.worker]) {
    const top = run(program, ["--help"]).stdout;
    for (const args of [[], ...commandsOf(top).map((c) => [c])]) {
      const help = run(program, [...args, "--help"]).stdout;
      for (const entry of optionEntries(help)) {
        checked++;
        assert.ok((entry.match(/default/gi) ?? []).length <= 1, `${program} ${args.join(" ")} --help: ${entry}`);
      }
    }
  }
  assert.ok(checked > 60, `checked ${checked} options`);
});
