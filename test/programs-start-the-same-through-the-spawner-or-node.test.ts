// The process runtime starts programs through bach-spawner (worker/spawner.c) or, where it was not
// built, through Node. Either way a program gets the same: its stdin as a pipe fed from here, a file,
// or a range of a file; its stdout in a file; its stderr read here; the environment given and nothing
// else; a session of its own; and an error naming what failed when it could not start. Real processes.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SPAWNER, startProgram, type ProgramSpec, type StartedProgram } from "../worker/spawner";
import { tempDir } from "./harness";

interface Ran {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  fed: string;
  error: NodeJS.ErrnoException | null;
  pid: number | undefined;
}

/** Starts `spec` and waits for its close; `feed` is written to a piped stdin. */
function run(spec: ProgramSpec, feed = "", onSpawn?: (p: StartedProgram) => void): Promise<Ran> {
  const p = startProgram(spec);
  let stderr = "";
  let error: NodeJS.ErrnoException | null = null;
  p.on("error", (err: NodeJS.ErrnoException) => (error = err));
  p.on("spawn", () => {
    p.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    p.stdin?.on("error", () => {});
    p.stdin?.end(feed);
    onSpawn?.(p);
  });
  return new Promise((resolve) => {
    p.on("close", (code: number | null, signal: string | null) => {
      void p.fed.then((fed) => resolve({ code, signal, stdout: fs.readFileSync(spec.stdoutPath, "utf8"), stderr, fed, error, pid: p.pid }));
    });
  });
}

const ways = [
  ["the spawner", "spawner"],
  ["Node", "node"],
] as const;

