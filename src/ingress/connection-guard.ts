/**
 * Keeps the HTTP server's connection slots for clients that use them. The server holds at
 * most `maxConnections` at once (a process has a bounded number of file descriptors); without
 * this guard, a client that opens that many sockets and sends nothing keeps every other client
 * out until the headers timeout (10 s, SPEC section 3) closes them, and can open them again.
 *
 * - **At the cap**, a new connection takes the slot of the oldest one that has not completed a
 *   request's headers (real clients send them at once; one that never does only holds a slot);
 *   with none such, the new one is closed. Refusing the new one instead, as Node's own cap does,
 *   let clients holding the slots empty keep others out until the next sweep: from 20 addresses
 *   reopening every slot closed, 1 in 60-80 webhooks from elsewhere was reset (outside test
 *   QA54-F5).
 * - **One address** holds at most `perAddress` connections (default: half the cap); more are
 *   closed at once. Off behind a proxy (`BATON_TRUST_PROXY`): every client shares its address.
 *   IPv6 addresses count by their /64, the block one client usually has.
 * - **Under pressure** (open connections at 90% of the cap or more), every 250 ms: idle
 *   keep-alive connections are closed (a client reconnects at the cost of a handshake); so is
 *   every connection that has not completed a request's headers within `slowHeadersMs` of
 *   opening (default 1 s; real clients, Meta's servers among them, send them at once); and every
 *   address holding more than a fair share (a sixteenth of the cap) is cut back to it, newest
 *   connections first (requests in progress too: a body trickling in would hold its slot for the
 *   30 s request timeout), and held to it for 30 s. So two or three addresses cannot fill the cap
 *   between them either; a legitimate heavy client is only trimmed while the cap is nearly full.
 *   And a request whose body is not complete `slowBodyMs` after its headers (default 2 s; a
 *   webhook's body follows its headers at once) is closed, so many addresses each within their
 *   share cannot hold the cap with slow uploads; an address whose connections were closed as
 *   slow (no headers, or a body trickling) keeps a quarter of the fair share for 30 s, so its
 *   reconnections do not take back the slots freed for others.
 * @module
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';

export interface ConnectionGuardOptions {
  /** The server's cap (`server.maxConnections`). */
  readonly maxConnections: number;
  /** Connections one remote address may hold; null: no limit. */
  readonly perAddress: number | null;
  /** Under pressure, a connection without complete request headers this long after it opened is closed. */
  readonly slowHeadersMs?: number;
  /** Under pressure, a request whose body is not complete this long after its headers is closed. */
  readonly slowBodyMs?: number;
  readonly now?: () => number;
}

/** Share of the cap at which idle and slow connections start being shed. */
const PRESSURE = 0.9;
const SWEEP_MS = 250;
/** Under pressure, one address keeps at most this share of the cap... */
const FAIR_SHARE = 1 / 16;
/** ...and is held to it this long after it was cut back. */
const HELD_MS = 30_000;

/** The address a connection counts against: IPv4 as is, IPv6 by its /64. */
export function addressKey(remote: string | undefined): string {
  if (remote === undefined) return '';
  if (!remote.includes(':') || remote.startsWith('::ffff:')) return remote;
  const [head = '', tail] = remote.split('::');
  const groups = head === '' ? [] : head.split(':');
  // `a:b::` compresses the rest: fill the /64 with zeros when fewer than four groups are given.
  const full = tail === undefined ? groups : [...groups, ...Array<string>(8).fill('0')].slice(0, 8);
  return `${full.slice(0, 4).join(':')}::/64`;
}

