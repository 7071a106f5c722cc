// The cluster's shared token and the per-attempt keys: where a program reads the token from, and how
// secrets are compared. A comparison never returns early, not even on a length mismatch, so timing
// tells an attacker nothing about how much of a guess was right.
import fs from "node:fs";
import { createHash, timingSafeEqual } from "node:crypto";
import { InputError } from "./errors";

/** Constant-time equality of two secrets (both hashed first, so their lengths do not show either). */
export function sameSecret(given: unknown, expected: string): boolean {
  const a = createHash("sha256").update(typeof given === "string" ? given : "").digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b) && typeof given === "string";
}

/**
 * The token, from --token-file FILE (its first line), --token T, or $BACH_TOKEN, in that order. A token
 * given as --token is visible to every user of the machine in the process list: the program hides it
 * from its own command line (see hideTokenFlag) and the help recommends the file or the variable.
 */
export function readToken(flag: string | undefined, file: string | undefined): string {
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      throw new InputError(`--token-file ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, { path: file });
    }
    const token = text.split(/\r?\n/)[0]?.trim() ?? "";
    if (!token) throw new InputError(`--token-file ${file}: the file is empty (it must hold the token on its first line)`, { path: file });
    return token;
  }
  return flag ?? process.env.BACH_TOKEN ?? "";
}

/**
 * Rewrites this process's command line as `ps` and /proc/PID/cmdline show it, with the value of
 * --token replaced by stars: Node rewrites the memory of argv when process.title is set (on Linux,
 * up to the original length, which a shorter line always fits).
 */
export function hideTokenFlag(argv: string[] = process.argv): void {
  const i = argv.findIndex((a) => a === "--token" || a.startsWith("--token="));
  if (i < 0) return;
  const shown = argv.map((a, j) => (j === i && a.startsWith("--token=") ? "--token=***" : j === i + 1 && argv[i] === "--token" ? "***" : a));
  // argv0 as typed (argv[0] is the longer resolved path, which the original memory may not fit).
  process.title = [process.argv0, ...shown.slice(1)].join(" ");
}
