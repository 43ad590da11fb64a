/**
 * The embedded store's SQL shortcuts keep the contract: a commit's one-statement state write
 * falls back to the checked upsert whenever its row does not match (first commit, new ids, a
 * newer fence); reads share a read transaction; a reply's status changes write its columns
 * alone and are read over its JSON.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { FencedError, VersionConflictError } from '../../src/errors.ts';
import { batch, newKey, outbound, snapshot, status, text } from '../distributed/fixtures.ts';

const open: EmbeddedBackend[] = [];
afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
});

async function memory(): Promise<EmbeddedBackend> {
  const b = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
  await b.init();
  open.push(b);
  return b;
}

it('stores the wa_id and user id a later commit brings, and finds the session by them', async () => {
  const b = await memory();
  const key = newKey();
  const lease = (await b.acquireLease(key, 'w1', 5000))!;
  await b.commit(lease, batch(key, 0, 1, { snapshot: snapshot(key, 1, { waId: undefined }) }));
  expect(await b.findSessions(`US.${key.user}`)).toEqual([]);
  await b.commit(lease, batch(key, 1, 2, { snapshot: snapshot(key, 2, { userId: `US.${key.user}` }) }));
  expect((await b.findSessions(`US.${key.user}`)).map((s) => s.version)).toEqual([2]);
  await b.commit(lease, batch(key, 2, 3, { snapshot: snapshot(key, 3, { userId: `US.${key.user}` }) }));
  expect((await b.findSessions(key.user)).map((s) => s.version)).toEqual([3]);
  await b.commit(lease, batch(key, 3, 4, { snapshot: snapshot(key, 4, { waId: 'other' }) }));
  expect(await b.findSessions(`US.${key.user}`)).toEqual([]);
  expect((await b.findSessions('other')).map((s) => s.version)).toEqual([4]);
});

it('refuses a commit at a version the row has left, and one under a superseded fence', async () => {
  const b = await memory();
  const key = newKey();
  const first = (await b.acquireLease(key, 'w1', 5000))!;
  await b.commit(first, batch(key, 0, 1));
  await expect(b.commit(first, batch(key, 0, 1))).rejects.toBeInstanceOf(VersionConflictError);
  await b.releaseLease(first);
  const second = (await b.acquireLease(key, 'w2', 5000))!;
  await b.commit(second, batch(key, 1, 2));
  await b.releaseLease(second);
  // A grant whose fence is older than the row's (as after a restart that reused tokens).
  const third = (await b.acquireLease(key, 'w3', 5000))!;
  const stale = { ...third, fence: first.fence };
  (b as unknown as { leases: { held: Map<string, { fence: number }> } }).leases.held.get(
    `${key.channel}:${key.user}`,
  )!.fence = first.fence;
  await expect(b.commit(stale, batch(key, 2, 3))).rejects.toBeInstanceOf(FencedError);
  expect((await b.load(key))?.version).toBe(2);
});

it('shares one read transaction among the reads of a tick, ended before a write and by the next tick', async () => {
  const b = await memory();
  const db = (b as unknown as { store: { db: { inTransaction: boolean } } }).store.db;
  const key = newKey();
  await b.ingest({ messages: [text(key, 'one')], statuses: [] });
  expect((await b.pending(key, 10)).map((m) => m.content)).toEqual([{ type: 'text', body: 'one' }]);
  expect(db.inTransaction).toBe(true);
  // A write requested while the read transaction is open commits, and the next read sees it.
  await b.ingest({ messages: [text(key, 'two')], statuses: [] });
  expect((await b.pending(key, 10)).length).toBe(2);
  await new Promise((r) => setImmediate(r));
  expect(db.inTransaction).toBe(false);
  await b.purge();
  expect(db.inTransaction).toBe(false);
});

it('writes a reply status change to its columns alone, and reads the record with them over its JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-outbound-cols-'));
  try {
    const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
    await b.init();
    open.push(b);
    const key = newKey();
    const lease = (await b.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0);
    await b.commit(lease, batch(key, 0, 1, { outbound: [o1] }));
    await b.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.COL1' });
    await b.ingest({
      messages: [],
      statuses: [
        { ...status(key, 'wamid.COL1', 'failed'), errors: [{ code: 131026, title: 'Undeliverable' }] },
      ],
    });
    const expected = { status: 'failed', attempts: 1, providerMessageId: 'wamid.COL1' };
    expect((await b.outbound(key))[0]).toMatchObject(expected);
    expect((await b.outbound(key))[0]!.lastError).toContain('131026');
    const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
    try {
      const row = db.prepare('SELECT record FROM outbound WHERE id = ?').get(o1.id) as { record: string };
      // The JSON is what the commit wrote; the columns carry the changes.
      expect(JSON.parse(row.record)).toMatchObject({ status: 'pending', attempts: 0 });
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('purges outbound records from the oldest on, stepping over unsent ones, up to the retention', async () => {
  let now = 1_750_000_000_000;
  const b = new EmbeddedBackend({
    file: ':memory:',
    bufferMs: 0,
    dedupeTtlSec: 60,
    pacing: false,
    retentionSec: 3600,
    messageRetentionSec: 3600,
    now: () => now,
  });
  await b.init();
  open.push(b);
  const key = newKey();
  const lease = (await b.acquireLease(key, 'w1', 10 * 3_600_000))!;
  // Old: an unsent reply first, then three sent; young: one sent.
  const old = [0, 1, 2, 3].map((n) => outbound(key, 1, n));
  await b.commit(lease, batch(key, 0, 1, { outbound: old }));
  for (const o of old.slice(1)) await b.updateOutbound(o.id, { status: 'sent', attempts: 1 });
  now += 2 * 3_600_000;
  const young = outbound(key, 2, 0);
  await b.commit(lease, batch(key, 1, 2, { outbound: [young] }));
  await b.updateOutbound(young.id, { status: 'sent', attempts: 1 });
  expect((await b.purge()).outbound).toBe(3);
  expect((await b.outbound(key)).map((o) => o.id)).toEqual([old[0]!.id, young.id]);
  expect((await b.purge()).outbound).toBe(0);
});

it('the message retention deletes a reply that failed but keeps a failed effect call, redacted as a done one (outside test QA9-F2)', async () => {
  let now = Date.now();
  const b = new EmbeddedBackend({
    file: ':memory:',
    bufferMs: 0,
    dedupeTtlSec: 60,
    pacing: false,
    now: () => now,
    retentionSec: 86_400,
    messageRetentionSec: 600,
  });
  await b.init();
  open.push(b);
  const key = newKey();
  const lease = (await b.acquireLease(key, 'w1', 5000))!;
  const effect = (n: number) => ({
    ...outbound(key, 1, n),
    body: { type: 'text' as const, text: `lookup ${n}` },
    effect: { id: `fx_${n}`, name: 'lookup', input: { order: 'ORD-1' }, data: {} },
  });
  const reply = outbound(key, 1, 3);
  await b.commit(lease, batch(key, 0, 1, { outbound: [effect(1), effect(2), reply] }));
  await b.updateOutbound(effect(1).id, { status: 'failed', attempts: 3, lastError: 'shop answered 500' });
  await b.updateOutbound(effect(2).id, { status: 'sent', attempts: 1 });
  await b.updateOutbound(reply.id, { status: 'failed', attempts: 1, lastError: 'Graph 131047' });
  now += 3_600_000;
  const report = await b.purge();
  expect(report).toMatchObject({ outbound: 1, redacted: 2 });
  const left = await b.outbound(key);
  expect(left.map((o) => [o.effect?.id, o.status])).toEqual([
    ['fx_1', 'failed'],
    ['fx_2', 'sent'],
  ]);
  expect(left.every((o) => o.body.type === 'text' && /BATON_MESSAGE_RETENTION/.test(o.body.text))).toBe(true);
});

/**
 * A store under `dir` on a clock the test moves (`clock.now`), with 400 replies sent whose texts
 * carry `marker`: enough to fill whole pages, which a delete frees (FAST overwrites only the
 * pages it writes anyway).
 */
