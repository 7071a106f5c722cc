// Docker Engines for the container tests: whether the machine's engine answers (skip, or fail under
// BACH_REQUIRE_DOCKER=1), the project's base image, and a second engine on the same machine that stands
// for another machine without our images (its own data root, exec root, pidfile and socket).
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { TestContext } from "node:test";
import Docker from "dockerode";
import { BASE_IMAGE, connectDocker, dockerAnswers, engineName, imageId } from "../core/docker";
import { bin, waitFor } from "./harness";

export async function dockerOrSkip(t: TestContext): Promise<boolean> {
  if (await dockerAnswers(connectDocker())) return true;
  if (process.env.BACH_REQUIRE_DOCKER === "1") throw new Error(`BACH_REQUIRE_DOCKER=1 but no Docker Engine answers at ${engineName()}`);
  t.skip("no Docker Engine answers (start dockerd; BACH_REQUIRE_DOCKER=1 makes this a failure)");
  return false;
}

let baseImage: Promise<void> | null = null;

/** Builds bach/base with `bach image base` when the engine lacks it (once per test process). */
export function ensureBaseImage(): Promise<void> {
  baseImage ??= (async () => {
    if (await imageId(connectDocker(), BASE_IMAGE)) return;
    const r = spawnSync(process.execPath, [bin.bach, "image", "base"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`bach image base failed: ${r.stderr}`);
  })();
  return baseImage;
}

export interface Engine {
  /** For DOCKER_HOST. */
  host: string;
  stop(): Promise<void>;
}

/**
 * A second dockerd with its own state under a fresh folder: no bridge and no iptables rules, so it
 * touches no network of the host; its own managed containerd under its exec root.
 */
export async function startSecondEngine(): Promise<Engine> {
  // Unix socket paths must stay under 108 bytes: keep the folder short.
  const dir = fs.mkdtempSync("/tmp/bde-");
  const socket = path.join(dir, "docker.sock");
  const host = `unix://${socket}`;
  const proc = spawn(
    "dockerd",
    ["--data-root", path.join(dir, "data"), "--exec-root", path.join(dir, "exec"), "--pidfile", path.join(dir, "docker.pid"), "-H", host, "--bridge=none", "--iptables=false", "--ip-masq=false"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  proc.stderr?.on("data", (b: Buffer) => (log = (log + b.toString()).slice(-8000)));
  const killNow = () => proc.exitCode === null && proc.signalCode === null && proc.kill("SIGKILL");
  process.on("exit", killNow);
  const docker = new Docker({ socketPath: socket });
  try {
    await waitFor("the second dockerd to answer", async () => proc.exitCode === null && fs.existsSync(socket) && (await dockerAnswers(docker, 1000)), 60_000);
  } catch (err) {
    killNow();
    throw new Error(`${(err as Error).message}; its log ends: ${log.slice(-1500)}`);
  }
  return {
    host,
    async stop() {
      for (const c of await docker.listContainers({ all: true })) {
        // 404 or 409: gone already, or a worker is removing it.
        await docker.getContainer(c.Id).remove({ force: true }).catch((err: { statusCode?: number }) => {
          if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
        });
      }
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once("exit", resolve));
        proc.kill("SIGTERM");
        const timer = setTimeout(killNow, 20_000);
        await exited;
        clearTimeout(timer);
      }
      process.off("exit", killNow);
      // Overlay mounts left under the data root would stop rm; unmount them, deepest first.
      const mounts = fs.readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(dir)).sort().reverse();
      for (const m of mounts) spawnSync("umount", ["-l", m]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
