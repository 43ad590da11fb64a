/**
 * Real-service gating: suites that need Redis or PostgreSQL run when the service answers;
 * under CI=true a missing service fails the run, elsewhere the suite is skipped loudly.
 */
import { connect } from 'node:net';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((res) => {
    const s = connect(Number(u.port || defaultPort), u.hostname || '127.0.0.1');
    s.setTimeout(1000);
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('error', () => res(false));
    s.once('timeout', () => (s.destroy(), res(false)));
  });
}

/** Whether Redis and PostgreSQL answer. Throws under CI=true when one does not. */
export async function distributedServicesUp(suite: string): Promise<boolean> {
  const [redis, pg] = await Promise.all([reachable(REDIS_URL, 6379), reachable(DATABASE_URL, 5432)]);
  if (redis && pg) return true;
  const missing = [!redis && `Redis (${REDIS_URL})`, !pg && `PostgreSQL (${DATABASE_URL})`]
    .filter(Boolean)
    .join(' and ');
  if (process.env.CI === 'true') throw new Error(`${suite}: ${missing} unreachable, and CI=true requires it`);
  console.warn(`\n!!! SKIPPING ${suite}: ${missing} unreachable (set REDIS_URL / DATABASE_URL) !!!\n`);
  return false;
}

/** A name unique to this run, usable as a Redis prefix and a PostgreSQL schema. */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}
