// A bundle tar is input from whoever uploaded it: unpacking takes only regular files and folders whose
// names stay inside the target, with no mode bit beyond rwx, and refuses anything else with a
// BadBundleError naming the entry, leaving no staging folder and no unhandled rejection behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import tar from "tar-stream";
import { BadBundleError, unpackBundle } from "../core/bundle";
import { craftTar, tempDir, type TarEntrySpec } from "./harness";

/** Runs `fn` and returns the unhandled rejections seen meanwhile (and for a moment after). */
async function rejectionsDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown) => seen.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    await fn();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    process.off("unhandledRejection", onRejection);
  }
  return seen;
}

/** Unpacks into a fresh sandbox; returns the error (or null) and what the sandbox holds afterwards. */
async function unpackInSandbox(tarFile: string): Promise<{ error: unknown; left: string[]; target: string; rejections: unknown[] }> {
  const sandbox = tempDir("bach-sandbox-");
  const target = path.join(sandbox, "inside", "bundle");
  fs.mkdirSync(path.dirname(target));
  let error: unknown = null;
  const rejections = await rejectionsDuring(async () => {
    await unpackBundle(tarFile, target).catch((err: unknown) => {
      error = err;
    });
  });
  const left = fs.readdirSync(sandbox, { recursive: true, encoding: "utf8" }).sort();
  return { error, left, target, rejections };
}

const hostile: [string, TarEntrySpec[], RegExp][] = [
  ["a name with ..", [{ name: "ok.txt", body: "fine" }, { name: "../escaped.txt", body: "x" }], /"\.\.\/escaped\.txt"/],
  ["a .. in the middle", [{ name: "a/../../escaped.txt", body: "x" }], /"a\/\.\.\/\.\.\/escaped\.txt"/],
  ["an absolute name", [{ name: "/tmp/bach-absolute-escape.txt", body: "x" }], /"\/tmp\/bach-absolute-escape\.txt"/],
  ["an empty name", [{ name: "", body: "x" }], /""/],
  ["a name that is only dots and slashes", [{ name: "./", type: "directory" }], /"\.\/"/],
  ["a symlink", [{ name: "link", type: "symlink", linkname: "/etc/passwd" }], /"link".*symlink/],
  ["a symlink then a file through it", [{ name: "up", type: "symlink", linkname: ".." }, { name: "up/escaped.txt", body: "x" }], /"up".*symlink/],
  ["a hard link", [{ name: "a.txt", body: "x" }, { name: "hard", type: "link", linkname: "a.txt" }], /"hard".*link/],
  ["a character device", [{ name: "null", type: "character-device" }], /"null".*character-device/],
  ["a block device", [{ name: "disk", type: "block-device" }], /"disk".*block-device/],
  ["a fifo", [{ name: "pipe", type: "fifo" }], /"pipe".*fifo/],
  ["a file where a folder was", [{ name: "d/x.txt", body: "x" }, { name: "d", body: "y" }], /"d"/],
  ["a folder under a file", [{ name: "f", body: "x" }, { name: "f/g.txt", body: "y" }], /"f\/g\.txt"/],
];

for (const [what, entries, names] of hostile) {
  test(`a bundle with ${what} is refused with a BadBundleError naming the entry, leaving nothing behind`, async () => {
    const { error, left, rejections } = await unpackInSandbox(await craftTar(entries));
    assert.ok(error instanceof BadBundleError, `expected a BadBundleError, got ${String(error)}`);
    assert.match(error.message, names);
    assert.deepEqual(left, ["inside"], "no staging folder, nothing outside the target");
    assert.deepEqual(rejections, [], "no unhandled rejection");
    assert.ok(!fs.existsSync("/tmp/bach-absolute-escape.txt"));
  });
}

test("a bundle that is not a tar is a BadBundleError", async () => {
  const file = path.join(tempDir(), "junk.tar");
  fs.writeFileSync(file, Buffer.alloc(1536, 7));
  const { error, left, rejections } = await unpackInSandbox(file);
  assert.ok(error instanceof BadBundleError, `expected a BadBundleError, got ${String(error)}`);
  assert.deepEqual(left, ["inside"]);
  assert.deepEqual(rejections, []);
});

test("setuid, setgid and sticky bits never survive: files become 0o755 or 0o644, folders 0o755", async () => {
  const { error, target } = await unpackInSandbox(
    await craftTar([
      { name: "bin", type: "directory", mode: 0o7777 },
      { name: "bin/suid", body: "#!/bin/sh\n", mode: 0o4755 },
      { name: "bin/sgid", body: "x", mode: 0o2710 },
      { name: "sticky.txt", body: "y", mode: 0o1666 },
      { name: "only-group-x", body: "z", mode: 0o6010 },
    ]),
  );
  assert.equal(error, null);
  const mode = (name: string) => fs.statSync(path.join(target, name)).mode & 0o7777;
  assert.equal(mode("bin"), 0o755);
  assert.equal(mode("bin/suid"), 0o755);
  assert.equal(mode("bin/sgid"), 0o755);
  assert.equal(mode("sticky.txt"), 0o644);
  assert.equal(mode("only-group-x"), 0o755);
});

// Names built from segments that include the traps (.., ., empty, a leading /), of every entry type,
// with any mode: unpacking either gives a tree of plain files and folders inside the target with clean
// modes, or refuses with a BadBundleError, and never leaves a staging folder or a rejection unhandled.
const segment = fc.constantFrom("a", "b", "c.txt", "..", ".", "");
const entryArb = fc.record({
  name: fc.tuple(fc.boolean(), fc.array(segment, { minLength: 1, maxLength: 4 })).map(([abs, parts]) => (abs ? "/" : "") + parts.join("/")),
  type: fc.constantFrom<tar.Header["type"]>("file", "file", "file", "directory", "directory", "symlink", "link", "fifo", "character-device"),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  body: fc.string({ maxLength: 20 }),
  linkname: fc.constant("a"),
});

test("any bundle unpacks to plain files and folders inside its target, or is refused cleanly", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 6 }), async (entries) => {
      const { error, left, target, rejections } = await unpackInSandbox(await craftTar(entries));
      assert.deepEqual(rejections, [], "no unhandled rejection");
      if (error !== null) {
        assert.ok(error instanceof BadBundleError, `expected a BadBundleError, got ${String(error)}`);
        assert.deepEqual(left, ["inside"]);
        return;
      }
      assert.ok(entries.every((e) => e.type === "file" || e.type === "directory"), "only files and folders are accepted");
      assert.ok(left.every((p) => p === "inside" || p === path.join("inside", "bundle") || p.startsWith(path.join("inside", "bundle") + path.sep)), `outside the target: ${left.join(", ")}`);
      for (const rel of fs.readdirSync(target, { recursive: true, encoding: "utf8" })) {
        const st = fs.lstatSync(path.join(target, rel));
        assert.ok(st.isFile() || st.isDirectory(), `${rel} is a plain file or folder`);
        if (st.isFile()) assert.ok([0o755, 0o644].includes(st.mode & 0o7777), `${rel} has mode ${(st.mode & 0o7777).toString(8)}`);
        else assert.equal(st.mode & 0o7000, 0, `${rel} has no special bits`);
      }
    }),
    { numRuns: 150 },
  );
});
