// An HTTP proxy between workers and a real store, for faults a store does not make on demand: it passes
// each request on unchanged (the Host header too, so a presigned URL made for the proxy's address still
// verifies at the store), and `fault` decides, request by request, to answer 503, to cut the connection
// after some bytes of the body, or to hold the request a while first. It counts body bytes per client
// address, so a test can say who moved the data.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";

export type Fault = { kind: "pass" } | { kind: "503" } | { kind: "cut"; afterBytes: number } | { kind: "delay"; ms: number };

export interface FaultProxy {
  /** http://host:port of the proxy: what the coordinator presigns for. */
  endpoint: string;
  /** Body bytes sent back, by client address. */
  sentTo(address: string): number;
  sent(): number;
  faults(): Record<Fault["kind"], number>;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string, fault: (req: http.IncomingMessage, n: number) => Fault, listen = "127.0.0.1"): Promise<FaultProxy> {
  const target = new URL(upstream);
  const byClient = new Map<string, number>();
  const counts: Record<Fault["kind"], number> = { pass: 0, "503": 0, cut: 0, delay: 0 };
  let n = 0;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const f = fault(req, n++);
    counts[f.kind]++;
    if (f.kind === "503") {
      req.resume();
      res.writeHead(503, { "Content-Type": "application/xml", "Retry-After": "0" }).end("<Error><Code>SlowDown</Code></Error>");
      return;
    }
    if (f.kind === "delay") await new Promise((resolve) => setTimeout(resolve, f.ms));
    const out = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      let given = 0;
      const client = req.socket.remoteAddress ?? "";
      up.on("data", (b: Buffer) => {
        if (f.kind === "cut" && given + b.length > f.afterBytes) {
          res.write(b.subarray(0, Math.max(0, f.afterBytes - given)));
          byClient.set(client, (byClient.get(client) ?? 0) + Math.max(0, f.afterBytes - given));
          up.destroy();
          res.socket?.destroy();
          return;
        }
        given += b.length;
        byClient.set(client, (byClient.get(client) ?? 0) + b.length);
        res.write(b);
      });
      up.on("end", () => res.end());
    });
    out.on("error", () => res.socket?.destroy());
    req.pipe(out);
  };
  const server = http.createServer((req, res) => void handle(req, res));
  server.listen(0, listen);
  await once(server, "listening");
  const { address, port } = server.address() as AddressInfo;
  return {
    endpoint: `http://${address}:${port}`,
    sentTo: (a) => byClient.get(a) ?? 0,
    sent: () => [...byClient.values()].reduce((s, v) => s + v, 0),
    faults: () => ({ ...counts }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
