// TLS for the coordinator's two ports (gRPC and the data port), from PEM files named by flags or
// variables: the server's certificate and key, the CA its clients trust, and, for mutual TLS, the CA
// the coordinator requires client certificates from and the clients' own certificates. It loads and
// wires credentials; it decides nothing about who may do what (the token still does).
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";
import { InputError } from "./errors";

/** What a coordinator serves with: its certificate and key; with `ca`, clients must present a certificate it signed. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | null;
}

/** What a worker or CLI connects with: the CA it trusts, and its own certificate for mutual TLS. */
export interface ClientTls {
  ca: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
}

export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

export const TLS_HELP = {
  cert: "a PEM certificate: the coordinator's own (with --tls-key, it then speaks only TLS), or a worker's or CLI's for mutual TLS",
  key: "the PEM private key of --tls-cert",
  ca: "a PEM CA certificate: clients trust the coordinator's certificate when this CA signed it; given to the coordinator, it requires clients to present a certificate this CA signed (mutual TLS)",
};

function pem(file: string, flag: string): Buffer {
  try {
    const text = fs.readFileSync(file);
    if (!text.includes("-----BEGIN ")) throw new InputError(`${flag} ${file}: not a PEM file (no -----BEGIN line)`, { path: file });
    return text;
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(`${flag} ${file}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`, { path: file });
  }
}

function flagsWithEnv(o: TlsFlags): TlsFlags {
  return { tlsCert: o.tlsCert ?? process.env.BACH_TLS_CERT, tlsKey: o.tlsKey ?? process.env.BACH_TLS_KEY, tlsCa: o.tlsCa ?? process.env.BACH_TLS_CA };
}

function certAndKey(o: TlsFlags): { cert: Buffer; key: Buffer } | null {
  if (!o.tlsCert && !o.tlsKey) return null;
  if (!o.tlsCert || !o.tlsKey) throw new InputError(o.tlsCert ? "--tls-cert needs --tls-key (its private key)" : "--tls-key needs --tls-cert (the certificate it belongs to)");
  return { cert: pem(o.tlsCert, "--tls-cert"), key: pem(o.tlsKey, "--tls-key") };
}

/** The coordinator's TLS from its flags (and BACH_TLS_*): null when it has none (plain TCP). */
export function serverTlsFrom(flags: TlsFlags): ServerTls | null {
  const o = flagsWithEnv(flags);
  const own = certAndKey(o);
  if (!own) {
    if (o.tlsCa) throw new InputError("--tls-ca on the coordinator requires client certificates, which needs TLS: give --tls-cert and --tls-key too");
    return null;
  }
  return { ...own, ca: o.tlsCa ? pem(o.tlsCa, "--tls-ca") : null };
}

/** A worker's or CLI's TLS from its flags (and BACH_TLS_*): null to speak plain TCP. */
export function clientTlsFrom(flags: TlsFlags): ClientTls | null {
  const o = flagsWithEnv(flags);
  const own = certAndKey(o);
  if (!own && !o.tlsCa) return null;
  return { ca: o.tlsCa ? pem(o.tlsCa, "--tls-ca") : null, cert: own?.cert ?? null, key: own?.key ?? null };
}

export function serverCredentials(t: ServerTls | null): ServerCredentials {
  if (!t) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(t.ca, [{ private_key: t.key, cert_chain: t.cert }], t.ca !== null);
}

export function channelCredentials(t: ClientTls | null): ChannelCredentials {
  if (!t) return ChannelCredentials.createInsecure();
  return ChannelCredentials.createSsl(t.ca, t.key, t.cert);
}

/** The data port's server-side TLS context (null: plain TCP). */
export function dataServerContext(t: ServerTls | null): tls.SecureContext | null {
  return t ? tls.createSecureContext({ cert: t.cert, key: t.key, ca: t.ca ?? undefined }) : null;
}

/** An accepted data-port connection wrapped in TLS, client certificate required when the coordinator has a CA. */
export function acceptTls(raw: net.Socket, context: tls.SecureContext, requireClientCert: boolean): tls.TLSSocket {
  return new tls.TLSSocket(raw, { isServer: true, secureContext: context, requestCert: requireClientCert, rejectUnauthorized: requireClientCert });
}

/** Connects to a data port, over TLS when `t` is given; `onread` reads into the caller's buffers. */
export function connectData(host: string, port: number, t: ClientTls | null, onread?: net.OnReadOpts): net.Socket {
  if (!t) return net.connect({ host, port, onread });
  // tls.connect reads into `onread`'s buffers too (Node documents the option; its types omit it).
  const options: tls.ConnectionOptions & { onread?: net.OnReadOpts } = { host, port, ca: t.ca ?? undefined, cert: t.cert ?? undefined, key: t.key ?? undefined, servername: net.isIP(host) ? undefined : host, onread };
  return tls.connect(options);
}

/** The event a connection is ready to carry bytes on: after the handshake for TLS. */
export function readyEvent(socket: Duplex): "secureConnect" | "connect" {
  return socket instanceof tls.TLSSocket ? "secureConnect" : "connect";
}

/** Whether an error (or a gRPC status's details) is a TLS handshake refusal rather than an unreachable host. */
export function isTlsFailure(text: string): boolean {
  return /certificate|self.signed|SSL|TLS|handshake|wrong version number|ERR_SSL|unable to verify/i.test(text);
}
