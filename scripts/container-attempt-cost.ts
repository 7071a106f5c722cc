// What one attempt costs in a warm container: N attempts of `cat` over 4 KiB each through the Docker
// runtime, as a worker runs them, in one container (its start is not counted). Prints a table: wall
// time per attempt and the worker process's own CPU per attempt (the container's processes and the
// feeding dd are not in it).
// Usage: npm run build && node dist/scripts/container-attempt-cost.js [N]   (default 300; needs bach/base)
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { loadBachfile } from "../core/bachfile";
import { BASE_IMAGE, imageId, requireDocker } from "../core/docker";
import { DockerRuntime } from "../worker/docker-runtime";

async function main(): Promise<void> {
  const attempts = Number(process.argv[2] ?? 300);
  const docker = await requireDocker("container-attempt-cost");
  const image = await imageId(docker, BASE_IMAGE);
  if (!image) throw new Error(`${BASE_IMAGE} is missing: build it with \`bach image base\``);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "bach-attempt-cost-"));
  const task = path.join(work, "task");
  fs.mkdirSync(task);
  fs.chmodSync(task, 0o755); // the container's user reads it, as an unpacked bundle
  fs.writeFileSync(path.join(task, "bachfile.json"), JSON.stringify({ binary: "cat", image: BASE_IMAGE, hardware: { network: null } }));
  const bachfile = loadBachfile(task);
  const input = path.join(work, "chunk");
  fs.writeFileSync(input, `${"x".repeat(4095)}\n`);
  const runtime = new DockerRuntime(docker, {
    dataDir: path.join(work, "worker"),
    key: randomBytes(8).toString("hex"),
    log: pino({ level: "silent" }),
    fetchImage: () => {
      throw new Error("the engine has the base image");
    },
  });
  const taskId = `t-cost-${process.pid}`;
  const attempt = async (i: number) => {
    const outputFile = path.join(work, `out-${i}`);
    const o = await runtime.run({
      bachfile,
      cwd: task,
      input: { kind: "range", path: input, offset: 0, length: 4096 },
      outputFile,
      env: { BACH_TASK: taskId, BACH_CHUNK: String(i), BACH_ATTEMPT: String(i), BACH_WORKER: "cost" },
      workerName: "cost",
      taskId,
      imageId: image,
    }).done;
    if (!o.ok) throw new Error(`attempt ${i}: ${o.reason}`);
    fs.rmSync(outputFile);
  };
  try {
    await attempt(0); // starts the container
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    for (let i = 1; i <= attempts; i++) await attempt(i);
    const wall = Number(process.hrtime.bigint() - started) / 1e6 / attempts;
    const used = process.cpuUsage(cpu);
    process.stdout.write(`| attempts | wall per attempt | worker CPU per attempt |\n| --- | --- | --- |\n`);
    process.stdout.write(`| ${attempts} | ${wall.toFixed(2)} ms | ${((used.user + used.system) / 1000 / attempts).toFixed(2)} ms |\n`);
  } finally {
    runtime.taskEnded(taskId);
    await runtime.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`container-attempt-cost: ${err.message}\n`);
  process.exitCode = 1;
});
