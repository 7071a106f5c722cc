// What `bach task-build` and `bach task-run` share: check the bachfile, build or find the task's image
// (a `dockerfile` is built with the task folder as its context; an `image` is looked up), pack the folder
// into a content-addressed bundle that records the image's digest, and upload what a coordinator lacks.
import fs from "node:fs";
import path from "node:path";
import { loadBachfile, type Bachfile } from "../core/bachfile";
import { listTaskFiles, packBundle, type Bundle } from "../core/bundle";
import { followProgress, imageId, requireDocker, resolveImage, saveImage } from "../core/docker";
import { InputError } from "../core/errors";
import type { CoordinatorApi } from "./api";
import { bachHome } from "./embedded";

export interface PreparedTask {
  bachfile: Bachfile;
  bundle: Bundle;
  /** The image the task runs in, by name and content digest; null for plain processes. */
  image: { name: string; id: string } | null;
}

/** Where a built task image is tagged: one tag per task name, moved by each build. */
function builtTag(b: Bachfile): string {
  return `bach-task/${b.logicalName.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "") || "task"}:latest`;
}

/**
 * `input` names the task's input files: when they sit in the task folder they stay out of the bundle
 * (every worker would download them with it), as does Bach's home, and `say` tells the user once.
 */
export async function prepareTask(dir: string, onBuildLine: (line: string) => void = () => {}, input: readonly string[] = [], say: (line: string) => void = () => {}): Promise<PreparedTask> {
  const bachfile = loadBachfile(dir);
  const bundles = path.join(bachHome(), "bundles");
  const leaveOut = [bachHome(), ...input];
  const inFolder = new Set(listTaskFiles(dir, [bachHome()]).map((name) => path.resolve(dir, name)));
  const left = input.filter((f) => inFolder.has(path.resolve(f)));
  if (left.length) say(`${left.map((f) => path.relative(dir, f)).join(", ")} ${left.length === 1 ? "is" : "are"} the task's input: left out of the bundle that workers download`);
  if (!bachfile.image && !bachfile.dockerfile) return { bachfile, bundle: await packBundle(dir, bundles, {}, leaveOut), image: null };

  const docker = await requireDocker(`the bachfile's "${bachfile.image ? "image" : "dockerfile"}"`);
  let image: { name: string; id: string };
  if (bachfile.image) {
    image = { name: bachfile.image, id: await resolveImage(docker, bachfile.image) };
  } else {
    const dockerfile = (bachfile.dockerfile as string).replace(/^\.\//, "");
    if (!listTaskFiles(dir).includes(dockerfile)) {
      throw new InputError(`${path.join(dir, "bachfile.json")}: dockerfile: ${dockerfile} is not in the task folder (or .bachignore leaves it out)`, { field: "dockerfile" });
    }
    // The build context is exactly what workers get: the folder minus .bachignore.
    const context = await packBundle(dir, bundles, {}, leaveOut);
    const name = builtTag(bachfile);
    const lines: string[] = [];
    const build = await docker.buildImage(fs.createReadStream(context.file), { t: name, dockerfile, pull: false, rm: true, forcerm: true } as object);
    try {
      await followProgress(docker, build, (line) => {
        lines.push(line);
        onBuildLine(line);
      });
    } catch (err) {
      const why = (err as Error).message.trim();
      const hint = /pull access denied|not found|no such image/i.test(why) ? " (no registry is reachable: build the base with `bach image base` and start FROM bach/base)" : "";
      throw new InputError(`docker build of ${dockerfile} failed: ${why}${hint}`, { field: "dockerfile" });
    }
    const id = await imageId(docker, name);
    if (!id) throw new Error(`docker build reported success but ${name} is not there: ${lines.slice(-3).join(" / ")}`);
    image = { name, id };
  }
  const bundle = await packBundle(dir, bundles, { ".bach/image.json": `${JSON.stringify(image)}\n` }, leaveOut);
  return { bachfile, bundle, image };
}

/** Uploads the bundle, and the image when the coordinator's workers may not share this engine. */
export async function uploadTask(api: CoordinatorApi, task: PreparedTask, withImage: boolean): Promise<void> {
  if (!(await api.hasBundle(task.bundle.hash))) await api.putBundle(task.bundle.hash, task.bundle.file);
  if (withImage && task.image && !(await api.hasImage(task.image.id))) {
    const docker = await requireDocker("uploading the task's image");
    await api.putImage(task.image.id, await saveImage(docker, task.image.id));
  }
}
