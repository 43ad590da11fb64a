/**
 * A holder that took a session, committed a reply with its claim for the first attempt (as the
 * engine commits a turn's first reply), and died: no answer recorded, its lease held for a
 * minute. The lease-clear suites start from it.
 */
import { expect } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import type { SessionKey } from '../../src/model/message.ts';
import type { OutboundRecord } from '../../src/model/session.ts';
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
  const reply = { ...outbound(key, 1, 0), createdAt: Date.now() };
  expect(reply.claims).toBe(1);
  await backend.commit(lease!, nextBatch(lease!, 0, [hi.id], { outbound: [reply] }));
  return reply;
}
