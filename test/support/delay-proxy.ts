/**
 * A TCP proxy that holds every chunk a client sends for a random while before passing it on,
 * in order: a store reached through it answers as a store over a slow link would. Only the
 * client-to-server direction is delayed; answers come back at once.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface DelayProxy {
  readonly port: number;
  /** Chunks passed on so far. */
  readonly chunks: () => number;
  close(): Promise<void>;
}

export async function startDelayProxy(
  targetPort: number,
  delayMs: { readonly min: number; readonly max: number },
  targetHost = '127.0.0.1',
): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  let passed = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
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
    // Each chunk leaves after its own delay, never before the chunk sent ahead of it: one queue
    // and one timer per connection (timers of different lengths may fire out of order).
    const queue: Array<{ chunk: Buffer; at: number }> = [];
    let timer: NodeJS.Timeout | null = null;
    const release = (): void => {
      timer = null;
      while (queue.length > 0 && queue[0]!.at <= Date.now()) {
        passed += 1;
        if (!upstream.destroyed) upstream.write(queue.shift()!.chunk);
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
    upstream.pipe(client);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address() as { port: number };
  return {
    port,
    chunks: () => passed,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((res) => server.close(() => res()));
    },
  };
}
