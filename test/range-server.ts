// A real HTTP server for tests of input read by ranges: it serves files by name with Range (RFC 9110:
// bytes=N- and bytes=N-M, 206 with Content-Range, 416 past the end), ETag and If-Match (412), and HEAD.
// It counts the bytes it sends, so a test can say who read what; `ranges: false` makes it ignore Range
// as many simple servers do.
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";

export interface RangeServer {
  url(name: string): string;
  /** Body bytes sent, in all. */
  bytesSent(): number;
  requests(): number;
  close(): Promise<void>;
}

export async function startRangeServer(files: Record<string, string>, opts: { ranges?: boolean; host?: string } = {}): Promise<RangeServer> {
  let sent = 0;
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    const file = files[decodeURIComponent((req.url ?? "/").split("?")[0].slice(1))];
    const stat = file ? fs.statSync(file, { throwIfNoEntry: false }) : undefined;
    if (!file || !stat) {
      res.writeHead(404).end();
      return;
    }
    const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
    const ifMatch = req.headers["if-match"];
    if (ifMatch && ifMatch !== etag && ifMatch !== "*") {
      res.writeHead(412).end();
      return;
    }
    const range = opts.ranges === false ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    let start = 0;
    let end = stat.size - 1;
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), stat.size - 1) : stat.size - 1;
      if (start >= stat.size) {
        res.writeHead(416, { "Content-Range": `bytes */${stat.size}` }).end();
        return;
      }
    }
    const headers: http.OutgoingHttpHeaders = { "Content-Length": String(end - start + 1), ETag: etag, ...(opts.ranges === false ? {} : { "Accept-Ranges": "bytes" }) };
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${stat.size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === "HEAD" || end < start) {
      res.end();
      return;
    }
    const body = fs.createReadStream(file, { start, end });
    body.on("data", (b) => (sent += b.length));
    body.pipe(res);
  });
  server.listen(0, opts.host ?? "127.0.0.1");
  await once(server, "listening");
  const { address, port } = server.address() as AddressInfo;
  return {
    url: (name) => `http://${address}:${port}/${encodeURIComponent(name)}`,
    bytesSent: () => sent,
    requests: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
