/**
 * The embedded store reports a write done only once the WAL holding it is synced
 * (`wal-sync.ts`), on a real SQLite file: an intake held at its sync stays unanswered, and a
 * sync that fails is the writer's error, never a silent success.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { WalSync } from '../../src/backends/embedded/wal-sync.ts';
import { StorageUnavailableError } from '../../src/errors.ts';
import { newKey, sleep, text } from '../distributed/fixtures.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function backend(): Promise<{ b: EmbeddedBackend; sync: WalSync }> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-wal-durability-'));
  const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
  await b.init();
  cleanups.push(async () => {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { b, sync: (b as unknown as { store: { walSync: WalSync } }).store.walSync };
}

it('answers an intake only after the sync that follows its commit', async () => {
  const { b, sync } = await backend();
  const key = newKey();
  await b.ingest({ messages: [text(key, 'warm-up')], statuses: [] }); // the WAL file exists
  const held: Array<() => void> = [];
  const afterCommit = sync.afterCommit.bind(sync);
  sync.afterCommit = (done) => void held.push(() => afterCommit(done));
  let answered = false;
  const stored = b.ingest({ messages: [text(key, 'hi')], statuses: [] }).then((r) => {
    answered = true;
    return r;
  });
  await sleep(150);
  expect(held).toHaveLength(1);
  expect(answered).toBe(false);
  for (const release of held) release();
  expect(await stored).toMatchObject({ accepted: 1 });
});

it('fails the writes of a group whose sync fails', async () => {
  const { b, sync } = await backend();
  const key = newKey();
  await b.ingest({ messages: [text(key, 'warm-up')], statuses: [] });
  sync.afterCommit = (done) => done(new Error('EIO: the disk went away'));
  await expect(b.ingest({ messages: [text(key, 'hi')], statuses: [] })).rejects.toBeInstanceOf(
    StorageUnavailableError,
  );
});
