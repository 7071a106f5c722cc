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
  quietIpServername();
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

/**
 * Connects to a data port, over TLS when `t` is given. `onread` (plain TCP only) reads into the
 * caller's buffers; a TLS connection is read with readByCopy instead (core/frames): tls.connect's own
 * onread misplaced bytes when the caller's ring of buffers filled and paused the socket.
 */
export function connectData(host: string, port: number, t: ClientTls | null, onread?: net.OnReadOpts): net.Socket {
  if (!t) return net.connect({ host, port, onread });
  if (onread) throw new Error("connectData: a TLS connection is read with readByCopy, not onread");
  return tls.connect({ host, port, ca: t.ca ?? undefined, cert: t.cert ?? undefined, key: t.key ?? undefined, servername: net.isIP(host) ? undefined : host });
}

/** The event a connection is ready to carry bytes on: after the handshake for TLS. */
export function readyEvent(socket: Duplex): "secureConnect" | "connect" {
  return socket instanceof tls.TLSSocket ? "secureConnect" : "connect";
}

/** Whether an error (or a gRPC status's details) is a TLS handshake refusal rather than an unreachable host. */
export function isTlsFailure(text: string): boolean {
  return /certificate|self.signed|SSL|TLS|handshake|wrong version number|ERR_SSL|unable to verify/i.test(text);
}

/**
 * Why a gRPC connection to `address` failed when something does listen there: a TLS coordinator that
 * a plain client reached, a certificate the client does not trust, or a client certificate the
 * coordinator wants and did not get. Null when nothing answers (the caller's plain "unreachable") or
 * TLS is not the trouble. gRPC only says "connection failed"; a handshake of our own says why.
 */
export async function tlsTrouble(address: string, t: ClientTls | null, waitMs = 3000): Promise<string | null> {
  const host = address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  const port = Number(/:(\d+)$/.exec(address)?.[1]);
  const attempt = (options: tls.ConnectionOptions) =>
    new Promise<{ ok: true } | { ok: false; error: string } | null>((resolve) => {
      const socket = tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...options });
      const timer = setTimeout(() => finish(null), waitMs);
      const finish = (r: { ok: true } | { ok: false; error: string } | null) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(r);
      };
      // Under TLS 1.3 a missing client certificate is told just after the handshake: wait a moment for it.
      socket.once("secureConnect", () => setTimeout(() => finish({ ok: true }), 300));
      socket.once("error", (err: NodeJS.ErrnoException) => finish(err.code === "ECONNREFUSED" || err.code === "EHOSTUNREACH" || err.code === "ENOTFOUND" ? null : { ok: false, error: opensslReason(err.message) }));
    });
  if (!t) {
    const r = await attempt({ rejectUnauthorized: false });
    return r?.ok ? "it speaks TLS: give --tls-ca FILE, the CA that signed its certificate" : null;
  }
  const r = await attempt({ ca: t.ca ?? undefined, cert: t.cert ?? undefined, key: t.key ?? undefined });
  if (!r || r.ok) return null;
  const wantsCert = /certificate required|handshake failure|alert/i.test(r.error) && !t.cert;
  return `TLS handshake failed (${r.error}): ${wantsCert ? "it requires a client certificate: give --tls-cert and --tls-key" : "give --tls-ca with the CA that signed its certificate (and --tls-cert/--tls-key when it requires client certificates)"}`;
}

/** OpenSSL's reason out of its error string ("...:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:..."). */
function opensslReason(message: string): string {
  return /SSL routines:[^:]*:([^:]+)/.exec(message)?.[1] ?? message.split("\n")[0] ?? message;
}

let quieted = false;

/**
 * grpc-js names the server for SNI even when its address is an IP (RFC 6066 says not to), and Node
 * prints a deprecation warning for it on every connection: nothing a user can act on, so that one
 * warning (DEP0123) is dropped; every other warning is printed as before.
 */
function quietIpServername(): void {
  if (quieted) return;
  quieted = true;
  const emit = process.emitWarning.bind(process) as (warning: string | Error, ...rest: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === "DEP0123") return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}
