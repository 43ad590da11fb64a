/**
 * A batch's order (SPEC 1.5): WhatsApp timestamp, then arrival. Arrival is when Baton stored the
 * message, then its place in the mailbox: a message the intake log restored after a Redis
 * restart keeps its first storage time, though it joins the mailbox after what came since.
 */
import { expect, it } from 'vitest';
import { orderBatch } from '../../src/flow/transition.ts';
import type { StoredMessage } from '../../src/model/message.ts';

const msg = (id: string, timestamp: number, storedAt: number, seq: number): StoredMessage => ({
  id,
  provider: 'cloud-api',
  channel: 'c',
  user: 'u',
  timestamp,
  content: { type: 'text', body: id },
  storedAt,
  seq,
});

it('orders by timestamp, then storage time, then mailbox order', () => {
  const restored = msg('Farah', 100, 1_000, 2); // stored first, back in the mailbox after Sato
  const later = msg('Sato', 100, 1_500, 1);
  const older = msg('hi', 99, 2_000, 3);
  const sameMs = msg('again', 100, 1_500, 4);
  expect(orderBatch([later, sameMs, restored, older]).map((m) => m.id)).toEqual([
    'hi',
    'Farah',
    'Sato',
    'again',
  ]);
});
