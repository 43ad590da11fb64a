/**
 * One-shot commands (session show|reset, lock clear, migrate) against a distributed store, run
 * as an operator runs them: they print their answer or one error line, none of a server's
 * start-up notices; and an inspection creates nothing, so a mistyped BATON_PG_SCHEMA is an error
 * naming it, not an empty new deployment answering "no session".
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { freePort, runBaton } from '../support/procs.ts';
import { DATABASE_URL, describeServices, pgQuery, REDIS_URL } from '../support/services.ts';

const id = randomBytes(5).toString('hex');
const schema = `baton_clitest_${id}`;
const prefix = `baton_clitest_${id}`;
// LOG_LEVEL=info, as a server's .env may set it: one-shot commands stay quiet all the same.
const env = {
  REDIS_URL,
  DATABASE_URL,
  BATON_PG_SCHEMA: schema,
  BATON_REDIS_PREFIX: prefix,
  LOG_LEVEL: 'info',
};

async function redisKeys(): Promise<string[]> {
  const redis = new Redis(REDIS_URL);
  try {
    return await redis.keys(`${prefix}*`);
  } finally {
    redis.disconnect();
  }
}

async function schemaExists(): Promise<boolean> {
  const rows = await pgQuery<{ n: number }>(
    'public',
    'SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1',
    [schema],
  );
  return rows[0]!.n === 1;
}

afterAll(async () => {
  await pgQuery('public', `DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
  const keys = await redisKeys().catch(() => []);
  if (keys.length > 0) {
    const redis = new Redis(REDIS_URL);
    await redis.del(...keys);
    redis.disconnect();
  }
});

describeServices('one-shot commands on a distributed store', () => {
  it('read-only commands on a schema never migrated: one line naming it, exit 1, nothing created', async () => {
    for (const args of [
      ['session', 'show', '15550001111'],
      ['lock', 'clear', '15550001111'],
      ['session', 'reset', '15550001111'],
    ]) {
      const r = await runBaton(args, env);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(
        `baton: schema "${schema}" does not exist (run baton migrate, or check BATON_PG_SCHEMA)\n`,
      );
      expect(r.stdout).toBe('');
    }
    expect(await schemaExists()).toBe(false);
    expect(await redisKeys()).toEqual([]);
    // Three processes started one after another: on a busy machine each took up to ten seconds.
  }, 90_000);

  it('migrate, then session show: their answers alone, no start-up log lines', async () => {
    const m = await runBaton(['migrate'], env);
    expect(m).toMatchObject({ code: 0, stderr: '' });
    // What it applied, by name; run again, nothing (outside test QA45-F6: the same line either way).
    expect(m.stdout).toMatch(
      /^migrated \(distributed\): applied 001_initial\.sql, .*, 009_signed_out\.sql\n$/,
    );
    expect(await schemaExists()).toBe(true);
    expect(await runBaton(['migrate'], env)).toMatchObject({
      code: 0,
      stdout: 'migrated (distributed): already up to date\n',
    });
    const s = await runBaton(['session', 'show', '15550001111'], env);
    expect(s).toMatchObject({ code: 1, stdout: '', stderr: 'baton: No session for 15550001111\n' });
  }, 60_000);

  it('migrate with Redis away: one line saying why, no log line before it (outside test QA6-L7)', async () => {
    const port = await freePort();
    const m = await runBaton(['migrate'], { ...env, REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(m).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `baton: Redis is unreachable at 127.0.0.1:${port} (REDIS_URL): connect ECONNREFUSED 127.0.0.1:${port}\n`,
    });
  }, 60_000);
});
