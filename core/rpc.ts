// What the three programs share about gRPC: the token on every call, the frame size for bytes, the
// client constructor, and the translation of gRPC statuses into Bach's user errors.
import {
  InterceptingCall,
  Metadata,
  status,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";
import type { CoordinatorClient } from "./generated/bach";
import { WireClient } from "./wire";
import { channelCredentials, isTlsFailure, type ClientTls } from "./tls";
import { BachError, CoordinatorUnreachableError, DiskFullError, diskFullMessage, InputError, isDiskFull, TaskFailedError } from "./errors";

export const TOKEN_HEADER = "x-bach-token";
/** Bytes travel in frames of 1 MiB: fastest here, and far below grpc-js's 4 MiB message limit. */
export const FRAME_BYTES = 1024 * 1024;

export const channelOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
};

function tokenInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(TOKEN_HEADER, token);
        next(metadata, listener);
      },
    });
}

export function connect(address: string, token: string, secure: ClientTls | null = null): CoordinatorClient {
  return new WireClient(address, channelCredentials(secure), {
    ...channelOptions,
    interceptors: [tokenInterceptor(token)],
  });
}

export function tokenOf(metadata: Metadata): string {
  const v = metadata.get(TOKEN_HEADER)[0];
  return typeof v === "string" ? v : "";
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number";
}

/** Turns a failed call into the error a user can act on. */
export function userError(err: unknown, address: string): Error {
  if (err instanceof BachError || !isServiceError(err)) return err as Error;
  switch (err.code) {
    case status.UNAUTHENTICATED:
      return new CoordinatorUnreachableError(`coordinator ${address} refused us: ${err.details}`, address, true);
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      // A TLS refusal does not mend itself: trying again would only hide it.
      if (isTlsFailure(err.details)) return new CoordinatorUnreachableError(`coordinator ${address}: TLS handshake failed (${err.details.replace(/^.*Last error: (Error: )?/, "")}); give --tls-ca with the CA that signed its certificate (and --tls-cert/--tls-key when it requires client certificates)`, address, true);
      return new CoordinatorUnreachableError(`coordinator ${address} unreachable: ${err.details}`, address);
    case status.INVALID_ARGUMENT:
    case status.NOT_FOUND:
      return new InputError(err.details);
    case status.ABORTED:
      return new TaskFailedError(err.details, "");
    case status.RESOURCE_EXHAUSTED:
      return new DiskFullError(err.details);
    default:
      return err;
  }
}

/** The gRPC status a server sends for an error thrown by the domain. */
export function statusFor(err: unknown): { code: status; details: string } {
  if (isDiskFull(err)) return { code: status.RESOURCE_EXHAUSTED, details: diskFullMessage(err) };
  if (err instanceof InputError) return { code: status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof BachError) return { code: status.FAILED_PRECONDITION, details: err.message };
  return { code: status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}
