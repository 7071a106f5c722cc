// `bach image base`: the project's own base image, made without any registry. It copies this machine's
// node, a POSIX shell and a few text tools with exactly the shared libraries `ldd` says they load into
// a root filesystem, adds a non-root user, and `docker import`s the tar (sorted paths, fixed times; the
// engine stamps the import's own time, so each build gets a new digest).
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { BASE_IMAGE, CONTAINER_USER, followProgress, imageId, requireDocker } from "../core/docker";
import { InputError } from "../core/errors";

/** Programs the base image carries: node for the examples, sh for Bach's runner, and text tools. */
const PROGRAMS = ["sh", "awk", "cat", "grep", "sed", "head", "tail", "sleep", "env", "ls", "tr", "cut", "sort", "wc", "dd", "true", "false"];

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    const full = path.join(dir, program);
    try {
      fs.accessSync(full, fs.constants.X_OK);
      return full;
    } catch {
      continue; // not in this PATH entry
    }
  }
  return null;
}

/** The shared libraries (and the loader) a dynamically linked binary needs, as ldd resolves them. */
function librariesOf(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync("ldd", [binary], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch {
    return []; // statically linked ("not a dynamic executable")
  }
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

const TEXT_FILES: Record<string, string> = {
  "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nbach:x:10001:10001:bach:/scratch:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
  "etc/group": "root:x:0:\nbach:x:10001:\nnogroup:x:65534:\n",
  "etc/hosts": "127.0.0.1 localhost\n",
};

/** Builds (or rebuilds) the base image and returns its digest. */
export async function buildBaseImage(tag = BASE_IMAGE, log: (line: string) => void = () => {}): Promise<string> {
  const docker = await requireDocker("bach image base");
  const files = new Map<string, string>(); // path in the image -> file on this machine
  const add = (inImage: string, source: string) => files.set(inImage.replace(/^\/+/, ""), fs.realpathSync(source));
  add("/usr/local/bin/node", process.execPath);
  for (const lib of librariesOf(process.execPath)) add(lib, lib);
  for (const program of PROGRAMS) {
    const found = which(program);
    if (!found) throw new InputError(`bach image base: ${program} is not installed on this machine (apt-get install ${program === "awk" ? "gawk" : "coreutils"})`);
    add(`/usr/bin/${program}`, found);
    if (program === "sh") add("/bin/sh", found);
    for (const lib of librariesOf(found)) add(lib, lib);
  }

  const pack = tar.pack();
  const parts = [...files.keys(), ...Object.keys(TEXT_FILES)];
  const dirs = new Set<string>(["tmp", "scratch", "bach", "root"]);
  for (const p of parts) for (let d = path.posix.dirname(p); d !== "."; d = path.posix.dirname(d)) dirs.add(d);
  const header = { mtime: new Date(0), uid: 0, gid: 0 };
  for (const dir of [...dirs].sort()) {
    const sticky = dir === "tmp" || dir === "scratch";
    pack.entry({ ...header, name: `${dir}/`, type: "directory", mode: sticky ? 0o1777 : 0o755 });
  }
  const importing = docker.importImage(pack as unknown as NodeJS.ReadableStream, { repo: tag.split(":")[0], tag: tag.split(":")[1] ?? "latest", changes: ["ENV PATH=/usr/local/bin:/usr/bin:/bin", `USER ${CONTAINER_USER}`, "WORKDIR /scratch"] } as object);
  for (const name of Object.keys(TEXT_FILES).sort()) pack.entry({ ...header, name, mode: 0o644 }, TEXT_FILES[name]);
  for (const name of [...files.keys()].sort()) {
    const source = files.get(name) as string;
    const stat = fs.statSync(source);
    const entry = pack.entry({ ...header, name, size: stat.size, mode: 0o755 });
    await pipeline(fs.createReadStream(source), entry);
  }
  pack.finalize();
  await followProgress(docker, (await importing) as unknown as Readable, log);
  const id = await imageId(docker, tag);
  if (!id) throw new Error(`docker import reported success but ${tag} is not there`);
  return id;
}
