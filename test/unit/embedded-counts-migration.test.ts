/**
 * The embedded store counts sessions per step from an index (migration 10), not by reading
 * every session's JSON: at 100,000 sessions that read held the one process, webhooks included,
 * for 0.4-1.5 s per flow-map view. A store written before the migration has the new columns
 * filled from each session's JSON when it is opened.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { EMBEDDED_FILE, EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { MIGRATIONS } from '../../src/backends/embedded/schema.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';
import { snapshot } from '../distributed/fixtures.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A session as stored before the migration (one user, the order flow at version 1). */
function oldSession(user: string, extra: Partial<SessionSnapshot>): SessionSnapshot {
  return snapshot({ channel: 'c1', user }, 1, { lastInteraction: null, createdAt: 1_000, ...extra });
}

/**
 * A data directory holding a store at schema `version` (the first `applied` migrations run),
 * open for writing as the release that wrote it would have: `[dir, file, db]`.
 */
function storeAt(applied: number, version = applied): [string, string, Database.Database] {
  const dir = mkdtempSync(join(tmpdir(), 'baton-schema-'));
  dirs.push(dir);
  const file = join(dir, EMBEDDED_FILE);
  const db = new Database(file);
  for (const m of MIGRATIONS.slice(0, applied)) db.exec(m);
  db.pragma(`user_version = ${version}`);
  return [dir, file, db];
}

describe('embedded session counts (migration 10)', () => {
  it('fills the count columns of sessions stored before it, and counts from the index alone', async () => {
    // A store as the release before wrote it: schema 9.
    const [dir, file, old] = storeAt(9);
    const put = old.prepare(
      `INSERT INTO sessions (channel, user, step, needs_agent, version, fence, updated_at, snapshot)
       VALUES ('c1', ?, ?, ?, 1, 1, 0, ?)`,
    );
    put.run('u1', 'ask_name', 0, JSON.stringify(oldSession('u1', { lastInteraction: 1_750_000_000 })));
    put.run('u2', 'ask_name', 0, JSON.stringify(oldSession('u2', { createdAt: 1_749_000_000_000 })));
    put.run(
      'u3',
      'choose_product',
      1,
      JSON.stringify(oldSession('u3', { step: 'choose_product', needsAgent: true })),
    );
    old.close();

    const backend = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    try {
      const counts = (await backend.countSessions()).sort((a, b) =>
        String(a.step).localeCompare(String(b.step)),
      );
      expect(counts).toEqual([
        { flow: 'order', step: 'ask_name', needsAgent: false, sessions: 2, oldestAt: 1_749_000_000_000 },
        { flow: 'order', step: 'choose_product', needsAgent: true, sessions: 1, oldestAt: 1_000 },
      ]);
      expect(await backend.countSessions(1_749_500_000_000)).toEqual([
        { flow: 'order', step: 'ask_name', needsAgent: false, sessions: 1, oldestAt: 1_750_000_000_000 },
      ]);
    } finally {
      await backend.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      const plan = db
        .prepare(
          `EXPLAIN QUERY PLAN SELECT flow, step, needs_agent AS na, COUNT(*) AS n, MIN(active_at) AS oldest
             FROM sessions WHERE @since IS NULL OR active_at >= @since GROUP BY flow, step, needs_agent`,
        )
        .all({ since: null }) as Array<{ detail: string }>;
      expect(plan.map((p) => p.detail)).toEqual(['SCAN sessions USING COVERING INDEX sessions_counts']);
    } finally {
      db.close();
    }
  });
});

describe('user ids bound to phone numbers (migration 12)', () => {
  it("binds the user ids of sessions stored before it, so a message with the id alone joins the number's session", async () => {
    const [dir, file, old] = storeAt(11);
    const put = old.prepare(
      `INSERT INTO sessions (channel, user, wa_id, user_id, step, needs_agent, version, fence, updated_at, snapshot)
       VALUES ('c1', ?, ?, ?, 'ask_name', 0, 1, 1, 0, ?)`,
    );
    put.run(
      '15550001',
      '15550001',
      'US.1',
      JSON.stringify(oldSession('15550001', { waId: '15550001', userId: 'US.1' })),
    );
    put.run('US.2', null, 'US.2', JSON.stringify(oldSession('US.2', { userId: 'US.2' })));
    old.close();

    const backend = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    try {
      const alone = (id: string, userId: string) => ({
        provider: 'cloud-api' as const,
        channel: 'c1',
        user: userId,
        userId,
        id,
        timestamp: 1_750_000_000,
        content: { type: 'text' as const, body: 'hi' },
      });
      await backend.ingest({
        messages: [alone('wamid.M1', 'US.1'), alone('wamid.M2', 'US.2')],
        statuses: [],
      });
    } finally {
      await backend.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare('SELECT id, user FROM inbound ORDER BY id').all()).toEqual([
        { id: 'wamid.M1', user: '15550001' },
        { id: 'wamid.M2', user: 'US.2' },
      ]);
    } finally {
      db.close();
    }
  });
});

describe('binding times (migration 13)', () => {
  it('a store with bindings made before it takes messages with both ids, and the user id alone still goes to its number', async () => {
    const [dir, file, old] = storeAt(12);
    old
      .prepare(
        `INSERT INTO sessions (channel, user, wa_id, user_id, step, needs_agent, version, fence, updated_at, snapshot)
         VALUES ('c1', '15550001', '15550001', 'US.1', 'ask_name', 0, 1, 1, 0, ?)`,
      )
      .run(
        JSON.stringify(
          oldSession('15550001', { waId: '15550001', userId: 'US.1', lastInteraction: 1_750_000_000 }),
        ),
      );
    old.prepare(`INSERT INTO user_aliases (channel, user_id, user) VALUES ('c1', 'US.1', '15550001')`).run();
    old.close();

    const backend = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const base = {
      provider: 'cloud-api' as const,
      channel: 'c1',
      content: { type: 'text' as const, body: 'hi' },
    };
    try {
      // An older message from another number does not move the binding; the user id alone follows it.
      await backend.ingest({
        messages: [
          {
            ...base,
            id: 'wamid.M3',
            user: '15550002',
            waId: '15550002',
            userId: 'US.1',
            timestamp: 1_749_999_000,
          },
          { ...base, id: 'wamid.M4', user: 'US.1', userId: 'US.1', timestamp: 1_750_000_100 },
        ],
        statuses: [],
      });
    } finally {
      await backend.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare("SELECT user FROM inbound WHERE id = 'wamid.M4'").get()).toEqual({
        user: '15550001',
      });
      expect(db.prepare('SELECT user, at FROM user_aliases').all()).toEqual([
        { user: '15550001', at: 1_750_000_000 },
      ]);
    } finally {
      db.close();
    }
  });
});

describe('a store a newer Baton migrated', () => {
  it('is refused with a line naming both schemas, and left as it is', async () => {
    const [dir, file, newer] = storeAt(MIGRATIONS.length, MIGRATIONS.length + 1);
    newer.close();
    const backend = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
    await expect(backend.init()).rejects.toThrow(
      `has schema ${MIGRATIONS.length + 1}, written by a newer Baton; this one knows schemas up to ${MIGRATIONS.length}`,
    );
    await backend.close().catch(() => undefined);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length + 1);
    db.close();
  });
});
