/**
 * Outbound status changes reach PostgreSQL in the background, against the real Redis and
 * PostgreSQL: with the session's next commit (whose journal copy takes them, no copy of their
 * own), or within DEFERRED_COPY_MS when no commit follows. And the mark logic alone.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFERRED_COPY_MS,
  VOLATILE_DEFERRED_COPY_MS,
  type Context,
} from '../../src/backends/distributed/context.ts';
import { DeferredCopies } from '../../src/backends/distributed/deferred-copies.ts';
import { describeServices, pgQuery } from '../support/services.ts';
import { batch, eventually, newKey, outbound } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

describe('DeferredCopies', () => {
  it('a read marked before a newer change does not cover it', () => {
    const copied: string[][] = [];
    const d = new DeferredCopies((m) => copied.push([...m]), 60_000);
    d.defer('a');
    const mark = d.mark('a');
    d.defer('a'); // journaled after the read was sent
    d.covered('a', mark);
    expect(d.size).toBe(1);
    d.covered('a', d.mark('a'));
    expect(d.size).toBe(0);
    d.covered('b', undefined);
    d.defer('b');
    d.flush();
    expect(copied).toEqual([['b']]);
    d.flush();
    expect(copied).toHaveLength(1);
  });

  it('copies what waits once the delay is over', async () => {
    const copied: string[][] = [];
    const d = new DeferredCopies((m) => copied.push([...m]), 30);
    d.defer('a');
    d.defer('b');
    expect(copied).toEqual([]);
    await new Promise((r) => setTimeout(r, 80));
    expect(copied).toEqual([['a', 'b']]);
  });
});

describeServices('distributed backend: deferred status copies', () => {
  useCleanup();

  const statusInPg = async (schema: string, id: string): Promise<string | undefined> =>
    (await pgQuery<{ status: string }>(schema, 'SELECT status FROM outbound WHERE id = $1', [id]))[0]?.status;

  // A Redis that keeps every write (the intake log off): the copy waits up to a second.
  it("rides with the session's next commit, with no copy of its own", async () => {
    const { backend, schema } = await makeBackend({ bufferMs: 0, intakeLog: 'off' });
    const key = newKey();
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0);
    await backend.commit(g, batch(key, 0, 1, { outbound: [o1] }));
    expect(await statusInPg(schema, o1.id)).toBe('pending');
    await backend.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.D1' });
    // Durable in Redis; PostgreSQL's copy waits for the next commit.
    await new Promise((r) => setTimeout(r, 200));
    expect(await statusInPg(schema, o1.id)).toBe('pending');
    const before = backend.diagnostics().flushRequests;
    await backend.commit(g, batch(key, 1, 2));
    // The commit's own copy (write-through) took the status change with it.
    expect(await statusInPg(schema, o1.id)).toBe('sent');
    expect(backend.diagnostics().flushRequests - before).toBe(1);
    // And nothing is copied again once the delay is over.
    await new Promise((r) => setTimeout(r, DEFERRED_COPY_MS + 300));
    expect(backend.diagnostics().flushRequests - before).toBe(1);
  });

  it('is copied within the delay when no commit follows, and at close', async () => {
    const { backend, schema } = await makeBackend({ bufferMs: 0, intakeLog: 'off' });
    const key = newKey();
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0);
    const o2 = outbound(key, 1, 1);
    await backend.commit(g, batch(key, 0, 1, { outbound: [o1, o2] }));
    await backend.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.D2' });
    const at = Date.now();
    await eventually(async () => ((await statusInPg(schema, o1.id)) === 'sent' ? true : null), 5000, 'copy');
    expect(Date.now() - at).toBeLessThan(DEFERRED_COPY_MS + 1000);
    // A change still waiting when the backend closes is copied before it closes.
    await backend.updateOutbound(o2.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.D3' });
    await backend.close();
    expect(await statusInPg(schema, o2.id)).toBe('sent');
  });

  it("is copied by the reaper's pass when the process that deferred it died first (outside test QA114-F3)", async () => {
    const { backend, schema, prefix } = await makeBackend({ bufferMs: 0, intakeLog: 'off' });
    const key = newKey();
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0); // committed long ago: past COPY_OVERDUE_MS
    await backend.commit(g, batch(key, 0, 1, { outbound: [o1] }));
    await backend.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.K1' });
    // Killed within the second: the deferral is gone with the process (its connections stay open
    // here, so that nothing else happens at its end).
    (backend as unknown as { ctx: Context }).ctx.deferred.take();
    await new Promise((r) => setTimeout(r, DEFERRED_COPY_MS + 300));
    expect(await statusInPg(schema, o1.id)).toBe('pending'); // Redis says sent; nothing copies it
    // Another process's reaper pass, its key-space walk resting (it rests 100 times as long as a
    // walk took, minutes on a big store): the pass alone.
    const other = await makeBackend({ bufferMs: 0, intakeLog: 'off' }, { prefix, schema });
    const { redis, keys } = (other.backend as unknown as { ctx: Context }).ctx;
    await redis.set(keys.sweep, 'resting', 'PX', 60_000);
    await other.backend.reapOnce(30_000, { force: true, sweep: false });
    await eventually(async () => ((await statusInPg(schema, o1.id)) === 'sent' ? true : null), 5000, 'copy');
  });

  it('waits only a moment where Redis keeps nothing across a restart (the intake log on; outside test QA40-F1)', async () => {
    const { backend, schema } = await makeBackend({ bufferMs: 0, intakeLog: 'on' });
    const key = newKey();
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0);
    await backend.commit(g, batch(key, 0, 1, { outbound: [o1] }));
    await backend.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.V1' });
    const at = Date.now();
    await eventually(async () => ((await statusInPg(schema, o1.id)) === 'sent' ? true : null), 5000, 'copy');
    // A Redis restarted empty after this would not send the reply again: PostgreSQL has it sent.
    expect(VOLATILE_DEFERRED_COPY_MS).toBeLessThan(DEFERRED_COPY_MS);
    expect(Date.now() - at).toBeLessThan(DEFERRED_COPY_MS);
  });

  it('goes to PostgreSQL before the next send of the session where Redis keeps nothing (outside test QA40-F1)', async () => {
    const { backend, schema } = await makeBackend({ bufferMs: 0, intakeLog: 'on' });
    const key = newKey();
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    const [o1, o2] = [outbound(key, 1, 0), outbound(key, 1, 1)];
    await backend.commit(g, batch(key, 0, 1, { outbound: [o1, o2] }));
    await backend.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: 'wamid.V2' });
    // The engine asks before it sends o2: by the answer, o1's send is in PostgreSQL, so a Redis
    // restarted empty now would send o2 again at most, never o1.
    expect(await backend.sendable(g)).toBe(true);
    expect(await statusInPg(schema, o1.id)).toBe('sent');
    // Nothing waits any more: the next ask costs nothing.
    const before = backend.diagnostics().flushRequests;
    expect(await backend.sendable(g)).toBe(true);
    expect(backend.diagnostics().flushRequests).toBe(before);
  });
});
