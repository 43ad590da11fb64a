/**
 * An outside test ran Redis with a memory limit and an LRU policy (ElastiCache's default is
 * `volatile-lru`): Redis evicted some 940 dedupe markers, and redelivered webhooks were applied
 * a second time, with no word from Baton. Baton reads the policy at start and says so.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { evictionWarning } from '../../src/backends/distributed/persistence.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.ts';

describe('a Redis that may evict keys', () => {
  let server: PrivateRedis;
  let redis: Redis;
  beforeAll(async () => {
    server = await startPrivateRedis({ persist: false });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('is named at start: its policy and limit, and what to set instead', async () => {
    await redis.config('SET', 'maxmemory', '100mb');
    await redis.config('SET', 'maxmemory-policy', 'volatile-lru');
    expect(await evictionWarning(redis)).toMatch(/maxmemory-policy is "volatile-lru".*noeviction/);
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    expect(await evictionWarning(redis)).toBeNull();
    // No memory limit: nothing is evicted, whatever the policy.
    await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
    await redis.config('SET', 'maxmemory', '0');
    expect(await evictionWarning(redis)).toBeNull();
  });

  it('is named where CONFIG is refused, as managed Redis does, from INFO', async () => {
    await redis.config('SET', 'maxmemory', '100mb');
    await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
    // A client whose CONFIG is refused (managed Redis renames or disables it).
    const refusing = new Redis(server.url);
    vi.spyOn(refusing, 'config').mockRejectedValue(new Error("ERR unknown command 'CONFIG'"));
    try {
      expect(await evictionWarning(refusing)).toMatch(/"allkeys-lru"/);
    } finally {
      refusing.disconnect();
    }
  });
});
