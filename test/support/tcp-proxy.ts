/**
 * A TCP proxy a test can cut or slow down: `block()` drops every connection and refuses new
 * ones, as a database that went away would; `unblock()` lets traffic through again. With
 * `delayMs`, every chunk a client sends is held for a random while (within the bounds) before
 * it is passed on, in order: a store reached through it answers as one over a slow link would
 * (answers come back at once).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  block(): void;
  unblock(): void;
  /** Holds what clients send (connections stay open, nothing answers), as a black hole would. */
  stall(): void;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  readonly targetHost?: string;
  /** Hold each client-to-server chunk this long, a random value between the bounds. */
  readonly delayMs?: { readonly min: number; readonly max: number };
}

/**
 * Passes `client`'s chunks to `upstream`, each after its own delay but never before the chunk
 * sent ahead of it: one queue and one timer per connection (timers of different lengths may
 * fire out of order).
 */
function delayed(client: Socket, upstream: Socket, delayMs: { min: number; max: number }): void {
  const queue: Array<{ chunk: Buffer; at: number }> = [];
  let timer: NodeJS.Timeout | null = null;
  const release = (): void => {
    timer = null;
    while (queue.length > 0 && queue[0]!.at <= Date.now()) {
      if (!upstream.destroyed) upstream.write(queue.shift()!.chunk);
      else queue.shift();
    }
    if (queue.length > 0) timer = setTimeout(release, queue[0]!.at - Date.now());
  };
  client.on('data', (chunk: Buffer) => {
    const delay = delayMs.min + Math.random() * (delayMs.max - delayMs.min);
    const last = queue.at(-1)?.at ?? 0;
    queue.push({ chunk, at: Math.max(last, Date.now() + delay) });
    timer ??= setTimeout(release, queue[0]!.at - Date.now());
  });
  client.on('close', () => {
    if (timer) clearTimeout(timer);
  });
}

export async function startTcpProxy(targetPort: number, opts: TcpProxyOptions = {}): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let blocked = false;
  let stalled = false;
  const server: Server = createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, opts.targetHost ?? '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    if (opts.delayMs) delayed(client, upstream, opts.delayMs);
    else client.pipe(upstream);
    upstream.pipe(client);
    if (stalled) client.pause();
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address() as { port: number };
  return {
    port,
    block() {
      blocked = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    unblock() {
      blocked = false;
    },
    stall() {
      stalled = true;
      for (const s of sockets) s.pause();
    },
    close() {
      blocked = true;
      for (const s of sockets) s.destroy();
      return new Promise((res) => server.close(() => res()));
    },
  };
}

/** Each service's port when its URL names none. */
const DEFAULT_PORTS: Record<string, number> = {
  'redis:': 6379,
  'rediss:': 6379,
  'postgres:': 5432,
  'postgresql:': 5432,
};

/**
 * A proxy in front of the service `serviceUrl` names (Redis or PostgreSQL), and the URL that
 * reaches the service through it: what a test gives the store it will cut off or slow down.
 */
export async function proxyOf(
  serviceUrl: string,
  opts: TcpProxyOptions = {},
): Promise<{ proxy: TcpProxy; url: string }> {
  const via = new URL(serviceUrl);
  const proxy = await startTcpProxy(Number(via.port || DEFAULT_PORTS[via.protocol]), opts);
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  return { proxy, url: via.toString() };
}
