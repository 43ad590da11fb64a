/**
 * A RabbitMQ consumer's place in its queue holds batches back (engine/intake-gate.ts,
 * QueuePosition): what the queue still holds came after what the consumer took, however old its
 * arrival at the ingress (outside test QA44-F1: a burst behind a backlog was split).
 */
import { afterEach, expect, it, vi } from 'vitest';
import { LocalIntakeGate, QUEUE_GRACE_MS, QueuePosition } from '../../src/engine/intake-gate.ts';

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

afterEach(() => {
  vi.useRealTimers();
});

it('holds from each delivery in hand, however old, and from the one taken last for a grace', async () => {
  vi.useFakeTimers();
  const now = 100_000;
  const gate = new LocalIntakeGate({ now: () => now, staleAfterMs: 2000 });
  const position = new QueuePosition(gate);
  // Received 20 s ago: older than any request the gate counts as stale, still held.
  const stored = position.take(now - 20_000);
  expect(gate.holds(now - 19_500)).toBe(true);
  // Nothing in hand: the next delivery may be on its way, the last one's arrival still holds.
  stored();
  stored(); // once only
  expect(gate.holds(now - 19_500)).toBe(true);
  // The next delivery counts before the parked position goes: never a moment that looks drained.
  const woken: boolean[] = [];
  void gate.drained(now - 19_500, 10_000).then(() => woken.push(true));
  const next = position.take(now - 19_990);
  await settle();
  expect(woken).toEqual([]);
  next();
  vi.advanceTimersByTime(QUEUE_GRACE_MS + 1);
  expect(gate.holds(now - 19_500)).toBe(false);
  await settle();
  expect(woken).toEqual([true]);
  expect(gate.size).toBe(0);
});

it('a plain request received as long ago holds nothing (a body trickling in)', () => {
  const now = 100_000;
  const gate = new LocalIntakeGate({ now: () => now, staleAfterMs: 2000 });
  gate.begin(now - 20_000);
  expect(gate.holds(now - 19_500)).toBe(false);
});
