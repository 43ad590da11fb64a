/**
 * The round trips folded into a turn, against the real Redis and PostgreSQL: the grant brings the
 * holder's first mailbox read, and `releaseOrTake` ends a turn by keeping the lease when messages
 * are due (returning them) or releasing it exactly like `releaseLease` otherwise.
 */
import { expect, it } from 'vitest';
import { FencedError } from '../../src/errors.ts';
import { newKey, nextBatch, sleep, text } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';
import { describeServices } from '../support/services.ts';

describeServices('distributed backend: folded turn round trips', () => {
  useCleanup();

  it('the first pending after a grant is the mailbox as it was at the grant; the next one reads again', async () => {
    const { backend } = await makeBackend({ bufferMs: 0 });
    const key = newKey();
    // A session new to Redis takes its grant in a second round trip (fences reserved in
    // PostgreSQL); from then on the grant comes with the read.
    await backend.releaseLease((await backend.acquireLease(key, 'w0', 5000))!);
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    expect(lease).not.toBeNull();
    const m2 = text(key, 'two');
    await backend.ingest({ messages: [m2], statuses: [] });
    // Read with the grant: m2 came later.
    expect((await backend.pending(lease, 500)).map((m) => m.id)).toEqual([m1.id]);
    expect(await backend.load(lease)).toBeNull();
    // Read again now.
    expect((await backend.pending(lease, 500)).map((m) => m.id)).toEqual([m1.id, m2.id]);
    // A read for another grant does not take it.
    await backend.releaseLease(lease);
    const other = (await backend.acquireLease(key, 'w2', 5000))!;
    expect((await backend.pending(other, 1)).map((m) => m.id)).toEqual([m1.id]);
  });

  it("a new user's first grant brings the read too (with the tombstone PostgreSQL's answer leaves)", async () => {
    const { backend } = await makeBackend({ bufferMs: 0 });
    const key = newKey();
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    await backend.ingest({ messages: [text(key, 'two')], statuses: [] });
    expect((await backend.pending(lease, 500)).map((m) => m.id)).toEqual([m1.id]);
    expect(await backend.load(lease)).toBeNull();
    expect(await backend.pending(lease, 500)).toHaveLength(2);
  });

  it('keeps the lease and returns the messages due, with the state for load', async () => {
    const { backend } = await makeBackend({ bufferMs: 0 });
    const key = newKey();
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    await backend.pending(lease, 500);
    await backend.commit(lease, nextBatch(lease, 0, [m1.id]));
    const m2 = text(key, 'two');
    await backend.ingest({ messages: [m2], statuses: [] });

    const taken = await backend.releaseOrTake(lease, 500);
    expect(taken?.map((m) => m.id)).toEqual([m2.id]);
    expect((await backend.load(lease))?.version).toBe(1);
    // Still held: nobody else gets it, and the holder's commit goes through.
    expect(await backend.acquireLease(key, 'w2', 5000)).toBeNull();
    expect((await backend.leaseInfo(key))?.holder).toBe('w1');
    await backend.commit(lease, nextBatch(lease, 1, [m2.id]));

    // Nothing due: released; the next holder gets a newer fence and an empty mailbox.
    expect(await backend.releaseOrTake(lease, 500)).toBeNull();
    const next = (await backend.acquireLease(key, 'w2', 5000))!;
    expect(next.fence).toBeGreaterThan(lease.fence);
    expect(await backend.pending(next, 500)).toEqual([]);
    expect((await backend.load(next))?.version).toBe(2);
  });

  it('releases when the messages waiting are not due yet, and schedules them for their window', async () => {
    const { backend } = await makeBackend({ bufferMs: 300 });
    const key = newKey();
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    expect(await backend.releaseOrTake(lease, 500)).toBeNull();
    // Released: another worker can take it, and the session comes out of the ready queue once
    // its window has ended.
    const started = Date.now();
    const ready = await backend.nextReady(AbortSignal.timeout(3000));
    expect(ready).toEqual({ channel: key.channel, user: key.user });
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    const next = (await backend.acquireLease(key, 'w2', 5000))!;
    expect((await backend.pending(next, 500)).map((m) => m.id)).toEqual([m1.id]);
  });

  it('a grant that lost the lease takes nothing and releases nothing', async () => {
    const { backend } = await makeBackend({ bufferMs: 0 });
    const key = newKey();
    const stale = (await backend.acquireLease(key, 'w1', 200))!;
    await sleep(300); // expired
    const fresh = (await backend.acquireLease(key, 'w2', 5000))!;
    expect(fresh).not.toBeNull();
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    expect(await backend.releaseOrTake(stale, 500)).toBeNull();
    expect((await backend.leaseInfo(key))?.holder).toBe('w2');
    await expect(backend.commit(stale, nextBatch(stale, 0, [m1.id]))).rejects.toBeInstanceOf(FencedError);
    expect((await backend.pending(fresh, 500)).map((m) => m.id)).toEqual([m1.id]);
  });
});
