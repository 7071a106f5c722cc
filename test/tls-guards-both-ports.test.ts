// With --tls-cert and --tls-key the coordinator speaks only TLS on both of its ports (gRPC and the
// data port): workers and CLIs that trust its CA run tasks as before, bytes and all; a client that
// does not trust it is refused with one line; with --tls-ca the coordinator also requires a client
// certificate its CA signed (mutual TLS). Certificates are made with openssl, as the README shows.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { runBach, startCluster, taskFolder, tempDir, type Cluster } from "./harness";

interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
}

/** A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an unrelated CA. */
function makeCerts(): Certs {
  const dir = tempDir("bach-tls-");
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=bach test CA");
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("other.key"), "-out", f("other.pem"), "-days", "2", "-subj", "/CN=another CA");
  fs.writeFileSync(f("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=coordinator");
  ssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("server.ext"));
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("client.key"), "-out", f("client.csr"), "-subj", "/CN=worker");
  ssl("x509", "-req", "-in", f("client.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("client.pem"), "-days", "2");
  return { ca: f("ca.pem"), serverCert: f("server.pem"), serverKey: f("server.key"), clientCert: f("client.pem"), clientKey: f("client.key"), otherCa: f("other.pem") };
}

function lines(n: number): string {
  const file = path.join(tempDir(), "lines.txt");
  const fd = fs.openSync(file, "w");
  for (let from = 0; from < n; from += 100_000) {
    fs.writeSync(fd, Array.from({ length: Math.min(100_000, n - from) }, (_, i) => `line ${from + i} ${"y".repeat(90)}\n`).join(""));
  }
  fs.closeSync(fd);
  return file;
}

const certs = makeCerts();
const task = taskFolder({ binary: "cat" });

describe("server TLS", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ coordinatorArgs: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey] });
    await c.addWorker({ args: ["--tls-ca", certs.ca] });
  });
  after(() => c.stop());

  test("a CLI and a worker that trust the CA run a task through both ports, bytes identical", async () => {
    const input = lines(40_000);
    // Piped stdin goes over the data port; the worker (not sharing the spool) fetches chunks and sends outputs there too.
    const r = await runBach(["task-run", "--coordinator", c.address, "--token", c.token, "--tls-ca", certs.ca, "--chunk-size", "256k"], { cwd: task, pipeFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(fs.readFileSync(input)), "the output is the input, byte for byte");
    assert.doesNotMatch(c.workers[0].stderr(), /data port did not answer/, "the worker used the data port, over TLS");
  });

  test("a CLI that does not trust the coordinator's certificate is refused with one line", async () => {
    for (const args of [[], ["--tls-ca", certs.otherCa]]) {
      const r = await runBach(["task-list", "--coordinator", c.address, "--token", c.token, ...args], { cwd: task, timeoutMs: 30_000 });
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, JSON.stringify(r.stderr));
      assert.match(r.stderr, args.length > 0 ? /^bach: coordinator \S+: TLS handshake failed \(.*\): give --tls-ca/ : /^bach: coordinator \S+: it speaks TLS: give --tls-ca FILE/);
    }
  });
});

describe("server TLS, a big output", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ coordinatorArgs: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey] });
    // A worker that reads the spool in place: chunks commit as fast as cat runs, and their output
    // streams to the CLI faster than it prints, so the CLI's ring of frames fills and waits.
    await c.addWorker({ args: ["--tls-ca", certs.ca], localSpool: true });
  });
  after(() => c.stop());

  test("256 MiB of output reaches the CLI over TLS byte for byte", async () => {
    // tls.connect's own onread once misplaced bytes at the ring's frame edges when the ring filled
    // (the output differed at MiB boundaries); a 2 MiB output never showed it.
    const input = lines(2_500_000);
    const r = await runBach(["task-run", "--coordinator", c.address, "--token", c.token, "--tls-ca", certs.ca], { cwd: task, pipeFile: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(fs.readFileSync(input)), "the output is the input, byte for byte");
  });
});

describe("mutual TLS", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ coordinatorArgs: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-ca", certs.ca] });
    await c.addWorker({ args: ["--tls-ca", certs.ca, "--tls-cert", certs.clientCert, "--tls-key", certs.clientKey] });
  });
  after(() => c.stop());

  test("a client with a certificate the CA signed runs a task", async () => {
    const input = lines(5_000);
    const r = await runBach(["task-run", "--coordinator", c.address, "--token", c.token, "--tls-ca", certs.ca, "--tls-cert", certs.clientCert, "--tls-key", certs.clientKey], {
      cwd: task,
      pipeFile: input,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  });

  test("a client without a certificate is refused with one line", async () => {
    const r = await runBach(["task-list", "--coordinator", c.address, "--token", c.token, "--tls-ca", certs.ca], { cwd: task, timeoutMs: 30_000 });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, JSON.stringify(r.stderr));
    assert.match(r.stderr, /TLS handshake failed \(.*certificate required\): it requires a client certificate: give --tls-cert and --tls-key/);
  });

  test("only half of a key pair is one clear line", async () => {
    const r = await runBach(["task-list", "--coordinator", c.address, "--token", c.token, "--tls-cert", certs.clientCert], { cwd: task });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, "bach: --tls-cert needs --tls-key (its private key)\n");
  });
});
