// What the three entry programs share about the command line: where the coordinator is, the token,
// and how a failure ends the process (one line and a documented status for a user's mistake; a stack
// only for a bug in Bach).
import { type Command, CommanderError } from "commander";
import { BachError, DiskFullError, diskFullMessage, ExitStatus, InputError, isDiskFull } from "./errors";
import { isServiceError, userError } from "./rpc";
import { hideTokenFlag, readToken } from "./secrets";

export const DEFAULT_PORT = 7070;

export function coordinatorAddress(flag: string | undefined): string | null {
  const address = flag ?? process.env.BACH_COORDINATOR ?? null;
  if (address === null) return null;
  if (!/^[^\s:]+:\d+$/.test(address) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(address)) {
    throw new InputError(`--coordinator ${address}: expected HOST:PORT, e.g. 192.168.0.10:${DEFAULT_PORT}`);
  }
  return address;
}

/** The token from --token-file, --token, $BACH_TOKEN_FILE or $BACH_TOKEN (see core/secrets.ts). */
export function tokenFrom(flag: string | undefined, file?: string): string {
  return readToken(flag, file ?? process.env.BACH_TOKEN_FILE);
}

export const TOKEN_FILE_HELP = "read the token from the first line of FILE (safer than --token, which other users of the machine can see in the process list; default $BACH_TOKEN_FILE)";

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InputError(`${flag} ${value}: expected a whole number of at least 1`);
  return n;
}

/**
 * Every usage mistake commander finds (an unknown option or command, a missing value, an extra
 * argument) prints one line, `PROGRAM: <what is wrong>`, and one pointing at the help of the command
 * at fault, never the whole help; it ends with status 2 (see runMain). Call it once every command
 * is added.
 */
export function oneLineUsageErrors(program: Command): Command {
  const name = program.name();
  const setUp = (cmd: Command, usage: string): void => {
    cmd
      .exitOverride()
      // commander puts its did-you-mean on a line of its own: it belongs to the error's line.
      .configureOutput({ outputError: (str, write) => write(`${name}: ${str.replace(/^error: /, "").replace(/\n\(Did you mean (.+)\?\)/, " (did you mean $1?)")}`) })
      .showHelpAfterError(`(see ${usage} --help)`);
    for (const sub of cmd.commands) setUp(sub, `${usage} ${sub.name()}`);
  };
  setUp(program, name);
  return program;
}

/** Runs a program's main and turns what it throws into an exit status. */
export function runMain(program: string, main: () => Promise<void>, address?: () => string): void {
  hideTokenFlag();
  // Output into a pipe whose reader has gone (`--help | head -1`) ends the program quietly, as SIGPIPE
  // would; a command that handles it itself (task-run cancels its task first) adds its own listener.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (process.stdout.listenerCount("error") > 1) return;
    if (err.code === "EPIPE") process.exit(141);
    throw err;
  });
  main().then(
    // Exit only once stdout has taken everything written to it.
    () => process.stdout.write("", () => process.exit(ExitStatus.done)),
    (err: unknown) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : ExitStatus.badInput);
      const e = isServiceError(err) ? userError(err, address?.() ?? "?") : isDiskFull(err) ? new DiskFullError(diskFullMessage(err)) : err;
      if (e instanceof BachError) {
        process.stderr.write(`${program}: ${e.message.split("\n").join(`\n${program}: `)}\n`);
        process.exit(e.exitStatus);
      }
      process.stderr.write(`${program}: internal error (a bug in Bach; please report it):\n${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(70);
    },
  );
}
