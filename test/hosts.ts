// Worker "hosts" on this machine, each in a network namespace of its own, joined to a bridge the test
// makes: a cut is a real cut between hosts (the host's link goes down), not a killed process. Only
// the addresses made here are used (a /24 in 10.201.0.0/16 that no interface has yet, so two test
// processes on one machine do not share a subnet); everything is removed afterwards.
import { spawnSync } from "node:child_process";
import fs from "node:fs";

/** The first /24 of 10.201.0.0/16 (from a place the pid picks) that no interface here is in. */
function freeSubnet(): string {
  const used = spawnSync("ip", ["-o", "-4", "addr", "show"], { encoding: "utf8" }).stdout ?? "";
  for (let k = 0; k < 256; k++) {
    const subnet = `10.201.${(process.pid + k) % 256}`;
    if (!used.includes(` ${subnet}.`)) return subnet;
  }
  throw new Error("every /24 of 10.201.0.0/16 is in use on this machine");
}

export interface Hosts {
  /** The bridge's address on this machine: where the coordinator listens for the hosts. */
  gateway: string;
  count: number;
  /** The command prefix that runs a program on host `i`. */
  exec(i: number): string[];
  address(i: number): string;
  /** Bytes through host `i`'s link both ways so far, as this machine's end of it counts them (frames, headers included). */
  linkBytes(i: number): number;
  cut(i: number): void;
  restore(i: number): void;
  remove(): void;
}

function ip(args: string[]): { ok: boolean; err: string } {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  return { ok: r.status === 0, err: (r.stderr ?? r.error?.message ?? "").trim() };
}

function must(args: string[]): void {
  const r = ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.err}`);
}

/** Why hosts cannot be made here (not root, no iproute2), or null when they can. */
export function hostsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  const probe = `bachprobe${process.pid}`;
  const made = ip(["netns", "add", probe]);
  if (!made.ok) return `ip netns add failed: ${made.err}`;
  ip(["netns", "del", probe]);
  return null;
}

export function makeHosts(count: number): Hosts {
  const tag = (process.pid % 10000).toString(36);
  const bridge = `bbr${tag}`;
  const ns = (i: number) => `bach-${tag}-h${i}`;
  const veth = (i: number) => `bv${tag}h${i}`; // the host end (at most 15 characters)
  const peer = (i: number) => `bp${tag}h${i}`;
  const SUBNET = freeSubnet();
  const hosts: Hosts = {
    gateway: `${SUBNET}.1`,
    count,
    exec: (i) => ["ip", "netns", "exec", ns(i)],
    address: (i) => `${SUBNET}.${11 + i}`,
    linkBytes: (i) => ["rx_bytes", "tx_bytes"].reduce((n, f) => n + Number(fs.readFileSync(`/sys/class/net/${veth(i)}/statistics/${f}`, "utf8")), 0),
    cut: (i) => must(["link", "set", veth(i), "down"]),
    restore: (i) => must(["link", "set", veth(i), "up"]),
    remove() {
      for (let i = 0; i < count; i++) {
        ip(["netns", "del", ns(i)]); // takes its end of the pair, and so the pair, with it
        ip(["link", "del", veth(i)]);
      }
      ip(["link", "del", bridge]);
    },
  };
  process.on("exit", () => hosts.remove());
  try {
    must(["link", "add", bridge, "type", "bridge"]);
    must(["addr", "add", `${hosts.gateway}/24`, "dev", bridge]);
    must(["link", "set", bridge, "up"]);
    for (let i = 0; i < count; i++) {
      must(["netns", "add", ns(i)]);
      must(["link", "add", veth(i), "type", "veth", "peer", "name", peer(i)]);
      must(["link", "set", peer(i), "netns", ns(i)]);
      must(["link", "set", veth(i), "master", bridge]);
      must(["link", "set", veth(i), "up"]);
      must(["netns", "exec", ns(i), "ip", "addr", "add", `${hosts.address(i)}/24`, "dev", peer(i)]);
      must(["netns", "exec", ns(i), "ip", "link", "set", peer(i), "up"]);
      must(["netns", "exec", ns(i), "ip", "link", "set", "lo", "up"]);
    }
  } catch (err) {
    hosts.remove();
    throw err;
  }
  return hosts;
}
