// One logger shape for the three programs: pino, to stderr (stdout belongs to task output), level from
// BACH_LOG_LEVEL or the caller's default.
import pino, { type Logger } from "pino";

export function makeLogger(name: string, defaultLevel: string): Logger {
  return pino({ name, level: process.env.BACH_LOG_LEVEL ?? defaultLevel }, pino.destination({ dest: 2, sync: true }));
}
