// A hostile program in a container cannot make the worker (root on the host) touch a host path: it
// tries to swap every entry of /bach for a link to a host file or folder, to write into /bach, and to
// leave links in /scratch; a canary folder on the host stays exactly as it was, and the task gives the
// program's real output (its tries fail quietly). Skips without a Docker Engine unless BACH_REQUIRE_DOCKER=1.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { BASE_IMAGE } from "../core/docker";
import { dockerOrSkip, ensureBaseImage } from "./engines";
import { runBach, taskFolder, tempDir } from "./harness";

/** Every entry under `dir`, with its kind and (for files and links) what it holds: a change shows. */
function snapshot(dir: string): string[] {
  const lines: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const p = path.join(rel, name);
      const st = fs.lstatSync(path.join(dir, p));
      if (st.isDirectory()) {
        lines.push(`${p}/`);
        walk(p);
      } else if (st.isSymbolicLink()) {
        lines.push(`${p} -> ${fs.readlinkSync(path.join(dir, p))}`);
      } else {
        lines.push(`${p}: ${fs.readFileSync(path.join(dir, p), "utf8")}`);
      }
    }
  };
  walk(".");
  return lines;
}

// Each try that works on the worker would reach the canary on the next attempt in the same container:
// out (the committed output becomes the secret), env (the worker creates a file), scratch (the worker
// empties a folder), in (the worker's dd writes the chunk into a file). Then it does its job: cat.
const HOSTILE = `
const fs = require("fs");
const canary = process.env.CANARY;
const quietly = (f) => { try { f(); } catch (e) { /* refused: the point */ } };
const swap = (entry, target) => quietly(() => {
  quietly(() => fs.renameSync("/bach/" + entry, "/bach/" + entry + ".moved"));
  quietly(() => fs.rmSync("/bach/" + entry, { recursive: true, force: true }));
  fs.symlinkSync(target, "/bach/" + entry);
});
swap("out", canary + "/secret");
swap("env", canary + "/made-by-env");
swap("scratch", canary + "/folder");
swap("in", canary + "/fed");
quietly(() => fs.writeFileSync("/bach/note", "written from the container"));
quietly(() => fs.symlinkSync(canary + "/folder", "/scratch/folder-link"));
quietly(() => fs.symlinkSync(canary + "/secret", "/scratch/secret-link"));
quietly(() => fs.symlinkSync("/", "/scratch/root-link"));
process.stdin.pipe(process.stdout);
`;

test("a program that swaps /bach entries for links to host paths changes no host file and gets its real output", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  await ensureBaseImage();
  const canary = tempDir("bach-canary-");
  fs.writeFileSync(path.join(canary, "secret"), "SECRET-TOKEN\n");
  fs.mkdirSync(path.join(canary, "folder"));
  fs.writeFileSync(path.join(canary, "folder", "keep"), "kept\n");
  const before = snapshot(canary);

  const task = taskFolder(
    { binary: "node", args: ["hostile.js"], image: BASE_IMAGE, env: { CANARY: canary }, retries: 1, timeout: "30s", hardware: { network: null } },
    { "hostile.js": HOSTILE },
  );
  const input = path.join(tempDir(), "lines.txt");
  fs.writeFileSync(input, Array.from({ length: 600 }, (_, i) => `line ${i}\n`).join(""));
  // Small chunks and one slot: several attempts in one container, each after the last one's tries.
  const r = await runBach(["task-run", "--data", input, "-p", "1", "--chunk-size", "1k", "--no-progress"], { cwd: task, timeoutMs: 120_000 });

  assert.deepEqual(snapshot(canary), before, "the canary folder on the host changed");
  assert.ok(!r.stdout.includes("SECRET-TOKEN"), "a host file became the task's output");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
});
