// One logger shape for the three programs: pino, to stderr (stdout belongs to task output), level from
// BACH_LOG_LEVEL or the caller's default. The daemons write JSON lines (for log collectors); the CLI's
// embedded coordinator and worker write one plain line per record, for the person at the terminal.
import fs from "node:fs";
import pino, { type DestinationStream, type Logger } from "pino";

export function makeLogger(name: string, defaultLevel: string, opts: { human?: boolean } = {}): Logger {
  const destination = opts.human ? humanLines(name) : pino.destination({ dest: 2, sync: true });
  return pino({ name, level: process.env.BACH_LOG_LEVEL ?? defaultLevel }, destination);
}

const LEVELS: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warning", 50: "error", 60: "fatal" };
/** pino's own fields, said by the line's shape instead. */
const IMPLIED = new Set(["level", "time", "pid", "hostname", "name", "msg"]);

/** `bach: warning: attempt failed (task t-…, chunk 3, reason: exit 2)` from one pino JSON record. */
export function humanLine(name: string, json: string): string {
  const record = JSON.parse(json) as Record<string, unknown>;
  const level = typeof record.level === "number" ? (LEVELS[record.level] ?? String(record.level)) : "";
  const fields = Object.entries(record)
    .filter(([key]) => !IMPLIED.has(key))
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  const prefix = level === "info" ? "" : `${level}: `;
  return `${name}: ${prefix}${String(record.msg ?? "")}${fields.length ? ` (${fields.join(", ")})` : ""}\n`;
}

function humanLines(name: string): DestinationStream {
  return { write: (json: string) => void fs.writeSync(2, humanLine(name, json)) };
}
