// The data dir's owner: one coordinator process at a time. The lock is SQLite's own exclusive lock
// on a file of the data dir (fcntl, released by the kernel when the process dies, however it dies),
// so a second coordinator on the same dir is refused instead of truncating the first one's spool; a
// pid file next to it names the holder in the refusal. It never touches the ledger or the spool.
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { InputError } from "../core/errors";

export class DataDirLock {
  private constructor(
    private readonly db: Database.Database,
    private readonly pidFile: string,
  ) {}

  /** Takes the data dir or throws one line naming the process that holds it. */
  static take(dataDir: string): DataDirLock {
    const file = path.join(dataDir, "coordinator.lock");
    const pidFile = path.join(dataDir, "coordinator.pid");
    const db = new Database(file, { timeout: 0 });
    try {
      db.pragma("locking_mode = EXCLUSIVE");
      // The first write takes the exclusive lock; in this locking mode it is kept until close.
      db.exec("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS holder(pid INTEGER); COMMIT;");
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
      const pid = fs.existsSync(pidFile) ? fs.readFileSync(pidFile, "utf8").trim() : "";
      throw new InputError(`data dir ${dataDir} is in use by another coordinator${pid ? ` (pid ${pid})` : ""}: stop it first, or give this one its own --data-dir`, { path: dataDir });
    }
    fs.writeFileSync(pidFile, `${process.pid}\n`);
    return new DataDirLock(db, pidFile);
  }

  release(): void {
    if (!this.db.open) return;
    fs.rmSync(this.pidFile, { force: true });
    this.db.close();
  }
}
