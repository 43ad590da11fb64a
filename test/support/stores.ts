/**
 * The two stores an end-to-end suite runs against: embedded always, distributed (the machine's
 * Redis and PostgreSQL, under a key prefix and schema of the suite's own, dropped afterwards)
 * when they are up. For `describe.each`: `[name, env]`, env being what to start Baton with.
 */
import { afterAll } from 'vitest';
import { DATABASE_URL, REDIS_URL, dropIsolation, isolation, servicesUp } from './services.ts';

export function bothStores(): Array<[string, () => Record<string, string>]> {
  const modes: Array<[string, () => Record<string, string>]> = [['embedded', () => ({})]];
  if (!servicesUp) return modes;
  const iso = isolation();
  const prefix = iso.prefix.replace(/-/g, '_');
  modes.push([
    'distributed',
    () => ({ REDIS_URL, DATABASE_URL, BATON_REDIS_PREFIX: prefix, BATON_PG_SCHEMA: iso.schema }),
  ]);
  afterAll(() => dropIsolation(prefix, iso.schema));
  return modes;
}
