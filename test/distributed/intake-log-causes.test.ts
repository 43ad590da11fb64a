/**
 * The intake log's restore says why a logged message was missing from Redis, so that an
 * operator looks for the right cause: a message logged while Redis was up and never stored
 * there (its ingress died between the log and Redis) is not reported as lost by Redis; one
 * logged before a Redis restart is. Either way it is stored once, with its first storage time.
 */
import { expect, it } from 'vitest';
import type { DistributedBackend } from '../../src/backends/distributed/index.ts';
import { makeBackend, useCleanup } from './harness.ts';
import { newKey, text } from './fixtures.ts';
import { startPrivateRedis } from '../support/redis-server.ts';
import pg from 'pg';
import { DATABASE_URL, describeServices, pgQuery } from '../support/services.ts';
import type { InboundMessage } from '../../src/model/message.ts';

useCleanup();

/** Writes the intake log's row of `m` as an ingress does before it stores the message in Redis. */
async function logged(schema: string, m: InboundMessage, storedAt: number): Promise<void> {
  await pgQuery(
    schema,
    'INSERT INTO intake_log (channel, user_id, id, stored_at, message) VALUES ($1, $2, $3, $4, $5)',
    [m.channel, m.user, m.id, new Date(storedAt), JSON.stringify({ ...m, storedAt })],
  );
}

/** A message logged 5 s ago and consumed since (in `inbound`): its log row is the sweep's. */
async function loggedAndConsumed(schema: string, body: string): Promise<InboundMessage> {
  const m = text(newKey(), body);
  const at = new Date(Date.now() - 5_000);
  await logged(schema, m, at.getTime());
  await pgQuery(
    schema,
    `INSERT INTO inbound (channel, user_id, id, seq, message, stored_at, consumed_at, entry_id, outcome)
     VALUES ($1, $2, $3, 1, '{}', $4, $4, 'e', 'applied')`,
    [m.channel, m.user, m.id, at],
  );
  return m;
}

/** Holds the log row of message `id` in an open transaction; resolves with its release. */
async function holdLogRow(schema: string, id: string): Promise<() => Promise<void>> {
  const holder = new pg.Client({ connectionString: DATABASE_URL, options: `-c search_path=${schema}` });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM intake_log WHERE id = $1 FOR UPDATE', [id]);
  return async () => {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end().catch(() => undefined);
  };
}

async function restoredOnce(backend: DistributedBackend, m: InboundMessage, storedAt: number): Promise<void> {
  const pending = await backend.pending(m, 10);
  expect(pending.map((p) => [p.id, p.storedAt])).toEqual([[m.id, storedAt]]);
}

describeServices('intake log: why a logged message was missing from Redis', () => {
  it('a message its ingress logged and never stored in Redis (Redis up all along) is stored from the log, not reported as lost by Redis', async () => {
    const { backend, schema, logger } = await makeBackend({ intakeLog: 'on', bufferMs: 60_000 });
    const m = text(newKey(), 'hi');
    const storedAt = Date.now() - 2_000;
    await logged(schema, m, storedAt);

    await backend.reapOnce(30_000, { force: true });

    await restoredOnce(backend, m, storedAt);
    const warnings = logger.lines.filter((l) => l.level === 'warn' && l.msg.startsWith('intake log:'));
    expect(warnings.map((w) => [w.msg, w.obj])).toEqual([
      [expect.stringContaining('not in Redis'), { restored: 1, afterMs: 500 }],
    ]);
    expect(warnings[0]!.msg).not.toContain('lost by Redis');
    // Its webhook's own write to Redis, late, finds it stored: a duplicate.
    expect(await backend.ingest({ messages: [m], statuses: [] })).toMatchObject({
      accepted: 0,
      duplicates: 1,
    });
    await restoredOnce(backend, m, storedAt);
  });

  it('a message logged before Redis restarted empty is reported as lost by Redis', async () => {
    const redis = await startPrivateRedis({ persist: false });
    try {
      const { backend, logger } = await makeBackend({
        redisUrl: redis.url,
        intakeLog: 'on',
        bufferMs: 60_000,
      });
      const m = text(newKey(), 'hi');
      await backend.ingest({ messages: [m], statuses: [] });
      const storedAt = (await backend.pending(m, 10))[0]!.storedAt;
      // Redis's lifetime must start at least a second after the message was logged (its uptime
      // is told to the second).
      await new Promise((r) => setTimeout(r, 1_100));
      await redis.kill();
      await redis.restart(); // empty
      await expect.poll(async () => (await backend.health()).redis, { timeout: 10_000 }).toBe(true);

      await expect
        .poll(async () => {
          await backend.reapOnce(30_000, { force: true });
          return (await backend.pending(m, 10)).length;
        })
        .toBe(1);

      await restoredOnce(backend, m, storedAt);
      const warnings = logger.lines.filter((l) => l.level === 'warn' && l.msg.startsWith('intake log:'));
      expect(warnings.length).toBeGreaterThan(0);
      for (const w of warnings) expect(w.msg).toContain('lost by Redis');
      expect(warnings.reduce((n, w) => n + (w.obj as { restored: number }).restored, 0)).toBe(1);
    } finally {
      await redis.stop();
    }
  }, 30_000);

  it('restores what Redis lost at once when it is back, whatever the log sweep meets (outside test QA108-F1)', async () => {
    const redis = await startPrivateRedis({ persist: false });
    let release = async (): Promise<void> => undefined;
    try {
      const { backend, schema } = await makeBackend({
        redisUrl: redis.url,
        intakeLog: 'on',
        bufferMs: 60_000,
      });
      const m = text(newKey(), 'hi');
      await backend.ingest({ messages: [m], statuses: [] });
      // A message PostgreSQL has consumed: its log row is the sweep's to delete, and a
      // transaction holds it (a sweep that waited on it held the restore up for PostgreSQL's
      // query timeout, 15 s; it now skips the row, and the restore waits for it a second at most).
      const old = await loggedAndConsumed(schema, 'consumed');
      release = await holdLogRow(schema, old.id);

      await redis.kill();
      await redis.restart(); // empty
      // Back in its mailbox within moments, by the pass that follows the outage (no reaper here).
      await expect.poll(async () => (await backend.pending(m, 10)).length, { timeout: 6_000 }).toBe(1);
    } finally {
      await release();
      await redis.stop();
    }
  }, 30_000);

  it('the log sweep skips rows another statement holds instead of waiting on them (outside test QA112-F1)', async () => {
    // Every process sweeps after a Redis restart; two sweeps that took the same rows in opposite
    // orders deadlocked. A sweep now leaves rows another holds to that one.
    let release = async (): Promise<void> => undefined;
    try {
      const { backend, schema } = await makeBackend({ intakeLog: 'on', bufferMs: 60_000 });
      const held = await loggedAndConsumed(schema, 'held');
      const free = await loggedAndConsumed(schema, 'free');
      release = await holdLogRow(schema, held.id);

      const started = Date.now();
      await backend.reapOnce(30_000, { force: true }); // sweeps, then restores
      expect(Date.now() - started).toBeLessThan(5_000); // not PostgreSQL's 15 s query timeout
      const left = await pgQuery<{ id: string }>(schema, 'SELECT id FROM intake_log WHERE id = ANY($1)', [
        [held.id, free.id],
      ]);
      expect(left.map((r) => r.id)).toEqual([held.id]); // the free one swept, the held one left
    } finally {
      await release();
    }
  }, 30_000);
});
