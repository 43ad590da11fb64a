/**
 * The deployment's figures while PostgreSQL stalls (SIGSTOP: connections hang, no error comes)
 * and Redis answers: a `baton ingress` on a PostgreSQL and a Redis (AOF, so the intake log is
 * off and webhooks are stored while PostgreSQL is away) of the test's own. `/metrics` and
 * `/admin/api/stats` answer within seconds with the queue figures Redis has now, the counts only
 * PostgreSQL has marked as the last ones read (outside test QA118-F2: `/metrics` took 13-15 s,
 * past a scraper's timeout, and said a queue depth of 43 while 514 messages waited).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import { postgresBinDir, startPrivatePostgres, type PrivatePostgres } from '../support/pg-server.ts';
import { freePort, postSigned, spawnBaton, type BatonProcess } from '../support/procs.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.ts';
import { uniqueName } from '../support/services.ts';
import { eventually } from '../distributed/fixtures.ts';

const missing = [
  postgresBinDir() === null ? 'PostgreSQL server binaries (initdb, pg_ctl)' : null,
  spawnSync('redis-server', ['--version']).status !== 0 ? 'redis-server' : null,
].filter((x): x is string => x !== null);
if (missing.length > 0) {
  const line = `the stats-under-a-PostgreSQL-stall test needs ${missing.join(' and ')}`;
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: failing)`);
  console.warn(`\n!!! SKIPPING: ${line} !!!\n`);
}

/** A scraper's timeout is 10 s by default: an answer must come well within it. */
const ANSWER_WITHIN_MS = 8_000;

describe.skipIf(missing.length > 0)('stats while PostgreSQL stalls', () => {
  let pg: PrivatePostgres;
  let redis: PrivateRedis;
  let ingress: BatonProcess | undefined;

  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPrivatePostgres(), startPrivateRedis({ persist: true })]);
  }, 60_000);
  afterAll(async () => {
    pg?.resume();
    await ingress?.stop('SIGKILL');
    await Promise.all([pg?.destroy(), redis?.stop()]);
  });

  it('/metrics and /admin/api/stats give the queue Redis has now, and say which figures are the last read', async () => {
    const port = await freePort();
    ingress = await spawnBaton(['ingress'], {
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redis.url,
      DATABASE_URL: pg.url,
      BATON_REDIS_PREFIX: uniqueName('stall'),
      BATON_PG_SCHEMA: uniqueName('stall'),
      BATON_INTAKE_LOG: 'off',
      WHATSAPP_APP_SECRET: APP_SECRET,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: '0',
    });
    const base = `http://127.0.0.1:${port}`;
    const metrics = async (): Promise<string> =>
      (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(ANSWER_WITHIN_MS) })).text();
    const stats = async (): Promise<Record<string, unknown>> =>
      (await (
        await fetch(`${base}/admin/api/stats`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
        })
      ).json()) as Record<string, unknown>;
    const gauge = (page: string, name: string): number | undefined => {
      const line = page.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.slice(name.length + 1));
    };

    // Read once with PostgreSQL up: its counts are known.
    const before = await metrics();
    expect(gauge(before, 'baton_figures_up{figures="queue"}')).toBe(1);
    expect(gauge(before, 'baton_figures_up{figures="durable"}')).toBe(1);
    expect(await stats()).not.toHaveProperty('stale');

    pg.pause();
    const users = Array.from({ length: 5 }, (_, i) => `1777200${String(i).padStart(4, '0')}`);
    const now = Math.floor(Date.now() / 1000);
    for (const u of users)
      expect(await postSigned(base, webhook([text(u, 'hi', now)]), APP_SECRET)).toBe(200);

    // No worker runs: the five wait, and Redis says so while PostgreSQL is stalled.
    const page = await eventually(async () => {
      const p = await metrics();
      return gauge(p, 'baton_queue_depth') === users.length ? p : null;
    }, 20_000);
    expect(gauge(page, 'baton_figures_up{figures="queue"}')).toBe(1);
    expect(gauge(page, 'baton_figures_up{figures="durable"}')).toBe(0);
    const s = await stats();
    expect(s).toMatchObject({ queue_depth: users.length, stale: ['dead_letters'] });

    pg.resume();
    await eventually(async () => {
      const p = await metrics();
      return gauge(p, 'baton_figures_up{figures="durable"}') === 1 ? true : null;
    }, 20_000);
    expect(await stats()).not.toHaveProperty('stale');
  }, 120_000);
});
