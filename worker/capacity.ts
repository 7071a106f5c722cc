// What this machine offers the coordinator: cores, memory, free disk under the worker's data dir, and
// GPUs (counted by nvidia-smi when it is installed). Flags may offer less than the machine has.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";

export interface Capacity {
  cpus: number;
  memoryMb: number;
  diskMb: number;
  gpus: number;
}

export function measureCapacity(dataDir: string, offered: { cpus?: number; memoryMb?: number; gpus?: number } = {}): Capacity {
  const disk = fs.statfsSync(dataDir);
  return {
    cpus: offered.cpus ?? os.availableParallelism(),
    memoryMb: offered.memoryMb ?? Math.round(os.totalmem() / 2 ** 20),
    diskMb: Math.floor((disk.bavail * disk.bsize) / 2 ** 20),
    gpus: offered.gpus ?? countGpus(),
  };
}

function countGpus(): number {
  try {
    return execFileSync("nvidia-smi", ["-L"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 })
      .split("\n")
      .filter((l) => l.startsWith("GPU ")).length;
  } catch {
    return 0; // no nvidia-smi (or no driver): no GPUs to offer
  }
}
