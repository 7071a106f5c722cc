// What the three programs share about Docker Engine: reaching it (DOCKER_HOST or the local socket),
// knowing whether it answers, naming images by their content digest, and moving an image in and out
// of the engine as a stream (docker save / load), never held whole in memory.
import type Docker from "dockerode";
import type { Readable } from "node:stream";
import { BachError, ExitStatus, InputError } from "./errors";

/** The image the project builds for its examples and tests (`bach image base`). */
export const BASE_IMAGE = "bach/base:latest";
/** The uid and gid chunks run as inside containers (never root). */
export const CONTAINER_USER = "10001:10001";
/** Every container Bach starts carries this label, so a restarted worker can find what it left. */
export const LABEL = "org.bach.worker";

/**
 * dockerode is loaded on first use: it takes ~0.2 s to load, which every command and every worker
 * would otherwise pay even when no task runs in a container.
 */
export function connectDocker(): Docker {
  const Dockerode = require("dockerode") as typeof Docker;
  return new Dockerode();
}

export function engineName(): string {
  return process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
}

/** True when an engine answers within `timeoutMs`. */
export async function dockerAnswers(docker: Docker, timeoutMs = 3000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([docker.ping().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class DockerUnavailableError extends BachError {
  constructor(what: string) {
    super(`${what} needs Docker Engine, and none answers at ${engineName()} (start dockerd, or set DOCKER_HOST)`, ExitStatus.badInput, "no-docker");
  }
}

export async function requireDocker(what: string): Promise<Docker> {
  const docker = connectDocker();
  if (!(await dockerAnswers(docker))) throw new DockerUnavailableError(what);
  return docker;
}

/** The content digest (`sha256:…`) of a local image, or null when the engine lacks it. */
export async function imageId(docker: Docker, name: string): Promise<string | null> {
  try {
    const info = await docker.getImage(name).inspect();
    return info.Id;
  } catch (err) {
    if (statusCode(err) === 404) return null;
    throw err;
  }
}

/** Resolves the bachfile's `image` to its digest, or says how to get the image. */
export async function resolveImage(docker: Docker, name: string): Promise<string> {
  const id = await imageId(docker, name);
  if (id) return id;
  const hint = name === BASE_IMAGE || name === "bach/base" ? "build it with `bach image base`" : "build or load it first; Bach never pulls from a registry";
  throw new InputError(`image ${name} is not in the local Docker Engine: ${hint}`, { field: "image" });
}

/** `docker save` of one image, as a stream of tar bytes. */
export async function saveImage(docker: Docker, id: string): Promise<Readable> {
  return (await docker.getImage(id).get()) as Readable;
}

/** `docker load` from a stream of tar bytes; resolves once the engine has read and stored it all. */
export async function loadImage(docker: Docker, tar: Readable): Promise<void> {
  const progress = (await docker.loadImage(tar)) as Readable;
  await followProgress(docker, progress);
}

/** Waits for the end of an engine progress stream (build, load, import) and throws its first error. */
export function followProgress(docker: Docker, stream: NodeJS.ReadableStream, onLine?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null, events: { error?: string; errorDetail?: { message?: string } }[]) => {
        if (err) return reject(err);
        const failed = events.find((e) => e.error || e.errorDetail);
        if (failed) return reject(new Error(failed.errorDetail?.message ?? failed.error));
        resolve();
      },
      (event: { stream?: string; status?: string }) => {
        const line = (event.stream ?? event.status ?? "").trimEnd();
        if (line && onLine) onLine(line);
      },
    );
  });
}

export function statusCode(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "statusCode" in err ? Number((err as { statusCode: unknown }).statusCode) : undefined;
}
