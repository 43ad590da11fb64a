/**
 * Real Redis and PostgreSQL for the suites that need them: where they are, whether they
 * answer (checked once, on import), and per-test isolation (a unique key prefix and a unique
 * schema, dropped afterwards). Under CI=true a missing service fails the run; elsewhere its
 * suites are skipped with a loud notice.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe } from 'vitest';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function redisAnswers(url: string): Promise<string | null> {
  const r = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1500,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.ping();
    return null;
  } catch (err) {
    return `Redis at ${url}: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    r.disconnect();
  }
}

async function postgresAnswers(url: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return null;
  } catch (err) {
    return `PostgreSQL at ${url}: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await c.end().catch(() => undefined);
  }
}

const problems = (await Promise.all([redisAnswers(REDIS_URL), postgresAnswers(DATABASE_URL)])).filter(
  (p): p is string => p !== null,
);

if (problems.length > 0) {
  const line = `distributed suites need Redis and PostgreSQL: ${problems.join('; ')}`;
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: failing)`);
  console.warn(
    `\n${'!'.repeat(100)}\n!! SKIPPED: ${line}\n!! Set REDIS_URL / DATABASE_URL or start the services to run them.\n${'!'.repeat(100)}\n`,
  );
}

/** True when both services answered. */
export const servicesUp = problems.length === 0;

/** `describe`, skipped (loudly, above) when the services are not there. */
export const describeServices = servicesUp ? describe : describe.skip;

/**
 * {@link servicesUp}, for suites gated with `describe.skipIf` / `it.skipIf`; names the suite
 * when it is skipped.
 */
export async function distributedServicesUp(suite: string): Promise<boolean> {
  if (!servicesUp) console.warn(`!!! SKIPPING ${suite}: Redis or PostgreSQL unreachable (see above) !!!`);
  return servicesUp;
}

/** A fresh key prefix and schema for one test. */
export function isolation(): { prefix: string; schema: string } {
  const id = randomBytes(6).toString('hex');
  return { prefix: `baton-test-${id}`, schema: `baton_test_${id}` };
}

/**
 * A name unique to this run, usable as a Redis prefix and a PostgreSQL schema (also where
 * Baton's config wants lower-case letters, digits and `_`).
 */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Deletes every key under `prefix` and drops `schema` (each when given). */
export async function dropIsolation(
  prefix: string | null,
  schema: string | null,
  redisUrl = REDIS_URL,
): Promise<void> {
  if (prefix !== null) await dropKeys(prefix, redisUrl);
  if (schema === null) return;
  const c = new pg.Client({ connectionString: DATABASE_URL });
  try {
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function dropKeys(prefix: string, redisUrl: string): Promise<void> {
  const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== '0');
  } catch {
    // a test's own Redis may be gone already
  } finally {
    r.disconnect();
  }
}

/** A logger that keeps what it is told, for assertions, and prints nothing. */
export function memoryLogger(): {
  lines: Array<{ level: string; obj: object; msg: string }>;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
} {
  const lines: Array<{ level: string; obj: object; msg: string }> = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
  };
}

/** Runs a query against one test schema. */
export async function pgQuery<T extends pg.QueryResultRow>(
  schema: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ connectionString: DATABASE_URL, options: `-c search_path=${schema}` });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** One backend a harness can run on: its name, whether it can run here, and its env and cleanup. */
export type HarnessBackend = [
  name: string,
  available: boolean,
  setup: () => { env: Record<string, string>; drop: () => Promise<void> },
];

/** Embedded, and distributed on its own Redis prefix and PostgreSQL schema (when the services are up). */
export const HARNESS_BACKENDS: HarnessBackend[] = [
  ['embedded', true, () => ({ env: {}, drop: async () => undefined })],
  [
    'distributed',
    servicesUp,
    () => {
      const iso = isolation();
      const prefix = iso.prefix.replace(/-/g, '_');
      return {
        env: {
          REDIS_URL,
          DATABASE_URL,
          BATON_REDIS_PREFIX: prefix,
          BATON_PG_SCHEMA: iso.schema,
        },
        drop: () => dropIsolation(prefix, iso.schema),
      };
    },
  ],
];
