// Sizes and durations as people write them ("64m", "1.5g", "10m", "30s"), and back for display.
import { InputError } from "./errors";

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
const DURATION_UNITS: Record<string, number> = { "": 1000, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseSize(text: string | number, what: string): number {
  if (typeof text === "number" && Number.isFinite(text) && text >= 0) return Math.round(text);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(String(text));
  if (!m) throw new InputError(`${what}: ${JSON.stringify(text)} is not a size (examples: 1m, 64m, 1g)`, { field: what });
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
}

export function parseDuration(text: string | number, what: string): number {
  if (typeof text === "number" && Number.isFinite(text) && text >= 0) return Math.round(text * 1000);
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/i.exec(String(text));
  if (!m) throw new InputError(`${what}: ${JSON.stringify(text)} is not a duration (examples: 250ms, 30s, 10m, 1h, 7d)`, { field: what });
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2].toLowerCase()]);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

/** The longest wait between two sweeps of a cache that keeps things for a while. */
export const MAX_SWEEP_EVERY_MS = 60 * 60 * 1000;

/** How often to sweep what is kept for `keepMs`: a tenth of it, within 1 s and MAX_SWEEP_EVERY_MS. */
export function sweepEveryMs(keepMs: number): number {
  return Math.min(MAX_SWEEP_EVERY_MS, Math.max(1000, Math.floor(keepMs / 10)));
}
