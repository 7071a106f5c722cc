// `bach task-report --html FILE`: one self-contained page, the report's figures and a timeline of
// attempts per worker (one lane per attempt running at once, a row per worker named as reports name
// it, an axis in seconds), coloured by how each attempt ended, backups outlined.
import type { TaskReport, TimelineBar } from "../core/report";
import { formatBytes } from "../core/sizes";
import { attemptLists, attemptText, parallelLine } from "./format";

const COLOURS: Record<string, string> = { succeeded: "#3a7d44", failed: "#c0392b", lost: "#e67e22", cancelled: "#95a5a6", running: "#2e86c1" };

function escape(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c);
}

/** Seconds between ticks of the time axis: a round step that gives at most 8 intervals. */
function tickStep(seconds: number): number {
  for (let scale = 0.1; ; scale *= 10) {
    for (const step of [1, 2, 5]) if (seconds / (step * scale) <= 8) return Number((step * scale).toPrecision(1));
  }
}

/** Ticks from 0 to the end, in seconds. */
function ticks(seconds: number): number[] {
  const step = tickStep(seconds);
  return Array.from({ length: Math.floor(seconds / step + 1e-9) + 1 }, (_, i) => Number((i * step).toFixed(1)));
}

/** Lanes per worker: an attempt goes into the first lane free at its start. */
function lanes(bars: TimelineBar[], now: number): { worker: string; lane: number; bar: TimelineBar }[] {
  const placed: { worker: string; lane: number; bar: TimelineBar }[] = [];
  const ends = new Map<string, number[]>();
  for (const bar of [...bars].sort((a, b) => a.startMs - b.startMs)) {
    const free = ends.get(bar.worker) ?? [];
    let lane = free.findIndex((end) => end <= bar.startMs);
    if (lane < 0) lane = free.push(0) - 1;
    free[lane] = bar.endMs ?? now;
    ends.set(bar.worker, free);
    placed.push({ worker: bar.worker, lane, bar });
  }
  return placed;
}

