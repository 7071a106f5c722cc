// Any image that can run the program runs the task: an image holding nothing but one static program
// (no shell, no libraries, no /etc) gives the same output as the program run once, over several
// attempts in one container. Skips without a Docker Engine unless BACH_REQUIRE_DOCKER=1.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { dockerOrSkip } from "./engines";
import { runBach, taskFolder, tempDir } from "./harness";

const UPPER_C = `
#include <unistd.h>
int main(void) {
  char b[65536];
  ssize_t n;
  while ((n = read(0, b, sizeof b)) > 0) {
    for (ssize_t i = 0; i < n; i++) if (b[i] >= 'a' && b[i] <= 'z') b[i] -= 32;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(1, b + off, n - off);
      if (w < 0) return 1;
      off += w;
    }
  }
  return n < 0;
}
`;

const IMAGE = `bach-test/no-shell:${process.pid}`;

after(() => {
  spawnSync("docker", ["image", "rm", "--force", IMAGE], { stdio: "ignore" });
});

test("an image with only a static program and no shell runs a task with the right output", async (t) => {
  if (!(await dockerOrSkip(t))) return;
  const build = tempDir("bach-noshell-");
  fs.writeFileSync(path.join(build, "upper.c"), UPPER_C);
  const rootfs = path.join(build, "rootfs");
  fs.mkdirSync(path.join(rootfs, "usr", "local", "bin"), { recursive: true });
  execFileSync("cc", ["-static", "-O2", "-s", "-o", path.join(rootfs, "usr", "local", "bin", "upper"), path.join(build, "upper.c")]);
  const tar = path.join(build, "image.tar");
  execFileSync("tar", ["-C", rootfs, "-cf", tar, "."]);
  execFileSync("docker", ["import", tar, IMAGE], { stdio: "ignore" });
  const listing = execFileSync("tar", ["-tf", tar], { encoding: "utf8" });
  assert.doesNotMatch(listing, /\bsh$/m, "the image must hold no shell");

  const task = taskFolder({ binary: "upper", image: IMAGE, retries: 0, timeout: "30s", hardware: { network: null } });
  const input = path.join(tempDir(), "words.txt");
  fs.writeFileSync(input, Array.from({ length: 800 }, (_, i) => `word ${i}\n`).join(""));
  const r = await runBach(["task-run", "--data", input, "-p", "1", "--chunk-size", "2k", "--no-progress"], { cwd: task, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8").toUpperCase());
});
