/**
 * Embedded migration 8 keeps the channel of a status parked before its send is recorded. A status
 * parked by an earlier version (no channel: '') still applies once the send is recorded after an
 * upgrade; one parked for another channel does not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { newKey, nextBatch, outbound } from '../distributed/fixtures.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('a status parked before the upgrade applies when its send is recorded; another channel’s does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-early-'));
  dirs.push(dir);
  const backend = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 });
  try {
    await backend.init();
    const key = newKey();
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    const [a, b] = [outbound(key, 1, 0), outbound(key, 1, 1)];
    await backend.commit(lease, nextBatch(lease, 0, [], { outbound: [a, b] }));
    const db = (
      backend as unknown as { store: { db: { prepare(sql: string): { run(...args: unknown[]): unknown } } } }
    ).store.db;
    const park = db.prepare(
      'INSERT INTO early_statuses (provider_message_id, channel, status, last_error, at) VALUES (?, ?, ?, NULL, ?)',
    );
    park.run('wamid.OLD', '', 'read', Date.now()); // parked by the version before migration 8
    park.run('wamid.OTHER', 'wasender:elsewhere', 'read', Date.now());
    await backend.updateOutbound(a.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.OLD' });
    await backend.updateOutbound(b.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.OTHER' });
    const byId = new Map((await backend.outbound(key)).map((o) => [o.id, o.status]));
    expect(byId.get(a.id)).toBe('read');
    expect(byId.get(b.id)).toBe('sent');
    await backend.releaseLease(lease);
  } finally {
    await backend.close();
  }
});
