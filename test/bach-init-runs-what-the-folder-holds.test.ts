// `bach init` writes a bachfile for the program the folder holds (a .js, a .py, an executable script),
// or, in an empty folder, a starter program the next command runs at once; it says what it chose and
// the next command, and never overwrites a bachfile.json or a program.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, tempDir } from "./harness";

function folder(files: Record<string, { text: string; mode?: number }>): string {
  const dir = tempDir("bach-init-");
  for (const [name, f] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), f.text, { mode: f.mode ?? 0o644 });
  return dir;
}

function written(dir: string): { binary: string; args: string[] } {
  return JSON.parse(fs.readFileSync(path.join(dir, "bachfile.json"), "utf8")) as { binary: string; args: string[] };
}

/** `bach init` in dir, then its next command over "hi": what each printed. */
async function initThenRun(dir: string, lines: string[], output: string): Promise<void> {
  const init = await runBach(["init"], { cwd: dir });
  assert.equal(init.code, 0, init.stderr);
  assert.equal(init.stdout.toString(), lines.map((l) => `${l}\n`).join(""));
  assert.equal(init.stderr, "");
  const input = path.join(tempDir(), "hi.txt");
  fs.writeFileSync(input, "hi\n");
  const run = await runBach(["task-run", "--no-progress"], { cwd: dir, pipeFile: input });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.toString(), output);
}

test("in an empty folder bach init writes a starter program, and echo hi | bach task-run prints HI", async () => {
  const dir = folder({});
  await initThenRun(dir, [
    "wrote upper.js: a starter program that upper-cases each line (replace it with yours)",
    "wrote bachfile.json: it runs node upper.js on each chunk",
    "next: echo hello | bach task-run",
  ], "HI\n");
  assert.deepEqual([written(dir).binary, written(dir).args], ["node", ["upper.js"]]);
});

test("a folder with one .py gets a bachfile that runs it with python3", async () => {
  const dir = folder({ "shout.py": { text: "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line.strip() + '!\\n')\n" }, "README.md": { text: "notes\n" } });
  await initThenRun(dir, ["wrote bachfile.json: it runs python3 shout.py on each chunk", "next: bach task-run --data FILE"], "hi!\n");
  assert.deepEqual([written(dir).binary, written(dir).args], ["python3", ["shout.py"]]);
});

test("a folder with one .js gets a bachfile that runs it with node", async () => {
  const dir = folder({ "rev.js": { text: "process.stdin.on('data', (b) => process.stdout.write(b.toString().split('\\n').map((l) => [...l].reverse().join('')).join('\\n')));\n" } });
  await initThenRun(dir, ["wrote bachfile.json: it runs node rev.js on each chunk", "next: bach task-run --data FILE"], "ih\n");
  assert.deepEqual([written(dir).binary, written(dir).args], ["node", ["rev.js"]]);
});

test("a folder with an executable script gets a bachfile that runs it directly", async () => {
  const dir = folder({ count: { text: "#!/bin/sh\nwc -l | tr -d ' '\n", mode: 0o755 }, "data.txt": { text: "x\n" } });
  await initThenRun(dir, ["wrote bachfile.json: it runs ./count on each chunk", "next: bach task-run --data FILE"], "1\n");
  assert.deepEqual([written(dir).binary, written(dir).args], ["./count", []]);
});

test("with several programs bach init picks the main one and says how to run another", async () => {
  const dir = folder({ "b.py": { text: "" }, "a.js": { text: "" }, "main.sh": { text: "#!/bin/sh\ncat\n", mode: 0o755 }, "eslint.config.js": { text: "" } });
  const init = await runBach(["init"], { cwd: dir });
  assert.equal(init.code, 0, init.stderr);
  assert.equal(init.stdout.toString(), [
    "wrote bachfile.json: it runs sh main.sh on each chunk",
    'other programs here: a.js, b.py (to run one of them, change "binary" and "args" in bachfile.json)',
    "next: bach task-run --data FILE",
    "",
  ].join("\n"));
});

test("bach init never overwrites a bachfile.json, and --force never overwrites a program", async () => {
  const dir = folder({ "bachfile.json": { text: '{"binary": "cat"}\n' }, "upper.js": { text: "// mine\n" } });
  const again = await runBach(["init"], { cwd: dir });
  assert.equal(again.code, 2);
  assert.equal(again.stderr, "bach: bachfile.json exists already (bach init --force replaces it)\n");
  assert.equal(again.stdout.length, 0);
  assert.equal(fs.readFileSync(path.join(dir, "bachfile.json"), "utf8"), '{"binary": "cat"}\n');
  const forced = await runBach(["init", "--force"], { cwd: dir });
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(forced.stdout.toString(), "wrote bachfile.json: it runs node upper.js on each chunk\nnext: bach task-run --data FILE\n");
  assert.equal(fs.readFileSync(path.join(dir, "upper.js"), "utf8"), "// mine\n");
});
