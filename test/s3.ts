// A real S3 server for tests: scripts/s3-server (a one-node Ceph with radosgw) on free loopback ports in a
// temp folder, its daemons killed and the folder removed when the test process exits. Without radosgw
// it skips (null), unless BACH_REQUIRE_S3=1, as in CI.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { atExit, freePort, root, tempDir } from "./harness";

export interface S3Server {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** What a bach process needs to use this server. */
  env: NodeJS.ProcessEnv;
  /** How long the start took. */
  startMs: number;
  stop(): Promise<void>;
}

const script = path.join(root, "scripts", "s3-server");
const install = "apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl";

export async function startS3(): Promise<S3Server | null> {
  if (spawnSync("sh", ["-c", "command -v radosgw"]).status !== 0) {
    if (process.env.BACH_REQUIRE_S3 === "1") throw new Error(`BACH_REQUIRE_S3=1 but radosgw is not installed (${install})`);
    process.stderr.write(`# skipping the S3 tests: radosgw is not installed (${install}; BACH_REQUIRE_S3=1 makes this a failure)\n`);
    return null;
  }
  const began = Date.now();
  const dir = tempDir("bach-s3-");
  // Registered after the folder's removal, so it runs before it.
  atExit(() => killDaemons(dir));
  const [s3Port, monPort] = await twoFreePorts();
  const proc = spawn("bash", [script, "start", dir], { env: { ...process.env, S3_PORT: String(s3Port), MON_PORT: String(monPort) }, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  proc.stdout.resume();
  const limit = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [code] = (await once(proc, "close")) as [number | null];
  clearTimeout(limit);
  if (code !== 0) throw new Error(`scripts/s3-server start failed (exit ${code}):\n${err}`);
  const env = parseEnv(fs.readFileSync(path.join(dir, "env"), "utf8"));
  const server: S3Server = {
    endpoint: env.S3_ENDPOINT,
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    region: env.AWS_REGION,
    env: {
      AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY,
      AWS_REGION: env.AWS_REGION,
      AWS_ENDPOINT_URL: env.S3_ENDPOINT,
      BACH_S3_PATH_STYLE: "1",
    },
    startMs: Date.now() - began,
    async stop() {
      killDaemons(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** An SDK client of the server's user, for a test to make buckets and objects with. */
export function s3Client(server: S3Server): S3Client {
  // As core/s3.ts: no warning paragraph about Node 20 in the test's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** Puts the objects into the bucket (made if absent), 32 at a time. */
export async function putObjects(server: S3Server, bucket: string, objects: Record<string, Buffer>): Promise<void> {
  const client = s3Client(server);
  try {
    const exists = await client.send(new HeadBucketCommand({ Bucket: bucket })).then(
      () => true,
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        if (err.$metadata?.httpStatusCode === 404) return false;
        throw err;
      },
    );
    if (!exists) await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const keys = Object.keys(objects);
    const next = { i: 0 };
    const putter = async () => {
      for (let i = next.i++; i < keys.length; i = next.i++) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: keys[i], Body: objects[keys[i]] }));
      }
    };
    await Promise.all(Array.from({ length: 32 }, putter));
  } finally {
    client.destroy();
  }
}

/** SIGKILLs the daemons whose pid files are in `dir` and that name its ceph.conf (a reused pid is not ours). */
function killDaemons(dir: string): void {
  for (const name of ["client.rgw", "osd.0", "mon.a"]) {
    let pid: number;
    let cmdline: string;
    try {
      pid = Number(fs.readFileSync(path.join(dir, "run", `${name}.pid`), "utf8"));
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // never started, or gone
      throw err;
    }
    if (cmdline.includes(path.join(dir, "ceph.conf"))) process.kill(pid, "SIGKILL");
  }
}

async function twoFreePorts(): Promise<[number, number]> {
  for (;;) {
    const a = await freePort();
    const b = await freePort();
    if (a !== b) return [a, b];
  }
}

/** `export NAME=value` lines, as scripts/s3-server writes them. */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]] = m[2];
  for (const name of ["S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]) {
    if (!env[name]) throw new Error(`scripts/s3-server wrote no ${name} in its env file:\n${text}`);
  }
  return env;
}
