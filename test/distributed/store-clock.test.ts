/**
 * The store clock (src/backends/distributed/store-clock.ts) on a real Redis: it reads Redis's
 * time whatever the process's wall clock says, and never goes backwards.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { StoreClock } from '../../src/backends/distributed/store-clock.ts';
import { distributedServicesUp, REDIS_URL } from '../support/services.ts';

const up = await distributedServicesUp('store clock tests');

async function redisMs(redis: Redis): Promise<number> {
  const [sec = 0, usec = 0] = await redis.time();
  return Number(sec) * 1000 + Number(usec) / 1000;
}

describe.skipIf(!up)('StoreClock', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await redis.quit();
  });

  it("reads Redis's clock, not the process's wall clock 10 minutes off", async () => {
    const wall = Date.now;
    vi.spyOn(Date, 'now').mockImplementation(() => wall() - 600_000);
    const clock = new StoreClock(redis);
    expect(Math.abs(clock.now() - (await redisMs(redis)))).toBeGreaterThan(500_000);
    await clock.sync();
    const before = await redisMs(redis);
    const t = clock.now();
    const after = await redisMs(redis);
    expect(t).toBeGreaterThanOrEqual(Math.floor(before) - 20);
    expect(t).toBeLessThanOrEqual(Math.ceil(after) + 20);
    vi.restoreAllMocks();
  });

  it('never goes backwards when a sync finds it ahead', async () => {
    const wall = Date.now;
    vi.spyOn(Date, 'now').mockImplementation(() => wall() + 60_000);
    const clock = new StoreClock(redis);
    const ahead = clock.now();
    await clock.sync();
    const later = clock.now();
    expect(later).toBe(ahead);
    vi.restoreAllMocks();
  });
});
