/**
 * The message retention in PostgreSQL keeps a failed effect call's record, redacted as a done
 * one's is, and deletes a reply that failed (outside test QA9-F2, in the distributed store's own
 * SQL: retention-outbound-redact.sql and retention-outbound-failed-purge.sql).
 */
import pg from 'pg';
import { expect, it } from 'vitest';
import { postgresBinDir, startPrivatePostgres } from '../support/pg-server.ts';
import { describeServices, pgQuery } from '../support/services.ts';
import { batch, eventually, newKey, outbound } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

describeServices('distributed backend: retention of effect records', () => {
  useCleanup();

  it('deletes a reply that failed but keeps a failed effect call, redacted as a done one', async () => {
    let now = Date.now();
    const { backend: b, schema } = await makeBackend({
      now: () => now,
      retentionSec: 86_400,
      messageRetentionSec: 600,
      purgeIntervalMs: 0,
    });
    const key = newKey();
    const lease = (await b.acquireLease(key, 'w1', 5000))!;
    // Made now (the fixture's records are from 2025, past any retention).
    const made = (n: number) => ({ ...outbound(key, 1, n), createdAt: now + n });
    const effect = (n: number) => ({
      ...made(n),
      body: { type: 'text' as const, text: `lookup ${n}` },
      effect: { id: `fx_${n}`, name: 'lookup', input: { order: 'ORD-1' }, data: {} },
    });
    const reply = made(3);
    await b.commit(lease, batch(key, 0, 1, { outbound: [effect(1), effect(2), reply] }));
    await b.updateOutbound(effect(1).id, { status: 'failed', attempts: 3, lastError: 'shop answered 500' });
    await b.updateOutbound(effect(2).id, { status: 'sent', attempts: 1 });
    await b.updateOutbound(reply.id, { status: 'failed', attempts: 1, lastError: 'Graph 131047' });
    const stored = () =>
      pgQuery<{ effect: string | null; status: string; text: string }>(
        schema,
        `SELECT record #>> '{effect,id}' AS effect, status, record #>> '{body,text}' AS text
         FROM outbound ORDER BY seq`,
      );
    // The status changes reach PostgreSQL (write-through commits; statuses are copied after).
    await eventually(async () => {
      const rows = await stored();
      return rows.map((r) => r.status).join() === 'failed,sent,failed' ? rows : null;
    });
    now += 3_600_000;
    expect(await b.purge()).toMatchObject({ outbound: 1, redacted: 2 });
    const left = await stored();
    expect(left.map((r) => [r.effect, r.status])).toEqual([
      ['fx_1', 'failed'],
      ['fx_2', 'sent'],
    ]);
    for (const r of left) expect(r.text).toMatch(/BATON_MESSAGE_RETENTION/);
    // A second purge finds nothing more to do.
    expect(await b.purge()).toMatchObject({ outbound: 0, redacted: 0 });
  });

  it('vacuums after a purge when the server has autovacuum off, and only then (outside test QA12-F1)', async () => {
    const { backend: b, schema } = await makeBackend({ purgeIntervalMs: 0 });
    const [setting] = await pgQuery<{ off: boolean }>(
      schema,
      "SELECT current_setting('autovacuum') = 'off' OR current_setting('track_counts') = 'off' AS off",
    );
    await b.purge();
    const vacuumed = async () =>
      (
        await pgQuery<{ n: number }>(
          schema,
          `SELECT count(*)::int AS n FROM pg_stat_user_tables
           WHERE schemaname = $1 AND last_vacuum IS NOT NULL
             AND relname IN ('sessions', 'transitions', 'outbound', 'inbound', 'dead_letters', 'intake_log')`,
          [schema],
        )
      )[0]!.n;
    // The sessions table too: each commit leaves an old row version (outside test QA52-F3).
    if (setting!.off) await eventually(async () => ((await vacuumed()) === 6 ? true : null), 5000);
    else {
      await new Promise((r) => setTimeout(r, 500));
      expect(await vacuumed()).toBe(0);
    }
  });

  // On a PostgreSQL of its own, autovacuum on as a fresh cluster has it: the machine's may have
  // it off, where every purge vacuums anyway.
  it.skipIf(postgresBinDir() === null)(
    'vacuums after a purge when autovacuum is off on one of its tables, and not before (outside test QA13-F4)',
    async () => {
      const server = await startPrivatePostgres();
      try {
        const query = async <T extends pg.QueryResultRow>(schema: string, sql: string): Promise<T[]> => {
          const c = new pg.Client({ connectionString: server.url, options: `-c search_path=${schema}` });
          await c.connect();
          try {
            return (await c.query<T>(sql)).rows;
          } finally {
            await c.end();
          }
        };
        const vacuumed = async (schema: string) =>
          (
            await query<{ relname: string }>(
              schema,
              `SELECT relname FROM pg_stat_user_tables
               WHERE schemaname = current_schema() AND last_vacuum IS NOT NULL ORDER BY relname`,
            )
          ).map((r) => r.relname);
        const first = await makeBackend({ databaseUrl: server.url, purgeIntervalMs: 0 });
        await first.backend.purge();
        await new Promise((r) => setTimeout(r, 300));
        expect(await vacuumed(first.schema)).toEqual([]);
        await first.backend.close();
        // One table's autovacuum turned off, written as PostgreSQL also takes it.
        await query(first.schema, 'ALTER TABLE outbound SET (autovacuum_enabled = No)');
        const second = await makeBackend(
          { databaseUrl: server.url, purgeIntervalMs: 0 },
          { schema: first.schema },
        );
        expect(second.logger.lines.some((l) => /autovacuum is off/.test(l.msg))).toBe(true);
        await second.backend.purge();
        await eventually(
          async () => ((await vacuumed(first.schema)).includes('outbound') ? true : null),
          5000,
        );
      } finally {
        await server.destroy();
      }
    },
    60_000,
  );
});
