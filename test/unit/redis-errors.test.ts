/**
 * Telling "Redis is unavailable for now" (503, retry) from a bug (500), on the errors ioredis
 * and Redis really raise.
 */
import { expect, it } from 'vitest';
import { isRedisUnavailable } from '../../src/backends/distributed/redis-errors.ts';

const reply = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' });

it.each([
  reply('CLUSTERDOWN The cluster is down'),
  reply('TRYAGAIN Multiple keys request during rehashing of slot'),
  reply('LOADING Redis is loading the dataset in memory'),
  new Error('Connection is closed.'),
  new Error('connect ECONNREFUSED 127.0.0.1:6379'),
  // A pipeline a slot migration split across nodes (outside test QA56-F1: a 500 from the admin API).
  new Error('All keys in the pipeline should belong to the same slots allocation group'),
])('%s is unavailable: retry later', (err) => {
  expect(isRedisUnavailable(err)).toBe(true);
});

it.each([
  reply('ERR wrong number of arguments'),
  reply('NOSCRIPT No matching script'),
  new TypeError('x is not a function'),
  'a string',
])('%s is no outage', (err) => {
  expect(isRedisUnavailable(err)).toBe(false);
});
