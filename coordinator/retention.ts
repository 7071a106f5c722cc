// Retention: a long-running coordinator forgets the bytes of tasks that ended long ago, so its spool
// does not grow with every task it ever ran. It removes only what no running or kept task needs:
// the ledger's rows (what `bach task-report` shows) stay, and it never touches a running task.
import fs from "node:fs";
import type { Logger } from "pino";
import { sweepEveryMs } from "../core/sizes";
import type { Ledger } from "./ledger";
import type { Spool } from "./spool";

export class Retention {
  private readonly timer: NodeJS.Timeout;

  /**
   * @param keepMs how long an ended task's output stays in the spool for `bach task-output`; bundles
   *   and images no kept task uses go once they have not been used (uploaded or asked for) that long.
   * @param purge removes one task's spooled input and committed outputs; false: not now (it is being read).
   */
  constructor(
    private readonly ledger: Ledger,
    private readonly spool: Spool,
    private readonly keepMs: number,
    private readonly purge: (task: string) => boolean,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.sweep();
    this.timer = setInterval(() => {
      try {
        this.sweep();
      } catch (err) {
        // The next sweep tries again; a timer has nobody to throw to.
        this.log.error({ err: (err as Error).message }, "removing old outputs failed");
      }
    }, sweepEveryMs(keepMs));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass: outputs of tasks ended more than keepMs ago, then artifacts no kept task uses. */
  sweep(): void {
    const before = this.now() - this.keepMs;
    const forgotten = this.ledger.tasksEndedBefore(before).filter((task) => this.purge(task.id));
    for (const task of forgotten) this.ledger.markOutputRemoved(task.id);
    const inUse = this.ledger.artifactsInUse();
    let artifacts = 0;
    for (const a of this.spool.stored()) {
      const used = a.kind === "bundle" ? inUse.bundles.has(a.key) : inUse.images.has(a.key);
      if (used || a.usedAt >= before) continue;
      fs.rmSync(a.file, { force: true });
      artifacts++;
    }
    if (forgotten.length > 0 || artifacts > 0) {
      this.log.info({ tasks: forgotten.map((t) => t.id), artifacts, keepMs: this.keepMs }, "removed the output of tasks that ended long ago, and artifacts no task uses");
    }
  }
}
