// A one-line progress display on stderr, only when stderr is a terminal.
import type { OutputEvent } from "../core/report";
import { formatBytes } from "../core/sizes";

export class Progress {
  private readonly started = Date.now();
  private shown = false;

  constructor(private readonly totalBytes: number | null) {}

  update(ev: Extract<OutputEvent, { kind: "progress" }>): void {
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? formatBytes(ev.bytesIn / seconds) : "-";
    const of = this.totalBytes !== null ? ` of ${formatBytes(this.totalBytes)}` : "";
    const planned = ev.inputDone ? `${ev.planned}` : `${ev.planned}+`;
    process.stderr.write(`\r\x1b[Kbach: ${formatBytes(ev.bytesIn)}${of} in, ${rate}/s, chunks ${ev.committed}/${planned} done, ${ev.running} running`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write("\r\x1b[K");
  }
}
