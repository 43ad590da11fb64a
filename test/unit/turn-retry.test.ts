/**
 * A turn that fails because the store went away mid-turn (its commit, then its release refused)
 * is tried again by the worker once the lease it left has run out, instead of waiting for the
 * reaper's walk or the user's next message (outside test L1: 39-90 s after a 5 s Redis outage).
 */
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { BatchCommit, CommitResult, LeaseGrant } from '../../src/backends/types.ts';
import { StorageUnavailableError } from '../../src/errors.ts';
import { testEngine } from '../support/engine.ts';

const TTL = 400;

class StoreAway extends EmbeddedBackend {
  failCommits = 0;
  commits = 0;
  failReleases = 0;
  override async commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    this.commits += 1;
    if (this.failCommits === Infinity)
      throw new TypeError('Do not know how to serialize a BigInt (injected)');
    if (this.failCommits > 0) {
      this.failCommits -= 1;
      throw new StorageUnavailableError('commit', new Error('Command timed out (injected)'));
    }
    return super.commit(lease, batch);
  }
  override async releaseLease(lease: LeaseGrant, notBeforeMs?: number): Promise<void> {
    if (this.failReleases > 0) {
      this.failReleases -= 1;
      throw new StorageUnavailableError('release', new Error('Connection is closed (injected)'));
    }
    return super.releaseLease(lease, notBeforeMs);
  }
}

describe('a turn the store failed', () => {
  it('is tried again once its lease ran out, and the message is applied once', async () => {
    const backend = new StoreAway({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const engine = testEngine(backend, {
      lockTtlMs: TTL,
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: `wamid.${m.id}` }),
    });
    const key = { channel: 'c', user: 'u' };
    await backend.ingest({
      messages: [
        { id: 'w1', provider: 'cloud-api', ...key, timestamp: 1, content: { type: 'text', body: 'hi' } },
      ],
      statuses: [],
    });
    backend.failCommits = 1;
    backend.failReleases = 1;
    await engine.runSession(key);
    expect(await backend.load(key)).toBeNull();
    expect((await backend.stats()).queueDepth).toBe(1);

    // Nobody else runs it (no worker loop here): the engine's own retry does, after the TTL.
    const deadline = Date.now() + 5_000;
    while ((await backend.load(key)) === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect((await backend.load(key))?.version).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(sent).toEqual(['baton:order:ask_name:1']);
    expect((await backend.stats()).queueDepth).toBe(0);
    await engine.stop();
    await backend.close();
  });

  it('that fails every time is not taken again at once: the store is asked a few times a second, not thousands (outside test QA138-F1)', async () => {
    const backend = new StoreAway({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const engine = testEngine(backend, { lockTtlMs: TTL });
    engine.start();
    backend.failCommits = Infinity;
    const key = { channel: 'c', user: 'u2' };
    await backend.ingest({
      messages: [
        { id: 'w2', provider: 'cloud-api', ...key, timestamp: 1, content: { type: 'text', body: 'hi' } },
      ],
      statuses: [],
    });
    await new Promise((r) => setTimeout(r, 2_000));
    // Each failed turn leaves the session due a quarter of a second later (9,564 tries before).
    expect(backend.commits).toBeGreaterThanOrEqual(2);
    expect(backend.commits).toBeLessThanOrEqual(12);
    // Free again, the next try applies it.
    backend.failCommits = 0;
    const deadline = Date.now() + 8_000;
    while ((await backend.load(key)) === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect((await backend.load(key))?.version).toBe(1);
    await engine.stop();
    await backend.close();
  }, 15_000);
});
