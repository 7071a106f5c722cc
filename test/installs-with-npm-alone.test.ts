// Bach installs with npm alone: the proto code generates with no protoc on PATH, `npm pack` ships the three
// programs with every module they load, and the awk example runs under mawk, a fresh Debian's awk.
// .ci/run proves the rest end to end (the README's commands in a clean copy, `npm install -g` of the tarball).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { exampleDir, gdeltFile, root, runBach, tempDir } from "./harness";

/** Where `name` is on this process's PATH, or null. */
function which(name: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A folder of links to the named programs, to be a whole PATH. */
function pathOf(programs: Record<string, string>): string {
  const dir = tempDir("bach-path-");
  for (const [name, target] of Object.entries(programs)) fs.symlinkSync(target, path.join(dir, name));
  return dir;
}

test("the proto code generates with nothing but node on PATH: no protoc", () => {
  const copy = tempDir("bach-gen-");
  for (const f of ["scripts/gen-proto", "buf.gen.yaml", "proto"]) fs.cpSync(path.join(root, f), path.join(copy, f), { recursive: true });
  fs.symlinkSync(path.join(root, "node_modules"), path.join(copy, "node_modules"));
  const dirname = which("dirname");
  assert.ok(dirname, "dirname (coreutils) is on PATH");
  const r = spawnSync("/bin/bash", [path.join(copy, "scripts", "gen-proto")], {
    env: { PATH: pathOf({ node: process.execPath, dirname }), HOME: tempDir("bach-gen-home-") },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `gen-proto failed: ${r.stderr}`);
  const generated = (dir: string) => fs.readFileSync(path.join(dir, "core", "generated", "bach.ts"), "utf8");
  assert.equal(generated(copy), generated(root), "the same code as the build's");
});

test("npm pack ships the three programs and every module they load, and nothing of the tests", () => {
  // --ignore-scripts: prepack would rebuild dist/ under the running tests; the list is what matters here.
  const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as { files: { path: string; mode: number }[] }[];
  const files = new Map(pack.files.map((f) => [f.path, f.mode]));
  const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { bin: Record<string, string> };
  assert.deepEqual(Object.keys(manifest.bin).sort(), ["bach", "bach-coordinator", "bach-worker"]);
  for (const [name, file] of Object.entries(manifest.bin)) {
    assert.ok(files.has(file), `${name}'s ${file} is in the tarball`);
  }
  if (fs.existsSync(path.join(root, "dist", "worker", "bach-keeper"))) {
    assert.equal((files.get("dist/worker/bach-keeper") ?? 0) & 0o111, 0o111, "the keeper is in the tarball, executable");
  }
  // Every relative require of a packed module resolves to a packed file: nothing a program loads is left out.
  const missing: string[] = [];
  for (const file of files.keys()) {
    if (!file.endsWith(".js")) continue;
    const text = fs.readFileSync(path.join(root, file), "utf8");
    for (const [, spec] of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
      const target = path.posix.join(path.posix.dirname(file), spec);
      if (![target, `${target}.js`, `${target}/index.js`].some((t) => files.has(t))) missing.push(`${file} -> ${spec}`);
    }
  }
  assert.deepEqual(missing, [], "modules the packed programs load but the tarball lacks");
  const stray = [...files.keys()].filter((f) => f.startsWith("dist/test/") || f.startsWith("dist/scripts/") || f.endsWith(".ts"));
  assert.deepEqual(stray, [], "tests, scripts and sources stay out of the tarball");
});

test("the awk example runs under mawk, a fresh Debian's awk, with the output its bachfile promises", async (t) => {
  const mawk = which("mawk");
  if (!mawk) {
    if (process.env.BACH_CI === "1") throw new Error("BACH_CI=1 but mawk is not installed (.ci/run installs it)");
    t.skip("mawk is not installed (apt-get install mawk; BACH_CI=1 makes this a failure)");
    return;
  }
  const input = gdeltFile(4 * 1024 * 1024);
  // What the bachfile says the task keeps: rows whose first actor (column 7) is a military.
  const rows = fs.readFileSync(input, "latin1").split("\n").slice(0, -1);
  const expected = rows.filter((row) => row.split("\t")[6].endsWith("MILITARY")).map((row) => `${row}\n`).join("");
  assert.ok(expected.length > 0, "the input has military rows");
  // The program is `awk` from PATH: the worker's PATH, and so the attempts', finds mawk first.
  const awkIsMawk = pathOf({ awk: mawk });
  const r = await runBach(["task-run", "--data", input, "-p", "2", "--chunk-size", "512k"], {
    cwd: exampleDir("awk-filter"),
    env: { PATH: `${awkIsMawk}:${process.env.PATH ?? ""}` },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString("latin1"), expected);
});
