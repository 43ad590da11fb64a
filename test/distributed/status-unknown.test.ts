/**
 * Status webhooks for records Redis no longer keeps (an idle session expired from Redis, or
 * another app's sends on the number): applied in PostgreSQL in one statement per round (a round
 * holds one status per message, so a message's statuses apply in order). An outside test saw a
 * POST of 1,000 such statuses answered after 25-43 s: each was a statement after the one before.
 */
import { expect, it } from 'vitest';
import { PgStore } from '../../src/backends/distributed/pg-store.ts';
import type { StatusUpdate } from '../../src/model/message.ts';
import { describeServices } from '../support/services.ts';
import { eventually, newKey, nextBatch, outbound, text } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

describeServices('distributed backend: statuses of records only PostgreSQL has', () => {
  useCleanup();

  it('applies them in order per message, one statement per round; unknown ones are counted out', async () => {
    const { backend } = await makeBackend({ idleTtlSec: 1 });
    const keys = [newKey(), newKey(), newKey()];
    const pmids = ['wamid.PG1', 'wamid.PG2', 'wamid.PG3'];
    for (const [i, key] of keys.entries()) {
      const m = text(key, 'hi');
      await backend.ingest({ messages: [m], statuses: [] });
      const lease = (await backend.acquireLease(key, 'w1', 5000))!;
      const reply = outbound(key, 1, 0);
      await backend.commit(lease, nextBatch(lease, 0, [m.id], { outbound: [reply] }));
      await backend.updateOutbound(reply.id, { status: 'sent', providerMessageId: pmids[i]! });
      await backend.releaseLease(lease);
    }
    // Idle: gone from Redis (PostgreSQL keeps them).
    await eventually(async () => ((await backend.stats()).locksHeld === 0 ? true : null));
    await new Promise((r) => setTimeout(r, 2500));

    const status = (
      key: (typeof keys)[number],
      messageId: string,
      s: StatusUpdate['status'],
    ): StatusUpdate => ({
      provider: 'cloud-api',
      channel: key.channel,
      recipient: key.user,
      messageId,
      status: s,
      timestamp: Math.floor(Date.now() / 1000),
    });
    const unknown = Array.from({ length: 40 }, (_, i) => status(keys[0]!, `wamid.NOPE${i}`, 'delivered'));
    const statuses = [
      status(keys[0]!, pmids[0]!, 'delivered'),
      ...unknown.slice(0, 20),
      status(keys[0]!, pmids[0]!, 'read'),
      status(keys[1]!, pmids[1]!, 'delivered'),
      ...unknown.slice(20),
      status(keys[2]!, pmids[2]!, 'failed'),
    ];

    let statements = 0;
    // eslint-disable-next-line @typescript-eslint/unbound-method -- re-bound with apply below
    const query = PgStore.prototype.query;
    PgStore.prototype.query = function (this: PgStore, ...args: Parameters<typeof query>) {
      if (args[0] === 'outbound-status-by-provider-id') statements += 1;
      return query.apply(this, args);
    };
    try {
      const r = await backend.ingest({ messages: [], statuses });
      expect(r.statuses).toBe(4);
    } finally {
      PgStore.prototype.query = query;
    }
    // Two rounds: wamid.PG1 comes twice (delivered, then read); 44 statements before.
    expect(statements).toBe(2);
    const [o1, o2, o3] = await Promise.all(keys.map((k) => backend.outbound(k)));
    expect(o1!.map((o) => o.status)).toEqual(['read']);
    expect(o2!.map((o) => o.status)).toEqual(['delivered']);
    expect(o3!.map((o) => o.status)).toEqual(['failed']);
  });
});
