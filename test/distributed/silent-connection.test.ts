/**
 * A Redis connection cut without a reset (the path gone, a NAT that forgot it) is dropped and
 * made again, instead of timing out every command until the kernel gives up on it, about 15
 * minutes later (silent-connection.ts; outside test QA1-1). Through a TCP proxy to the machine's
 * Redis that can black-hole the connections it has (they stay open, every byte is dropped) while
 * new ones go through.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import { createRedisClient } from '../../src/backends/distributed/redis-client.ts';
import { REDIS_URL, describeServices, uniqueName } from '../support/services.ts';

interface Proxy {
  readonly port: number;
  /** Drops every byte of the connections open now, both ways, and keeps them open. */
  blackHole(): void;
  /** Connections made so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

async function startProxy(): Promise<Proxy> {
  const target = new URL(REDIS_URL);
  const pairs: Array<{ client: Socket; upstream: Socket; dead: boolean }> = [];
  const server: Server = createServer((client) => {
    const upstream = createConnection(Number(target.port || 6379), target.hostname || '127.0.0.1');
    const pair = { client, upstream, dead: false };
    pairs.push(pair);
    client.on('data', (b) => void (pair.dead || upstream.write(b)));
    upstream.on('data', (b) => void (pair.dead || client.write(b)));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    blackHole: () => {
      for (const p of pairs) p.dead = true;
    },
    get accepted() {
      return pairs.length;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const p of pairs) {
          p.client.destroy();
          p.upstream.destroy();
        }
        server.close(() => r());
      }),
  };
}

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A client of the machine's Redis through a proxy, watched with `silentMs`; the drops it reports. */
async function watchedThroughProxy(
  silentMs: number,
): Promise<{ proxy: Proxy; redis: Redis; dropped: string[] }> {
  const proxy = await startProxy();
  closers.push(() => proxy.close());
  const dropped: string[] = [];
  const redis = createRedisClient({
    url: `redis://127.0.0.1:${proxy.port}`,
    cluster: false,
    commandTimeoutMs: 200,
    silentMs,
    onSilent: (address) => dropped.push(address),
  }) as Redis;
  closers.push(() => redis.disconnect());
  await redis.connect();
  return { proxy, redis, dropped };
}

describeServices('a Redis connection cut without a reset', () => {
  it('is dropped once commands wait with nothing heard, and the client works again on a new one', async () => {
    const { proxy, redis, dropped } = await watchedThroughProxy(400);
    const key = uniqueName('silent');
    closers.push(async () => {
      const direct = new Redis(REDIS_URL);
      await direct.del(key);
      direct.disconnect();
    });
    expect(await redis.set(key, 'before')).toBe('OK');
    expect(proxy.accepted).toBe(1);

    proxy.blackHole();
    await expect(redis.get(key)).rejects.toThrow(/timed out/i);
    // Commands keep failing on the dead connection until it is dropped; then a new one serves.
    const started = Date.now();
    let value: string | null = null;
    while (Date.now() - started < 5_000) {
      value = await redis.get(key).catch(() => null);
      if (value !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(value).toBe('before');
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(proxy.accepted).toBe(2);
    expect(dropped).toEqual([`127.0.0.1:${proxy.port}`]);
  });

  it('an idle connection, and one whose commands are answered, are left alone', async () => {
    const { proxy, redis, dropped } = await watchedThroughProxy(100);
    // Idle for several checks, then busy for several more.
    await new Promise((r) => setTimeout(r, 500));
    const until = Date.now() + 600;
    while (Date.now() < until) await redis.ping();
    expect(dropped).toEqual([]);
    expect(proxy.accepted).toBe(1);
  });
});