async function sentTexts(
  dir: string,
  marker: string,
  extra: { walIdleMs?: number } = {},
): Promise<{ b: EmbeddedBackend; clock: { now: number } }> {
  const clock = { now: Date.now() };
  const b = new EmbeddedBackend({
    dataDir: dir,
    bufferMs: 0,
    dedupeTtlSec: 60,
    pacing: false,
    now: () => clock.now,
    retentionSec: 600,
    messageRetentionSec: 600,
    ...extra,
  });
  await b.init();
  const key = newKey();
  const lease = (await b.acquireLease(key, 'w1', 3_600_000))!;
  const replies = Array.from({ length: 400 }, (_, n) => ({
    ...outbound(key, 1, n),
    createdAt: clock.now,
    body: { type: 'text' as const, text: `Shipped to 96 ${marker} ${n} ${'x'.repeat(200)}` },
  }));
  await b.commit(lease, batch(key, 0, 1, { outbound: replies }));
  for (const r of replies) await b.updateOutbound(r.id, { status: 'sent', attempts: 1 });
  return { b, clock };
}

it('leaves no text the retention deleted in the database file: freed pages are overwritten (outside test QA12-F2)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-secure-delete-'));
  try {
    const marker = 'Kingsway-Leeds-QA12';
    const { b, clock } = await sentTexts(dir, marker);
    clock.now += 3_600_000;
    expect((await b.purge()).outbound).toBe(400);
    await b.close();
    // Whatever the WAL still held is copied into the file (as a checkpoint would), then read.
    const db = new Database(join(dir, 'baton.sqlite'));
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    expect(readFileSync(join(dir, 'baton.sqlite')).includes(marker)).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

it('the texts a purge deleted leave the files while the store is idle, with no write to follow it (outside test QA52-F1)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-purge-idle-'));
  try {
    const marker = 'Kingsway-Leeds-QA52';
    const { b, clock } = await sentTexts(dir, marker, { walIdleMs: 200 });
    open.push(b);
    const files = (): Buffer[] => ['baton.sqlite', 'baton.sqlite-wal'].map((f) => readFileSync(join(dir, f)));
    /** Until the checkpointer has cut the WAL more than `after` times. */
    const cut = async (after: number): Promise<void> => {
      const end = Date.now() + 10_000;
      while ((b.checkpoints?.truncated ?? 0) <= after) {
        if (Date.now() > end) throw new Error('the WAL was never cut');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // The commits' checkpoint and idle cut: the texts are in the database file now.
    await cut(0);
    expect(files().some((f) => f.includes(marker))).toBe(true);
    const before = b.checkpoints!.truncated;

    clock.now += 3_600_000;
    expect((await b.purge()).outbound).toBe(400);
    // No webhook follows: the purge's own writes are checkpointed and the WAL cut.
    await cut(before);
    expect(files().some((f) => f.includes(marker))).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
