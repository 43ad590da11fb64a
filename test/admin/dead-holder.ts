/**
 * A holder that took a session, committed a reply with its claim for the first attempt (as the
 * engine commits a turn's first reply), and died: no answer recorded, its lease held for a
 * minute. The lease-clear suites start from it.
 */
import { expect } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import type { SessionKey } from '../../src/model/message.ts';
import type { OutboundRecord } from '../../src/model/session.ts';
import type { Harness } from '../support/harness.ts';
import { nextBatch, outbound, text } from '../distributed/fixtures.ts';

/** Leaves `key` held by `holder` with one committed, claimed, unsent reply; returns the reply. */
export async function replyOfDeadHolder(
  backend: Backend,
  key: SessionKey,
  holder: string,
): Promise<OutboundRecord> {
  const hi = text(key, 'hi');
  await backend.ingest({ messages: [hi], statuses: [] });
  let lease = await backend.acquireLease(key, holder, 60_000);
  for (let i = 0; lease === null && i < 100; i += 1) {
    await new Promise((r) => setTimeout(r, 20));
    lease = await backend.acquireLease(key, holder, 60_000);
  }
  expect(lease).not.toBeNull();
  // Claimed by the committing holder, as the engine's commit claims a turn's first reply.
  const reply = { ...outbound(key, 1, 0), createdAt: Date.now(), claimedBy: holder };
  expect(reply.claims).toBe(1);
  await backend.commit(lease!, nextBatch(lease!, 0, [hi.id], { outbound: [reply] }));
  return reply;
}

/**
 * Starts the harness's worker and checks that `reply` goes out to `key`'s user within 5 s, and
 * only once (half a second later, no second request).
 */
export async function sentOnceSoon(h: Harness, key: SessionKey, reply: OutboundRecord): Promise<void> {
  const started = Date.now();
  h.baton.engine.start(4);
  const sent = await h.graph.waitFor((c) => c.body.to === `+${key.user}`, 20_000);
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(sent.body.biz_opaque_callback_data).toBe(reply.callbackData);
  await new Promise((r) => setTimeout(r, 500));
  expect(h.graph.requests.filter((c) => c.body.to === `+${key.user}`)).toHaveLength(1);
}
