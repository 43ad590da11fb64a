/**
 * `testFlow` from a session an earlier deploy stored (outside test QA65-F7): a bot author tests a
 * flow change, `moved` and `migrate`, without a server, as the engine would load the session.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow, testFlow } from '../../src/index.ts';

/** Version 2 of docs/authoring.md's clinic: `booked` became `confirmed`, `time` became `slot`. */
const clinic = defineFlow({
  id: 'clinic',
  version: 2,
  data: z.object({ name: z.string().optional(), slot: z.string().optional() }),
  moved: { booked: 'confirmed' },
  migrate: (data, fromVersion) => (fromVersion < 2 ? { ...data, slot: data.time } : data),
  start: 'ask_name',
  steps: {
    ask_name: {
      say: 'Name?',
      accepts: 'text',
      to: ['confirmed'],
      on: (input, c) => (input.type === 'text' ? c.goto('confirmed', { name: input.text }) : c.retry()),
    },
    confirmed: {
      say: (d) => `Booked ${d.name ?? ''} at ${d.slot ?? '?'}.`,
      accepts: 'any',
      to: ['ask_name'],
      on: (input, c) => (input.type === 'text' && input.text === 'again' ? c.restart('ask_name') : c.retry()),
    },
  },
});

describe('testFlow from a stored session', () => {
  it('migrates its data and moves it off a removed step at its next message, as the engine does', async () => {
    const t = testFlow(clinic, {
      stored: { flowVersion: 1, step: 'booked', data: { name: 'Ana', time: '10:00' } },
    });
    expect(t.state?.step).toBe('booked');
    const replies = await t.send('thanks');
    expect(t.records.map((r) => [r.kind, r.from_step, r.to_step])).toEqual([
      ['advance', 'booked', 'confirmed'],
      ['retry', 'confirmed', 'confirmed'],
    ]);
    expect(replies.map((r) => r.text)).toEqual(['Booked Ana at 10:00.']);
    expect(t.state).toMatchObject({
      flowVersion: 2,
      step: 'confirmed',
      data: { name: 'Ana', slot: '10:00' },
    });
  });

  it('holds a session at a removed step with no rule for an agent', async () => {
    const t = testFlow(clinic, { stored: { step: 'waitlist', data: { name: 'Ana' } } });
    await t.send('any news?');
    expect(t.records.map((r) => r.kind)).toEqual(['escalated', 'held']);
    expect(t.state).toMatchObject({ needsAgent: true, step: 'waitlist', data: { name: 'Ana' } });
  });
});
