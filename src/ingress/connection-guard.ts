/**
 * Keeps the HTTP server's connection slots for clients that use them. The server accepts at
 * most `maxConnections` at once (a process has a bounded number of file descriptors); without
 * this guard, a client that opens that many sockets and sends nothing keeps every other client
 * out until the headers timeout (10 s, SPEC section 3) closes them, and can open them again.
 *
 * - **One address** holds at most `perAddress` connections (default: half the cap); more are
 *   closed at once. Off behind a proxy (`BATON_TRUST_PROXY`): every client shares its address.
 * - **Under pressure** (open connections at 90% of the cap or more), every 250 ms: idle
 *   keep-alive connections are closed (a client reconnects at the cost of a handshake), and so
 *   is every connection that has not completed a request's headers within `slowHeadersMs` of
 *   opening (default 1 s; real clients, Meta's servers among them, send them at once). A
 *   request in progress is never cut here: its body has the request timeout (30 s).
 * @module
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionGuardOptions {
  /** The server's cap (`server.maxConnections`). */
  readonly maxConnections: number;
  /** Connections one remote address may hold; null: no limit. */
  readonly perAddress: number | null;
  /** Under pressure, a connection without complete request headers this long after it opened is closed. */
  readonly slowHeadersMs?: number;
  readonly now?: () => number;
}

/** Share of the cap at which idle and slow connections start being shed. */
const PRESSURE = 0.9;
const SWEEP_MS = 250;

export function guardConnections(server: Server, o: ConnectionGuardOptions): void {
  const now = o.now ?? Date.now;
  const slowHeadersMs = o.slowHeadersMs ?? 1000;
  const threshold = Math.max(1, Math.floor(o.maxConnections * PRESSURE));
  const byAddress = new Map<string, number>();
  /** Connections that have not yet completed a request's headers, with when they opened. */
  const awaitingHeaders = new Map<Socket, number>();
  let open = 0;
  let sweeper: NodeJS.Timeout | null = null;

  const sweep = (): void => {
    if (open < threshold) {
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
      return;
    }
    server.closeIdleConnections();
    const cutoff = now() - slowHeadersMs;
    for (const [socket, openedAt] of awaitingHeaders) {
      if (openedAt <= cutoff) socket.destroy();
    }
  };

  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const held = (byAddress.get(address) ?? 0) + 1;
    byAddress.set(address, held);
    open += 1;
    awaitingHeaders.set(socket, now());
    socket.once('close', () => {
      open -= 1;
      awaitingHeaders.delete(socket);
      const left = (byAddress.get(address) ?? 1) - 1;
      if (left === 0) byAddress.delete(address);
      else byAddress.set(address, left);
    });
    if (o.perAddress !== null && held > o.perAddress) {
      socket.destroy();
      return;
    }
    if (open >= threshold && sweeper === null) {
      sweeper = setInterval(sweep, SWEEP_MS);
      sweeper.unref();
    }
  });
  // Headers complete: the client is a real one (its body, if slow, meets the request timeout).
  server.on('request', (req: { socket: Socket }) => {
    awaitingHeaders.delete(req.socket);
  });
  server.on('close', () => {
    if (sweeper) clearInterval(sweeper);
    sweeper = null;
  });
}
