// A container attempt stops when it must, not when its program pleases: at its timeout (whose killed
// container takes its memory cgroup with it) and, under "stderr": "fail", at its first byte of stderr,
// however short. Each names why, in the words the process runtime uses. Skips without a Docker Engine
// unless BACH_REQUIRE_DOCKER=1.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { BASE_IMAGE } from "../core/docker";
import { dockerOrSkip, ensureBaseImage } from "./engines";
import { runBach, taskFolder, tempDir } from "./harness";

async function runFor(bachfile: object): Promise<{ code: number | null; stderr: string; seconds: number }> {
  const task = taskFolder({ image: BASE_IMAGE, retries: 0, hardware: { network: null }, ...bachfile });
  const input = path.join(tempDir(), "two.txt");
  fs.writeFileSync(input, "a\nb\n");
  const started = Date.now();
  const r = await runBach(["task-run", "--data", input, "-p", "1", "--no-progress"], { cwd: task, timeoutMs: 90_000 });
  return { code: r.code, stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

test("a container attempt past its timeout is stopped and reported as a timeout", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const r = await runFor({ binary: "sh", args: ["-c", "cat; sleep 60"], timeout: "2s" });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /failed after 1 attempt: timeout after 2\.0 s$/m);
  assert.ok(r.seconds < 30, `took ${r.seconds} s`);
});

test('under "stderr": "fail" a few bytes of stderr stop a container attempt at once', async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const r = await runFor({ binary: "sh", args: ["-c", "cat; echo oops >&2; sleep 60"], timeout: "5m" });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /failed after 1 attempt: stderr: oops \(a program that may write to stderr: "stderr": "log" in bachfile\.json keeps it in the report instead\)$/m);
  assert.ok(r.seconds < 30, `took ${r.seconds} s: the attempt waited for the program instead of stopping it`);
});
