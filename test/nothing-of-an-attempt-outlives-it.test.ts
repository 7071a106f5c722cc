// Nothing of a container attempt outlives it. Every process is gone before the attempt is judged: a
// program that leaves a background process writing to its stdout (or stderr) cannot change the output
// once it is committed, nor leak into the next attempt in the same container; a program cannot end its
// attempt early by forging the keeper's report; and the next attempt finds /scratch empty, whatever
// was left there (links, unreadable folders). Drives the Docker runtime directly, as the worker does.
// Skips without a Docker Engine unless BACH_REQUIRE_DOCKER=1.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pino from "pino";
import { loadBachfile } from "../core/bachfile";
import { BASE_IMAGE, connectDocker, imageId } from "../core/docker";
import { DockerRuntime } from "../worker/docker-runtime";
import { dockerOrSkip, ensureBaseImage } from "./engines";
import { taskFolder, tempDir } from "./harness";

// It echoes its input, then leaves a loop that keeps writing to stdout and stderr after it exits.
const LEAVES_A_WRITER = 'cat; (sleep 0.3; while :; do echo late; echo late >&2; sleep 0.1; done) &';

// It looks for the keeper's token where a process's secrets show (PID 1's command line, environment,
// memory), writes a report of success for the first attempts with every word found, and only then,
// a second later, does its job.
const FORGER = `
const fs = require("fs");
const words = [];
for (const f of ["/proc/1/cmdline", "/proc/1/environ", "/proc/1/mem"]) {
  try { words.push(...fs.readFileSync(f, "latin1").split(/[\\0 =]/).filter(Boolean)); } catch (e) { /* refused: the point */ }
}
for (const w of words) for (let id = 1; id <= 3; id++) process.stderr.write("\\x1e" + w + " " + id + " 0 - 0 0\\n");
setTimeout(() => process.stdin.pipe(process.stdout), 1000);
`;

// It says what it finds in /scratch, then leaves there what is awkward to remove.
const LITTERER = `
const fs = require("fs");
process.stdin.resume();
process.stdin.on("end", () => {
  console.log(JSON.stringify(fs.readdirSync("/scratch")));
  fs.mkdirSync("/scratch/deep/er", { recursive: true });
  fs.writeFileSync("/scratch/deep/er/file", "x");
  fs.chmodSync("/scratch/deep/er", 0o000);
  fs.chmodSync("/scratch/deep", 0o000);
  fs.writeFileSync("/scratch/.hidden", "x");
  fs.symlinkSync("/task", "/scratch/task-link");
  fs.symlinkSync("/scratch/nowhere", "/scratch/dangling");
});
`;

/** A Docker runtime as a worker makes one, and a task folder as a worker unpacks one. */
async function setUp(bachfileFields: object, files: Record<string, string> = {}) {
  const docker = connectDocker();
  const image = await imageId(docker, BASE_IMAGE);
  assert.ok(image);
  const task = taskFolder({ image: BASE_IMAGE, stderr: "log", timeout: "30s", hardware: { network: null }, ...bachfileFields }, files);
  // Readable by the container's user, as an unpacked bundle is (mkdtemp makes it 0700).
  fs.chmodSync(task, 0o755);
  const bachfile = loadBachfile(task);
  const runtime = new DockerRuntime(docker, {
    dataDir: tempDir("bach-worker-"),
    key: randomBytes(8).toString("hex"),
    log: pino({ level: "silent" }),
    fetchImage: () => {
      throw new Error("the engine has the base image");
    },
  });
  const taskId = `t-${randomBytes(4).toString("hex")}`;
  const work = tempDir("bach-attempts-");
  const attempt = async (n: number) => {
    const input = path.join(work, `in-${n}`);
    fs.writeFileSync(input, `chunk ${n}\n`);
    const outputFile = path.join(work, `out-${n}`);
    const done = await runtime.run({
      bachfile,
      cwd: task,
      input: { kind: "range", path: input, offset: 0, length: fs.statSync(input).size },
      outputFile,
      env: { BACH_CHUNK: String(n) },
      workerName: "test",
      taskId,
      imageId: image,
    }).done;
    assert.equal(done.kind, "ok", done.reason);
    return { outputFile, output: fs.readFileSync(outputFile, "utf8"), stderr: done.stderr };
  };
  const end = async () => {
    runtime.taskEnded(taskId);
    await runtime.close();
  };
  /** The task's containers now: the same one across attempts means it was reused, not replaced. */
  const containers = async () => (await docker.listContainers({ all: true, filters: { label: [`org.bach.task=${taskId}`] } })).map((c) => c.Id);
  return { attempt, end, containers };
}

test("a background process a program leaves cannot change its committed output or the next attempt's", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const { attempt, end } = await setUp({ binary: "sh", args: ["-c", LEAVES_A_WRITER] });
  try {
    const first = await attempt(0);
    assert.match(first.output, /^chunk 0\n/);
    const second = await attempt(1);
    assert.match(second.output, /^chunk 1\n/);
    assert.doesNotMatch(second.stderr, /late/, "the first attempt's leftover wrote into the second attempt's stderr");
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(fs.readFileSync(first.outputFile, "utf8"), first.output, "the first output changed after it was judged");
    assert.equal(fs.readFileSync(second.outputFile, "utf8"), second.output, "the second output changed after it was judged");
  } finally {
    await end();
  }
});

test("a program cannot end its attempt early by forging the keeper's report", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const { attempt, end } = await setUp({ binary: "node", args: ["forger.js"] }, { "forger.js": FORGER });
  try {
    for (const n of [0, 1]) {
      const { output } = await attempt(n);
      assert.equal(output, `chunk ${n}\n`, "the attempt was judged before the program had written its output");
    }
  } finally {
    await end();
  }
});

test("each attempt in a container finds /scratch empty, whatever the last one left there", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const { attempt, end, containers } = await setUp({ binary: "node", args: ["litterer.js"] }, { "litterer.js": LITTERER });
  try {
    assert.equal((await attempt(0)).output, "[]\n");
    const first = await containers();
    for (const n of [1, 2]) assert.equal((await attempt(n)).output, "[]\n", `attempt ${n} found the last one's files`);
    // Emptied in place by the keeper, not by throwing the container away (which costs ~0.55 s).
    assert.deepEqual(await containers(), first);
  } finally {
    await end();
  }
});