export function htmlReport(r: TaskReport): string {
  const now = r.wallSeconds * 1000;
  const placed = lanes(r.timeline, now);
  const workers = [...new Set(placed.map((p) => p.worker))].sort();
  const laneCount = new Map(workers.map((w) => [w, Math.max(...placed.filter((p) => p.worker === w).map((p) => p.lane)) + 1]));
  const rowTop = new Map<string, number>();
  let y = 20;
  for (const w of workers) {
    rowTop.set(w, y);
    y += (laneCount.get(w) ?? 1) * 18 + 10;
  }
  const width = 1000;
  const x = (ms: number) => 120 + (ms / Math.max(now, 1)) * (width - 140);
  const rects = placed.map(({ worker, lane, bar }) => {
    const top = (rowTop.get(worker) ?? 0) + lane * 18;
    const end = bar.endMs ?? now;
    const tip = `${bar.phase === "reduce" ? "reduce " : ""}chunk ${bar.chunk}, attempt ${bar.attempt}${bar.backup ? " (backup)" : ""}: ${bar.state}, ${formatBytes(bar.bytes)}, ${((end - bar.startMs) / 1000).toFixed(2)} s`;
    // A backup is outlined: its colour still says how it ended.
    // A reduce attempt is a taller bar: the two phases read apart at a glance.
    const classes = [bar.backup ? "backup" : "", bar.phase === "reduce" ? "reduce" : ""].filter(Boolean);
    const mark = classes.length ? ` class="${classes.join(" ")}"` : "";
    const outline = bar.backup ? ` stroke="#000" stroke-width="1.5" stroke-dasharray="4,2"` : "";
    return `<rect${mark} x="${x(bar.startMs).toFixed(1)}" y="${bar.phase === "reduce" ? top - 2 : top}" width="${Math.max(1, x(end) - x(bar.startMs)).toFixed(1)}" height="${bar.phase === "reduce" ? 18 : 14}" fill="${COLOURS[bar.state] ?? "#555"}"${outline}><title>${escape(tip)}</title></rect>`;
  });
  const labels = workers.map((w) => {
    const name = r.workers.find((s) => s.worker === w)?.name ?? w;
    const shown = name.length > 18 ? `${name.slice(0, 17)}…` : name;
    return `<g><title>${escape(`${name} (${w})`)}</title><text class="worker" x="4" y="${(rowTop.get(w) ?? 0) + 11}">${escape(shown)}</text></g>`;
  });
  // Where the map phase ended: the first reduce attempt's start.
  const reduceStart = Math.min(...r.timeline.filter((b) => b.phase === "reduce").map((b) => b.startMs));
  const phaseLine = Number.isFinite(reduceStart)
    ? `<line class="reduce-start" x1="${x(reduceStart).toFixed(1)}" y1="4" x2="${x(reduceStart).toFixed(1)}" y2="${y + 4}" stroke="#06c" stroke-width="2"/><text class="tick" x="${(x(reduceStart) + 4).toFixed(1)}" y="12">reduce</text>`
    : "";
  const axis = ticks(now / 1000).map((t) => {
    const at = x(t * 1000).toFixed(1);
    return `<line x1="${at}" y1="10" x2="${at}" y2="${y + 4}" stroke="#ddd"/><text class="tick" x="${at}" y="${y + 18}" text-anchor="middle">${t} s</text>`;
  });
  const rows = r.workers.map((w) => `<tr><td>${escape(w.worker)}</td><td>${escape(w.name)}</td><td>${w.attempts}</td><td>${w.committed}</td><td>${w.failed}</td><td>${w.lost}</td><td>${formatBytes(w.bytesIn)}</td><td>${w.bytesPerSecond ? `${formatBytes(w.bytesPerSecond)}/s` : "-"}</td></tr>`);
  const lists = attemptLists(r)
    .filter((l) => l.lines.length)
    .map((l) => {
      const items = l.lines.map((a) => `<li>${escape(attemptText(a, l.markBackups))}${l.stderr && a.stderr.trim() ? `<pre>${escape(a.stderr.trimEnd())}</pre>` : ""}</li>`);
      return `<h2>${l.title}</h2>${l.why ? `<p>${escape(l.why[0].toUpperCase() + l.why.slice(1))}.</p>` : ""}<ul>${items.join("")}</ul>`;
    });
  const stderr = r.stderr.first.map((s) => `<li>chunk ${s.chunk} (bytes ${s.offset}-${s.offset + s.length}), attempt ${s.attempt} on ${escape(s.worker)}: ${escape(s.state)}<pre>${escape(s.stderr.trimEnd())}</pre></li>`);
  const stderrLeft = r.stderr.attempts - r.stderr.first.length;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>bach task ${escape(r.id)}</title>
<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}svg text{font:12px sans-serif}pre{background:#f4f4f4;padding:4px}</style></head>
<body><h1>Task ${escape(r.id)} (${escape(r.name)}): ${escape(r.state)}</h1>
${r.error ? `<pre>${escape(r.error)}</pre>` : ""}
<p>Input ${escape(r.input.kind === "path" ? r.input.path : "streamed")}, ${formatBytes(r.input.bytes)}; output ${formatBytes(r.bytesOut)};
${r.chunks.planned} chunks (${Object.entries(r.chunks.byState).map(([s, n]) => `${n} ${s}`).join(", ")});
${r.attempts.total} attempts, ${r.attempts.retries} retries, ${r.attempts.backups} backups; ${r.wallSeconds.toFixed(1)} s from ${escape(r.createdAt)}.</p>
<p>Parallel: ${escape(parallelLine(r))}.</p>
${r.reduce ? `<p>Map-reduce (${r.reduce.order} order${r.reduce.combine ? ", with a combiner" : ""}): ${r.reduce.mapChunks} map chunks, ${formatBytes(r.reduce.mapOutputBytes)} of map output; ${formatBytes(r.reduce.bytesShuffled)} shuffled to ${r.reduce.partitions} reduce partitions; ${r.reduce.mapAttempts} map and ${r.reduce.reduceAttempts} reduce attempts. Reduce attempts are the taller bars, after the blue line.</p>` : ""}
<h2>Timeline of attempts</h2>
<svg width="${width}" height="${y + 30}" xmlns="http://www.w3.org/2000/svg">${axis.join("")}${labels.join("")}${rects.join("")}${phaseLine}</svg>
<p>Seconds since the task started. ${Object.entries(COLOURS).map(([s, c]) => `<span style="color:${c}">&#9632;</span> ${s}`).join(" &nbsp; ")} &nbsp; <span style="border:1.5px dashed #000;padding:0 4px">backup</span> (speculative, for a straggler)</p>
<h2>Workers</h2>
<table><tr><th>worker</th><th>name</th><th>attempts</th><th>committed</th><th>failed</th><th>lost</th><th>in</th><th>throughput</th></tr>${rows.join("")}</table>
${lists.join("\n")}
${stderr.length ? `<h2>Stderr</h2><p>What attempts that did not fail wrote to stderr ("stderr": "log").</p><ul>${stderr.join("")}</ul>` : ""}
${stderrLeft > 0 ? `<p>... and ${stderrLeft} more attempts wrote to stderr (the report holds the first ${r.stderr.first.length}).</p>` : ""}
${r.notes.map((n) => `<p>Note: ${escape(n)}</p>`).join("")}
</body></html>
`;
}