for (const [way, setting] of ways) {
  describe(`programs started through ${way}`, () => {
    const dir = tempDir();
    const input = path.join(dir, "input.txt");
    fs.writeFileSync(input, "zero\none\ntwo\nthree\n");
    let n = 0;
    const spec = (over: Partial<ProgramSpec>): ProgramSpec => ({
      binary: "sh",
      args: ["-c", "cat"],
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdin: { kind: "pipe" },
      stdoutPath: path.join(dir, `out-${++n}`),
      stderr: "pipe",
      ...over,
    });
    const using = <T>(f: () => Promise<T>): Promise<T> => {
      const was = process.env.BACH_SPAWNER;
      process.env.BACH_SPAWNER = setting;
      return f().finally(() => (was === undefined ? delete process.env.BACH_SPAWNER : (process.env.BACH_SPAWNER = was)));
    };

    test("stdin from a pipe, a file or a range of one; stdout to a file; stderr and the exit code come back", (t) =>
      using(async () => {
        if (setting === "spawner" && !fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
        const piped = await run(spec({ args: ["-c", "cat; echo said >&2; exit 3"] }), "fed from here\n");
        assert.deepEqual([piped.code, piped.signal, piped.stdout, piped.stderr, piped.error], [3, null, "fed from here\n", "said\n", null]);
        const file = await run(spec({ stdin: { kind: "file", path: input } }));
        assert.equal(file.stdout, "zero\none\ntwo\nthree\n");
        const range = await run(spec({ stdin: { kind: "range", path: input, offset: 5, length: 8 } }));
        assert.deepEqual([range.code, range.stdout, range.fed], [0, "one\ntwo\n", ""]);
        // A program that stops reading early is within its rights: its feeder stops quietly.
        const big = path.join(dir, "big");
        fs.writeFileSync(big, Buffer.alloc(4 << 20, "x"));
        const early = await run(spec({ args: ["-c", "head -c 3"], stdin: { kind: "range", path: big, offset: 1, length: 4 << 20 } }));
        assert.deepEqual([early.code, early.stdout, early.fed], [0, "xxx", ""]);
        const missing = await run(spec({ stdin: { kind: "range", path: path.join(dir, "no-such-file"), offset: 0, length: 10 } }));
        assert.match(missing.fed, /ENOENT|No such file/);
        assert.equal(missing.stdout, "");
      }));

    test("the environment is what was given and nothing else; the program leads a session of its own", (t) =>
      using(async () => {
        if (setting === "spawner" && !fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
        const env = await run(spec({ binary: "env", args: [], env: { PATH: "/usr/bin:/bin", ONLY: "this one" } }));
        assert.deepEqual(env.stdout.split("\n").filter(Boolean).sort(), ["ONLY=this one", "PATH=/usr/bin:/bin"]);
        const ids = await run(spec({ args: ["-c", "echo $$; ps -o pgid= -o sid= -p $$ | tr -s ' ' '\\n' | grep ."] }));
        const [pid, pgid, sid] = ids.stdout.split("\n").map((s) => Number(s.trim()));
        assert.equal(pid, ids.pid);
        assert.deepEqual([pgid, sid], [pid, pid]);
        // Signals are as a fresh process has them: SIGPIPE kills a writer whose reader is gone.
        // (Were it ignored, yes would say "Broken pipe" on stderr.)
        const pipe = await run(spec({ args: ["-c", "yes | head -c 1 >/dev/null"] }));
        assert.deepEqual([pipe.code, pipe.stderr], [0, ""]);
      }));

    test("a program that cannot start is an error: ENOENT when it is not found, the step when its folder is gone", (t) =>
      using(async () => {
        if (setting === "spawner" && !fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
        const missing = await run(spec({ binary: "no-such-program-anywhere", args: [] }));
        assert.equal(missing.error?.code, "ENOENT");
        assert.match(missing.error?.syscall ?? "", /^(spawn|exec)\b/);
        // And with a range to feed it: nothing waits on a feeder for a program that never ran.
        const unfed = await run(spec({ binary: "no-such-program-anywhere", args: [], stdin: { kind: "range", path: input, offset: 0, length: 5 } }));
        assert.equal(unfed.error?.code, "ENOENT");
        const gone = await run(spec({ cwd: path.join(dir, "no-such-folder") }));
        assert.equal(gone.error?.code, "ENOENT");
        assert.equal(gone.stdout, "");
      }));

    test("fifty programs at once each get their own input, whatever order they end in", (t) =>
      using(async () => {
        if (setting === "spawner" && !fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
        const runs = Array.from({ length: 50 }, (_, i) => run(spec({ args: ["-c", `sleep 0.0${i % 10}; cat`] }), `input of program ${i}\n`.repeat(100 + i)));
        const done = await Promise.all(runs);
        done.forEach((r, i) => assert.equal(r.stdout, `input of program ${i}\n`.repeat(100 + i)));
      }));
  });
}

test("a lost spawner fails the programs it was running; the next program gets a new spawner", async (t) => {
  if (!fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
  const dir = tempDir();
  const spec = (): ProgramSpec => ({ binary: "sleep", args: ["30"], cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, stdin: { kind: "pipe" }, stdoutPath: path.join(dir, "out"), stderr: "pipe" });
  const running = run(spec());
  await new Promise((resolve) => setTimeout(resolve, 300));
  const spawners = execFileSync("pgrep", ["-P", String(process.pid), "-x", "bach-spawner"], { encoding: "utf8" }).split("\n").filter(Boolean);
  assert.equal(spawners.length, 1);
  process.kill(Number(spawners[0]), "SIGKILL");
  const lost = await running;
  assert.equal(lost.error?.code, "ESPAWNER");
  assert.match(lost.error?.message ?? "", /^the worker's program spawner exited \(SIGKILL\) while the program ran$/);
  // Its program is an orphan now; the process runtime kills its group on exit, as here.
  if (lost.pid) process.kill(-lost.pid, "SIGKILL");
  const next = await run({ ...spec(), binary: "echo", args: ["again"] });
  assert.deepEqual([next.code, next.stdout], [0, "again\n"]);
});

test("where the spawner's pipes cannot be reopened (no /proc), the program is killed, not left without its input, and Node starts the next", async (t) => {
  if (!fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
  if (spawnSync("unshare", ["-m", "true"]).status !== 0) return t.skip("unshare -m is not permitted here: no private mount to hide /proc");
  const dir = tempDir();
  const script = path.join(dir, "two-programs.js");
  fs.writeFileSync(
    script,
    `const { startProgram } = require(${JSON.stringify(path.join(__dirname, "..", "worker", "spawner.js"))});
const spec = { binary: "cat", args: [], cwd: ${JSON.stringify(dir)}, env: { PATH: "/usr/bin:/bin" }, stdin: { kind: "pipe" }, stdoutPath: ${JSON.stringify(path.join(dir, "out"))}, stderr: "pipe" };
const first = startProgram(spec);
first.on("error", (e) => console.log("first: " + e.message));
first.on("spawn", () => first.stdin.end("lost\\n"));
first.on("close", (code, signal) => {
  console.log("first closed: " + signal);
  const next = startProgram(spec);
  next.on("spawn", () => next.stdin.end("fed\\n"));
  next.on("close", (code) => console.log("next closed: " + code + " " + require("fs").readFileSync(spec.stdoutPath, "utf8").trim()));
});
`,
  );
  const r = spawnSync("unshare", ["-m", "sh", "-c", 'mount -t tmpfs none /proc && exec "$0" "$1"', process.execPath, script], { encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.match(lines[0] ?? "", /^first: the program's pipes could not be opened: ENOENT/);
  assert.deepEqual(lines.slice(1), ["first closed: SIGKILL", "next closed: 0 fed"]);
});

test("the spawner answers a malformed request with a failure, so nothing waits on it", async (t) => {
  if (!fs.existsSync(SPAWNER)) return t.skip("bach-spawner was not built (no C compiler)");
  const request = (fields: string[]) => {
    const body = Buffer.from(fields.map((f) => `${f}\0`).join(""));
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.length);
    return Buffer.concat([head, body]);
  };
  const input = Buffer.concat([
    request(["S", "7", "/", "pipe"]),
    request(["S", "8", "/", "null", "/dev/null", "null", "5", "true"]),
    request(["S", "9", "/", "null", "/dev/null", "null", "1", "true", "0"]),
  ]);
  const out = execFileSync(SPAWNER, [], { input, encoding: "utf8", timeout: 10_000 });
  assert.deepEqual(out.split("\n").slice(0, 2), ["failed 7 exec 22", "failed 8 exec 22"]);
  assert.match(out.split("\n")[2] ?? "", /^started 9 \d+ -1 -1 0$/);
});
