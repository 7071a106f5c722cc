// What the three entry programs share about the command line: where the coordinator is, the token,
// and how a failure ends the process (one line and a documented status for a user's mistake; a stack
// only for a bug in Bach).
import { CommanderError } from "commander";
import { BachError, ExitStatus, InputError } from "./errors";
import { isServiceError, userError } from "./rpc";

export const DEFAULT_PORT = 7070;

export function coordinatorAddress(flag: string | undefined): string | null {
  const address = flag ?? process.env.BACH_COORDINATOR ?? null;
  if (address === null) return null;
  if (!/^[^\s:]+:\d+$/.test(address) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(address)) {
    throw new InputError(`--coordinator ${address}: expected HOST:PORT, e.g. 192.168.0.10:${DEFAULT_PORT}`);
  }
  return address;
}

export function tokenFrom(flag: string | undefined): string {
  return flag ?? process.env.BACH_TOKEN ?? "";
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InputError(`${flag} ${value}: expected a whole number of at least 1`);
  return n;
}

/** Runs a program's main and turns what it throws into an exit status. */
export function runMain(program: string, main: () => Promise<void>, address?: () => string): void {
  main().then(
    // Exit only once stdout has taken everything written to it.
    () => process.stdout.write("", () => process.exit(ExitStatus.done)),
    (err: unknown) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : ExitStatus.badInput);
      const e = isServiceError(err) ? userError(err, address?.() ?? "?") : err;
      if (e instanceof BachError) {
        process.stderr.write(`${program}: ${e.message.split("\n").join(`\n${program}: `)}\n`);
        process.exit(e.exitStatus);
      }
      process.stderr.write(`${program}: internal error (a bug in Bach; please report it):\n${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(70);
    },
  );
}
