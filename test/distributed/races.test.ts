/**
 * Races at the backend level, against the real Redis and PostgreSQL: concurrent deliveries of
 * one user's bursts from several connections, two workers racing for one session, and stale
 * writes refused by the fencing token in Redis and in PostgreSQL.
 */
import { expect, it } from 'vitest';
import { FencedError } from '../../src/errors.ts';
import type { InboundMessage } from '../../src/model/message.ts';
import { splitOutbound, type CommitEntry } from '../../src/backends/distributed/journal.ts';
import { PgStore } from '../../src/backends/distributed/pg-store.ts';
import { eventually, newKey, nextBatch, outbound, snapshot, text, uid } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';
import { DATABASE_URL, describeServices, pgQuery } from '../support/services.ts';

describeServices('distributed backend: races', () => {
  useCleanup();

  it('loses and duplicates nothing when bursts for one user arrive on many connections at once', async () => {
    const first = await makeBackend();
    const shared = { prefix: first.prefix, schema: first.schema };
    const connections = [first.backend];
    for (let i = 0; i < 3; i++) connections.push((await makeBackend({}, shared)).backend);
    const key = newKey();
    const messages: InboundMessage[] = Array.from({ length: 120 }, (_, i) => text(key, `m${i}`));
    // Every message is delivered twice, by two different connections, in webhooks of 1 to 5.
    const plans = connections.map((_, c) =>
      messages.filter((_m, i) => i % connections.length === c || (i + 1) % connections.length === c),
    );
    const results = await Promise.all(
      plans.map(async (plan, c) => {
        let accepted = 0;
        let duplicates = 0;
        for (let i = 0; i < plan.length;) {
          const size = 1 + ((i + c) % 5);
          const r = await connections[c]!.ingest({ messages: plan.slice(i, i + size), statuses: [] });
          accepted += r.accepted;
          duplicates += r.duplicates;
          i += size;
        }
        return { accepted, duplicates };
      }),
    );
    const accepted = results.reduce((a, r) => a + r.accepted, 0);
    const duplicates = results.reduce((a, r) => a + r.duplicates, 0);
    expect(accepted).toBe(messages.length);
    expect(duplicates).toBe(messages.length);

    const pending = await first.backend.pending(key, 1000);
    expect(pending).toHaveLength(messages.length);
    expect(new Set(pending.map((m) => m.id)).size).toBe(messages.length);
    expect(new Set(pending.map((m) => m.id))).toEqual(new Set(messages.map((m) => m.id)));
    for (let i = 1; i < pending.length; i++) expect(pending[i]!.seq).toBeGreaterThan(pending[i - 1]!.seq);

    // The session is handed out once, to one of the connections.
    const handed = await Promise.all(connections.map((b) => b.nextReady(AbortSignal.timeout(800))));
    expect(handed.filter((k) => k !== null)).toEqual([key]);
  });

  it('two workers racing for one session: one lease; the late write of the other is refused', async () => {
    const a = await makeBackend();
    const b = await makeBackend({}, { prefix: a.prefix, schema: a.schema });
    const key = newKey();
    const m1 = text(key, 'hello');
    await a.backend.ingest({ messages: [m1], statuses: [] });

    const [ka, kb] = await Promise.all([
      a.backend.nextReady(AbortSignal.timeout(1000)),
      b.backend.nextReady(AbortSignal.timeout(1000)),
    ]);
    expect([ka, kb].filter((k) => k !== null)).toEqual([key]);

    const grants = await Promise.all([
      a.backend.acquireLease(key, 'A', 150),
      b.backend.acquireLease(key, 'B', 150),
    ]);
    expect(grants.filter((g) => g !== null)).toHaveLength(1);
    const [slow, slowBackend, fastBackend, fastName] = grants[0]
      ? [grants[0], a.backend, b.backend, 'B']
      : [grants[1]!, b.backend, a.backend, 'A'];

    // The holder stalls past its TTL; the other worker takes over and commits.
    const fast = await eventually(
      () => fastBackend.acquireLease(key, fastName, 5000),
      5000,
      'the stalled lease to expire',
    );
    expect(fast.fence).toBeGreaterThan(slow.fence);
    await fastBackend.commit(fast, nextBatch(fast, 0, [m1.id]));

    // The stalled holder wakes up and tries to write its (now stale) batch.
    await expect(slowBackend.commit(slow, nextBatch(slow, 0, [m1.id]))).rejects.toBeInstanceOf(FencedError);

    const rows = await pgQuery<{ fence: string; version: string }>(
      a.schema,
      'SELECT fence, version FROM sessions',
    );
    expect(rows).toEqual([{ fence: String(fast.fence), version: '1' }]);
    const log = await a.backend.transitions(key);
    expect(log.map((r) => [r.version, r.fencing_token, r.worker])).toEqual([[1, fast.fence, fastName]]);
  });

  it('PostgreSQL refuses the write of a lease superseded elsewhere (Redis split brain)', async () => {
    // Two Redis "primaries" that diverged (two prefixes) share one PostgreSQL: each grants a
    // lease on the same session. Their fences come from PostgreSQL blocks, so they differ,
    // and PostgreSQL keeps the newer one whatever the order of the writes.
    const older = await makeBackend();
    const newer = await makeBackend({}, { schema: older.schema });
    const key = newKey();
    const gOld = (await older.backend.acquireLease(key, 'old-primary', 5000))!;
    const gNew = (await newer.backend.acquireLease(key, 'new-primary', 5000))!;
    expect(gNew.fence).toBeGreaterThan(gOld.fence);
    // Both workers read the session (new) before computing their batches.
    expect(await older.backend.load(key)).toBeNull();
    expect(await newer.backend.load(key)).toBeNull();

    await newer.backend.commit(
      gNew,
      nextBatch(gNew, 0, [], { snapshot: snapshot(key, 1, { data: { who: 'new' } }) }),
    );
    await expect(
      older.backend.commit(
        gOld,
        nextBatch(gOld, 0, [], { snapshot: snapshot(key, 1, { data: { who: 'old' } }) }),
      ),
    ).rejects.toBeInstanceOf(FencedError);

    const rows = await pgQuery<{ fence: string; snapshot: { data: unknown } }>(
      older.schema,
      'SELECT fence, snapshot FROM sessions',
    );
    expect(rows).toEqual([
      { fence: String(gNew.fence), snapshot: expect.objectContaining({ data: { who: 'new' } }) },
    ]);
    const log = await pgQuery<{ worker: string }>(older.schema, 'SELECT worker FROM transitions ORDER BY id');
    expect(log.map((r) => r.worker)).toEqual(['new-primary']);
  });

  it('the PostgreSQL upsert refuses an older fence and ignores a replayed entry, with its rows', async () => {
    const { schema } = await makeBackend();
    const pg = new PgStore({ databaseUrl: DATABASE_URL, schema });
    try {
      const key = newKey();
      // Each entry also carries a reply, a consumed message and a dead letter of its own.
      const entry = (fence: number, rev: number, version: number, who: string): CommitEntry => ({
        id: `e-${uid()}`,
        t: 'c',
        ...key,
        fence,
        expectedVersion: version - 1,
        at: Date.now(),
        snapshot: snapshot(key, version, { data: { who } }),
        records: [
          {
            version,
            from_step: null,
            to_step: 'ask_name',
            kind: 'advance',
            message_ids: [],
            at: '2025-06-15T12:00:00Z',
            worker: who,
            fencing_token: fence,
          },
        ],
        outbound: [splitOutbound({ ...outbound(key, version, fence), id: `out ${who}` }, 1)],
        deadLetters: [
          {
            id: `dead ${who}`,
            kind: 'inbound',
            ...key,
            ref: `wamid ${who}`,
            reason: 'test',
            payload: null,
            createdAt: Date.now(),
          },
        ],
        rev,
        messages: [{ ...text(key, who), id: `wamid ${who}`, seq: fence * 10 + rev, storedAt: Date.now() }],
      });
      const e5 = entry(5, 1, 1, 'fence 5');
      expect(await pg.apply([e5])).toEqual(new Set());
      const e4 = entry(4, 9, 2, 'fence 4');
      expect(await pg.apply([e4])).toEqual(new Set([e4.id]));
      expect(await pg.apply([e5])).toEqual(new Set()); // a replay: accepted, changes nothing
      // A lease handover inside one group: both entries are accepted, the newer fence wins.
      const e5b = entry(5, 2, 2, 'fence 5, later');
      const e6 = entry(6, 1, 3, 'fence 6');
      expect(await pg.apply([e5b, e6])).toEqual(new Set());
      const e5c = entry(5, 3, 3, 'fence 5, stale');
      expect(await pg.apply([e5c])).toEqual(new Set([e5c.id]));
      // Records of accepted entries only, each once: fence 5, fence 5 later, fence 6.
      const log = await pgQuery<{ worker: string }>(schema, 'SELECT worker FROM transitions ORDER BY id');
      expect(log.map((r) => r.worker)).toEqual(['fence 5', 'fence 5, later', 'fence 6']);
      const row = (await pg.getSession(key))!;
      expect([row.fence, row.version, row.snapshot.data]).toEqual([6, 3, { who: 'fence 6' }]);
      // The refused entries' replies, messages and dead letters are not written either.
      const ids = async (sql: string) => (await pgQuery<{ id: string }>(schema, sql)).map((r) => r.id).sort();
      const accepted = ['fence 5', 'fence 5, later', 'fence 6'];
      expect(await ids('SELECT id FROM outbound')).toEqual(accepted.map((w) => `out ${w}`).sort());
      expect(await ids('SELECT id FROM inbound')).toEqual(accepted.map((w) => `wamid ${w}`).sort());
      expect(await ids('SELECT id FROM dead_letters')).toEqual(accepted.map((w) => `dead ${w}`).sort());
    } finally {
      await pg.close();
    }
  });

  it('group-commits concurrent write-through commits of many sessions', async () => {
    const { backend, schema } = await makeBackend();
    const keys = Array.from({ length: 200 }, () => newKey());
    await backend.ingest({ messages: keys.map((k) => text(k, 'hi')), statuses: [] });
    const leases = await Promise.all(keys.map((k) => backend.acquireLease(k, 'w', 10_000)));
    const before = backend.diagnostics();
    await Promise.all(
      leases.map(async (g) => {
        const [m] = await backend.pending(g!, 10);
        await backend.commit(g!, nextBatch(g!, 0, [m!.id]));
      }),
    );
    const after = backend.diagnostics();
    const transactions = after.pgTransactions - before.pgTransactions;
    expect(transactions).toBeGreaterThan(0);
    expect(transactions).toBeLessThan(keys.length / 4);
    const rows = await pgQuery<{ n: number }>(schema, 'SELECT count(*)::int AS n FROM transitions');
    expect(rows[0]!.n).toBe(keys.length);
  });
});
