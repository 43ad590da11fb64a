/**
 * What a local stand-in for the Graph API needs besides its own bookkeeping: a server that
 * hands each request its whole body and closes with its open connections, JSON answers, the
 * Graph route and Graph's answer bodies. The reply sink runs on it, and so does the tests'
 * fake Graph (`test/support/fake-graph.ts`).
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { waIdOfTo } from '../src/providers/channel.ts';

/** `[/vXX.X]/{phoneNumberId}/messages`; group 1 is the (URL-encoded) phone number id. */
export const GRAPH_ROUTE = /^(?:\/v\d+(?:\.\d+)?)?\/([^/]+)\/messages$/;

/** Answers `status` with `body` as JSON. */
export function answerJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/**
 * Graph's answer to an accepted send: the recipient as the request named it (`to`: a phone
 * number, echoed as `wa_id` without its `+`; `recipient`: a business-scoped user id) and the
 * new message's id.
 */
export function graphAccepted(
  id: string,
  address: { readonly to: string } | { readonly recipient: string },
): Record<string, unknown> {
  const contact =
    'to' in address
      ? { input: address.to, wa_id: waIdOfTo(address.to) }
      : { input: address.recipient, user_id: address.recipient };
  return { messaging_product: 'whatsapp', contacts: [contact], messages: [{ id }] };
}

/** What a Graph error body says besides its message; each part is left out when not given. */
export interface GraphErrorParts {
  /** `error.code`. */
  readonly code?: number | undefined;
  /** `error.error_data.details`. */
  readonly details?: string;
  /** `error.fbtrace_id`. */
  readonly trace?: string;
}

/** A Graph error body: `{error: {message, type: 'OAuthException', code, error_data, fbtrace_id}}`. */
export function graphError(message: string, parts: GraphErrorParts = {}): Record<string, unknown> {
  const { code, details, trace } = parts;
  return {
    error: {
      message,
      type: 'OAuthException',
      ...(code === undefined ? {} : { code }),
      ...(details === undefined ? {} : { error_data: { messaging_product: 'whatsapp', details } }),
      ...(trace === undefined ? {} : { fbtrace_id: trace }),
    },
  };
}

/** Options of {@link startStubServer}. */
export interface StubServerOptions {
  /** Default 127.0.0.1 (loopback). */
  readonly host?: string;
  /** Default 0: any free port. */
  readonly port?: number;
  /** Idle keep-alive connections are closed after this long; default Node's. */
  readonly keepAliveTimeoutMs?: number;
}

/** A listening stub server. */
export interface StubServer {
  /** `http://host:port`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and destroys the open connections. */
  close(): Promise<void>;
}

/**
 * Starts an HTTP server that calls `handle` with each request's whole body.
 *
 * @example
 * ```ts
 * const stub = await startStubServer((_req, res) => answerJson(res, 200, { ok: true }));
 * await stub.close();
 * ```
 */
export async function startStubServer(
  handle: (req: IncomingMessage, res: ServerResponse, raw: Buffer) => void,
  options: StubServerOptions = {},
): Promise<StubServer> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  if (options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = options.keepAliveTimeoutMs;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('stub server: not listening on TCP');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
