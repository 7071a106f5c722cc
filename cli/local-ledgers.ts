// Where embedded runs keep their ledgers on this machine, and how `bach task-report`, `task-list` and
// `workers` read them without a coordinator: the shared ledger ($BACH_HOME/local) and those of runs
// that ran apart because another run held it. Reading never changes a ledger.
import fs from "node:fs";
import path from "node:path";
import { InputError } from "../core/errors";
import { isAlive } from "../core/pids";
import type { TaskReport, TaskSummary, WorkerSummary } from "../core/report";
import { Ledger } from "../coordinator/ledger";
import { taskList, taskReport, workerList } from "../coordinator/report";

/** How many ledgers of runs that ran apart are kept; older ones go when another such run ends. */
export const APART_KEPT = 20;

export const sharedDir = (home: string) => path.join(home, "local");
const apartRoot = (home: string) => path.join(home, "local-apart");

/** A fresh data dir for a run that runs apart; its name sorts by start time and names its pid. */
export function newApartDir(home: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
  return path.join(apartRoot(home), `${stamp}-${process.pid}`);
}

/**
 * Ends a run that ran apart: its ledger stays (so its task can still be reported), its spool and lock
 * go; then only the newest APART_KEPT such ledgers are kept, never one whose run is still going.
 */
export function keepApartLedger(home: string, dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith("ledger.sqlite")) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  const older = fs.readdirSync(apartRoot(home)).sort().reverse().slice(APART_KEPT);
  for (const name of older) {
    if (!isAlive(Number(/-(\d+)$/.exec(name)?.[1]))) fs.rmSync(path.join(apartRoot(home), name), { recursive: true, force: true });
  }
}

function ledgerFiles(home: string): string[] {
  const apart = fs.existsSync(apartRoot(home)) ? fs.readdirSync(apartRoot(home)).sort().reverse().map((d) => path.join(apartRoot(home), d)) : [];
  return [sharedDir(home), ...apart].map((d) => path.join(d, "ledger.sqlite")).filter((f) => fs.existsSync(f));
}

function withLedgers<T>(home: string, read: (ledgers: Ledger[]) => T): T {
  const files = ledgerFiles(home);
  if (!files.length) throw new InputError(`nothing has run on this machine yet (no ${path.join(sharedDir(home), "ledger.sqlite")}); name a coordinator with --coordinator`);
  const ledgers: Ledger[] = [];
  try {
    for (const f of files) ledgers.push(new Ledger(f));
    return read(ledgers);
  } finally {
    for (const l of ledgers) l.close();
  }
}

/** The named task, from whichever local ledger has it; without a name, the task started last on this machine. */
export function localTaskReport(home: string, task: string | null): TaskReport {
  return withLedgers(home, (ledgers) => {
    const holder = task
      ? ledgers.find((l) => l.findTask(task))
      : ledgers.map((l) => ({ l, t: l.latestTask() })).filter((x) => x.t).sort((a, b) => (b.t?.created_at ?? 0) - (a.t?.created_at ?? 0))[0]?.l;
    return taskReport(holder ?? ledgers[0], task);
  });
}

/** Every local ledger's tasks, newest first. */
export function localTaskList(home: string): TaskSummary[] {
  return withLedgers(home, (ledgers) => ledgers.flatMap(taskList).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0)).slice(0, 50));
}

/** The workers embedded runs started, as the shared ledger knows them. */
export function localWorkerList(home: string): WorkerSummary[] {
  return withLedgers(home, (ledgers) => workerList(ledgers[0]));
}
