/**
 * A batch's order (SPEC 1.5): WhatsApp timestamp, then arrival. Arrival is the message's place in
 * the mailbox, where one the intake log restored after a Redis restart (stored before it, though
 * it joins the mailbox after what came since) comes first. Storage times are not compared: two
 * ingress processes stamp them with their own estimates of one clock (outside test QA45-F1).
 */
import { expect, it } from 'vitest';
import { orderBatch } from '../../src/flow/transition.ts';
import type { StoredMessage } from '../../src/model/message.ts';

const msg = (
  id: string,
  timestamp: number,
  storedAt: number,
  seq: number,
  restored = false,
): StoredMessage => ({
  id,
  provider: 'cloud-api',
  channel: 'c',
  user: 'u',
  timestamp,
  content: { type: 'text', body: id },
  storedAt,
  seq,
  ...(restored ? { restored: true as const } : {}),
});

it('orders by timestamp, then restored messages, then mailbox order', () => {
  const restored = msg('Farah', 100, 1_000, 2, true); // stored first, back in the mailbox after Sato
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

it('takes the mailbox order over storage times two ingresses stamped (outside test QA45-F1)', () => {
  // The button was answered before the address was sent; the second ingress's clock estimate ran
  // 2 ms behind the first's.
  const button = msg('sku_550e', 100, 1_532, 1);
  const address = msg('9 Elm Road', 100, 1_530, 2);
  expect(orderBatch([address, button]).map((m) => m.id)).toEqual(['sku_550e', '9 Elm Road']);
});

it('puts a restored message after one of its webhook stored by the redelivery, by their places in the intake log', () => {
  // One webhook: a stale button, then the address (same second). Its first delivery was logged
  // (Redis away) and answered 503; while the reaper restored the log, the redelivery stored the
  // button, and the reaper the address: the restored one must not overtake (a CI run of
  // test/distributed/volatile-redis-crash applied the address first).
  const button = { ...msg('sku_550e', 100, 1_900, 7), logged: [1_500, 41] as const };
  const address = { ...msg('9 Elm Road', 100, 1_500, 8, true), logged: [1_500, 42] as const };
  expect(orderBatch([address, button]).map((m) => m.id)).toEqual(['sku_550e', '9 Elm Road']);
  // Logged after the restored one (a later webhook of that second): the restored one first.
  const later = { ...msg('Sato', 100, 1_950, 6), logged: [1_950, 1] as const };
  expect(orderBatch([later, address]).map((m) => m.id)).toEqual(['9 Elm Road', 'Sato']);
});
