/**
 * The distributed purge's cadence follows a short message retention (an outside test's `5s`
 * kept texts for up to 10 minutes): half the retention, between once a minute and every 10.
 */
import { expect, it } from 'vitest';
import { defaultPurgeInterval } from '../../src/backends/distributed/maintenance.ts';

it('runs every 10 minutes by default, as often as half a short message retention, at most once a minute', () => {
  expect(defaultPurgeInterval(undefined)).toBe(600_000);
  expect(defaultPurgeInterval(30 * 86_400)).toBe(600_000);
  expect(defaultPurgeInterval(600)).toBe(300_000);
  expect(defaultPurgeInterval(5)).toBe(60_000);
});
