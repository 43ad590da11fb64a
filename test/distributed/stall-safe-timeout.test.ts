/**
 * A process that stalls for longer than the Redis command timeout does not take the commands
 * Redis ran meanwhile for failures (stall-safe-timeout.ts); a Redis that does not answer still
 * times out. On the machine's Redis, and on a TCP server that never answers.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import { createRedisClient } from '../../src/backends/distributed/redis-client.ts';
import { REDIS_URL, describeServices, uniqueName } from '../support/services.ts';

/** Blocks this process's event loop for `ms`, as a long stall would. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

describeServices('Redis command timeouts and a stalled process', () => {
  it('a command Redis answered during a stall longer than the timeout succeeds', async () => {
    const redis = createRedisClient({ url: REDIS_URL, cluster: false, commandTimeoutMs: 100 }) as Redis;
    closers.push(() => redis.disconnect());
    await redis.connect();
    const key = uniqueName('stall');
    closers.push(async () => void (await new Redis(REDIS_URL).del(key)));
    const set = redis.set(key, '1');
    const piped = redis.pipeline().incr(key).get(key).exec();
    // Long enough for Redis to have answered by the end even on a machine busy with the rest of
    // the suite (at 600 ms a CI run once found the reply not there yet: no stall-safety at stake).
    stall(2000);
    await expect(set).resolves.toBe('OK');
    expect(await piped).toEqual([
      [null, 2],
      [null, '2'],
    ]);
  });

  it('a command that settles leaves no timer behind', async () => {
    const redis = createRedisClient({ url: REDIS_URL, cluster: false, commandTimeoutMs: 60_000 }) as Redis;
    closers.push(() => redis.disconnect());
    await redis.connect();
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    await Promise.all(Array.from({ length: 200 }, () => redis.ping()));
    expect(timers() - before).toBeLessThan(10);
  });

  it('a Redis that never answers still times out', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    closers.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const { port } = silent.address() as { port: number };
    // (The timeout is installed for every ioredis client of the process, with redis-client.ts.)
    const redis = new Redis({ port, enableReadyCheck: false, commandTimeout: 200, maxRetriesPerRequest: 0 });
    redis.on('error', () => undefined);
    closers.push(() => redis.disconnect());
    const started = Date.now();
    await expect(redis.call('PING')).rejects.toThrow('Command timed out');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