export function guardConnections(server: Server, o: ConnectionGuardOptions): void {
  // One over the cap reaches the 'connection' handler below, which takes a slot back for it.
  server.maxConnections = o.maxConnections + 1;
  const now = o.now ?? Date.now;
  const slowHeadersMs = o.slowHeadersMs ?? 1000;
  const slowBodyMs = o.slowBodyMs ?? 2000;
  const threshold = Math.max(1, Math.floor(o.maxConnections * PRESSURE));
  const fairShare = Math.max(1, Math.floor(o.maxConnections * FAIR_SHARE));
  const slowShare = Math.max(1, Math.floor(fairShare / 4));
  /** Each address's connections, oldest first. */
  const byAddress = new Map<string, Set<Socket>>();
  const addressOf = new WeakMap<Socket, string>();
  /** Addresses held to a lower cap than `perAddress` (cut back, or closed as slow), until when. */
  const capped = new Map<string, { cap: number; until: number }>();
  /** Holds `address` to at most `cap` connections for {@link HELD_MS} (the lower cap wins). */
  const hold = (address: string, cap: number, t: number): void => {
    const current = capped.get(address);
    const lower = current !== undefined && current.until > t ? Math.min(current.cap, cap) : cap;
    capped.set(address, { cap: lower, until: t + HELD_MS });
  };
  /** Connections that have not yet completed a request's headers, with when they opened. */
  const awaitingHeaders = new Map<Socket, number>();
  /** Requests whose body is still coming, with when their headers were complete. */
  const uploading = new Map<Socket, { req: IncomingMessage; at: number }>();
  let open = 0;
  let sweeper: NodeJS.Timeout | null = null;

  /** Closes `socket` as slow; its address is held to `slowShare` for a while (not behind a proxy). */
  const shedSlow = (socket: Socket, t: number): void => {
    const address = addressOf.get(socket);
    if (address !== undefined && o.perAddress !== null) hold(address, slowShare, t);
    socket.destroy();
  };

  const sweep = (): void => {
    if (open < threshold) {
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
      return;
    }
    server.closeIdleConnections();
    const t = now();
    const cutoff = t - slowHeadersMs;
    for (const [socket, openedAt] of awaitingHeaders) {
      if (openedAt <= cutoff) shedSlow(socket, t);
    }
    for (const [socket, u] of uploading) {
      if (u.req.complete) uploading.delete(socket);
      else if (u.at <= t - slowBodyMs) shedSlow(socket, t);
    }
    // Behind a proxy every client has its address: nothing to share out.
    for (const [address, sockets] of o.perAddress === null ? [] : byAddress) {
      if (sockets.size <= fairShare) continue;
      hold(address, fairShare, t);
      const newestFirst = [...sockets].reverse();
      for (const socket of newestFirst.slice(0, sockets.size - fairShare)) socket.destroy();
    }
    for (const [address, c] of capped) if (c.until <= t) capped.delete(address);
  };

  server.on('connection', (socket: Socket) => {
    const address = addressKey(socket.remoteAddress);
    let sockets = byAddress.get(address);
    if (sockets === undefined) byAddress.set(address, (sockets = new Set()));
    sockets.add(socket);
    addressOf.set(socket, address);
    open += 1;
    awaitingHeaders.set(socket, now());
    socket.once('close', () => {
      open -= 1;
      awaitingHeaders.delete(socket);
      uploading.delete(socket);
      sockets.delete(socket);
      if (sockets.size === 0 && byAddress.get(address) === sockets) byAddress.delete(address);
    });
    const held = capped.get(address);
    const cap = held !== undefined && held.until > now() ? held.cap : o.perAddress;
    if (cap !== null && sockets.size > cap) {
      socket.destroy();
      return;
    }
    if (open > o.maxConnections) {
      // The oldest connection still without headers (Map order: by opening), else this one.
      const [oldest] = awaitingHeaders.keys();
      (oldest !== undefined && oldest !== socket ? oldest : socket).destroy();
      if (socket.destroyed) return;
    }
    if (open >= threshold && sweeper === null) {
      sweeper = setInterval(sweep, SWEEP_MS);
      sweeper.unref();
    }
  });
  // Headers complete; its body, if any, is watched until it is complete.
  server.on('request', (req: IncomingMessage) => {
    awaitingHeaders.delete(req.socket);
    if (req.complete) uploading.delete(req.socket);
    else uploading.set(req.socket, { req, at: now() });
  });
  server.on('close', () => {
    if (sweeper) clearInterval(sweeper);
    sweeper = null;
  });
}

/**
 * Requests one connection may have in progress at once. HTTP/1.1 lets a client send requests
 * back to back without reading the answers (pipelining); Node starts each as it is parsed, and
 * an async route answers none before its work is done, so one connection that sent 20,000
 * `GET /metrics` in a row had 20,000 renders in flight, stalled the event loop (webhook acks for
 * 15-125 s) and held their answers in memory (a gigabyte and more; outside test QA10-F1). No
 * client Baton serves pipelines: Meta, gateways, Prometheus and browsers send the next request
 * after the answer to the one before.
 */
export const MAX_PIPELINED = 16;

/**
 * Closes a connection that has more than `max` requests in progress at once, before the one over
 * the limit is handled. Requests of the connection already parsed after it reach
 * {@link dropPipelinedTooFar}, which drops them.
 */
export function limitPipelining(server: Server, max: number = MAX_PIPELINED): void {
  const inProgress = new WeakMap<Socket, number>();
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const n = (inProgress.get(socket) ?? 0) + 1;
    inProgress.set(socket, n);
    // A response emits 'close' once, when it is done or its connection is.
    res.once('close', () => inProgress.set(socket, (inProgress.get(socket) ?? 1) - 1));
    if (n > max) socket.destroy();
  });
}

/**
 * A Fastify `onRequest` hook: a request whose connection is closed already (pipelined past
 * {@link limitPipelining}'s limit, or its client gone) is dropped before any work: nobody would
 * read the answer, and a client that got none sends it again.
 */
export function dropPipelinedTooFar(
  req: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  if (req.raw.socket.destroyed) {
    reply.hijack();
    return;
  }
  done();
}
