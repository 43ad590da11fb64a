/**
 * The embedded store's WAL sync (`wal-sync.ts`): commits made while a sync is in flight share
 * the next one, and the group commit can wait for it; closing syncs on the spot and settles everyone waiting; a sync that cannot be
 * made is reported to the writes waiting for it, never swallowed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WalSync } from '../../src/backends/embedded/wal-sync.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function walFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-wal-sync-'));
  dirs.push(dir);
  const file = join(dir, 'baton.sqlite-wal');
  writeFileSync(file, 'frames');
  return file;
}

const waitFor = (sync: WalSync): Promise<Error | null> => new Promise((resolve) => sync.afterCommit(resolve));

describe('WalSync', () => {
  it('settles every commit, and commits made during a sync share the next one', async () => {
    const sync = new WalSync(walFile());
    const results = await Promise.all(Array.from({ length: 10 }, () => waitFor(sync)));
    expect(results).toEqual(Array(10).fill(null));
    expect(sync.syncs).toBe(2); // the first commit's, then one for the nine that came meanwhile
    sync.close();
  });

  it('lets the group commit wait while a sync is in flight, and go on once it is done', async () => {
    const sync = new WalSync(walFile());
    const order: string[] = [];
    sync.whenIdle(() => order.push('idle at once'));
    sync.afterCommit(() => order.push('synced'));
    expect(sync.busy).toBe(true);
    await new Promise<void>((resolve) =>
      sync.whenIdle(() => {
        order.push('idle after the sync');
        resolve();
      }),
    );
    expect(order).toEqual(['idle at once', 'synced', 'idle after the sync']);
    expect(sync.busy).toBe(false);
    sync.close();
  });

  it('close syncs at once and settles those still waiting', () => {
    const sync = new WalSync(walFile());
    const settled: Array<Error | null> = [];
    for (let i = 0; i < 3; i += 1) sync.afterCommit((e) => settled.push(e));
    sync.close();
    expect(settled).toEqual([null, null, null]);
  });

  it('reports a sync it cannot make to the commits waiting for it', async () => {
    const sync = new WalSync(join(walFile(), '..', 'missing-wal'));
    const err = await waitFor(sync);
    expect(err).toBeInstanceOf(Error);
    sync.close();
  });
});
