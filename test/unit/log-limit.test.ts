/** Repeated log lines are limited per kind, and the next one says how many were skipped (log-limit.ts). */
import { expect, it } from 'vitest';
import { LogLimiter } from '../../src/log-limit.ts';

it('runs a kind once per period, then says how many it skipped', () => {
  let t = 0;
  const limiter = new LogLimiter(5000, () => t);
  const lines: Array<[string, number]> = [];
  for (let i = 0; i < 30; i++) limiter.run('store', (n) => lines.push(['store', n]));
  limiter.run('queue', (n) => lines.push(['queue', n]));
  t = 5000;
  limiter.run('store', (n) => lines.push(['store', n]));
  expect(lines).toEqual([
    ['store', 0],
    ['queue', 0],
    ['store', 29],
  ]);
});
