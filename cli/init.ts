// `bach init`: finds the program a task folder holds (a script, by its extension, or an executable),
// writes a bachfile that runs it, or a starter program when there is none, and says what to run next.
// It never overwrites a program, nor a bachfile.json unless told to (--force).
import fs from "node:fs";
import path from "node:path";
import { bachfileTemplate } from "../core/bachfile";
import { InputError } from "../core/errors";

export interface Program {
  file: string;
  binary: string;
  args: string[];
}

const INTERPRETERS: Record<string, string> = { ".js": "node", ".mjs": "node", ".cjs": "node", ".py": "python3", ".sh": "sh", ".rb": "ruby", ".pl": "perl" };
/** Files with a program's extension that are not the task's program. */
const NOT_PROGRAMS = /\.(config|test|spec)\.[cm]?js$|^(setup|conftest|__init__)\.py$/;
/** Names that say "the main program": picked first when there are several. */
const MAIN_NAMES = new Set(["main", "index", "bin", "map", "mapper", "run"]);

const STARTER = { file: "upper.js", binary: "node", args: ["upper.js"] };
const STARTER_TEXT = `// A starter Bach program: Bach runs it once per chunk of records, the chunk on stdin; it writes each
// line upper-cased to stdout and exits 0. Replace it with yours, in any language: records in on stdin,
// results out on stdout, exit 0 when the chunk is done (then change "binary" and "args" in bachfile.json).
process.stdin.setEncoding("utf8");
process.stdin.on("data", (text) => process.stdout.write(text.toUpperCase()));
`;

/** The programs in dir (not its subfolders), the likeliest main program first. */
export function programsIn(dir: string): Program[] {
  const programs: Program[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const name = entry.name;
    if (!entry.isFile() || name.startsWith(".") || name === "bachfile.json" || NOT_PROGRAMS.test(name)) continue;
    const interpreter = INTERPRETERS[path.extname(name)];
    if (interpreter) programs.push({ file: name, binary: interpreter, args: [name] });
    else if (fs.statSync(path.join(dir, name)).mode & 0o111) programs.push({ file: name, binary: `./${name}`, args: [] });
  }
  const folder = path.basename(dir);
  const rank = (p: Program) => {
    const stem = path.basename(p.file, path.extname(p.file));
    return MAIN_NAMES.has(stem) || stem === folder ? 0 : 1;
  };
  return programs.sort((a, b) => rank(a) - rank(b) || (a.file < b.file ? -1 : 1));
}

/** Writes dir's bachfile (and the starter program when dir has none); returns the lines to print. */
export function initTask(dir: string, force: boolean): string[] {
  const file = path.join(dir, "bachfile.json");
  if (fs.existsSync(file) && !force) throw new InputError("bachfile.json exists already (bach init --force replaces it)", { path: file });
  const [program, ...others] = programsIn(dir);
  const lines: string[] = [];
  let chosen = program;
  if (!chosen) {
    // "wx": should one appear meanwhile, it is theirs, not ours to replace.
    fs.writeFileSync(path.join(dir, STARTER.file), STARTER_TEXT, { flag: "wx" });
    lines.push(`wrote ${STARTER.file}: a starter program that upper-cases each line (replace it with yours)`);
    chosen = STARTER;
  }
  fs.writeFileSync(file, bachfileTemplate(path.basename(dir), chosen), { flag: force ? "w" : "wx" });
  lines.push(`wrote bachfile.json: it runs ${[chosen.binary, ...chosen.args].join(" ")} on each chunk`);
  if (others.length) lines.push(`other programs here: ${others.map((p) => p.file).join(", ")} (to run one of them, change "binary" and "args" in bachfile.json)`);
  lines.push(chosen === STARTER ? "next: echo hello | bach task-run" : "next: bach task-run --data FILE");
  return lines;
}
