import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { freshSnapshot, type Effect } from '../../src/flow/transition.ts';
import { claimed, toOutbound } from '../../src/outbox/records.ts';

const key = { channel: '106540352242922', user: '15550001111' };
const text = (t: string, version: number, inReplyTo?: string): Effect => ({
  body: { type: 'text', text: t },
  step: 'ask_name',
  version,
  isPrompt: inReplyTo === undefined,
  ...(inReplyTo !== undefined ? { inReplyTo } : {}),
});

describe('outbound records of a state change', () => {
  const s = { ...freshSnapshot(orderFlow, key, 1_000), waId: key.user, outboundSeq: 4 };

  it('numbers them after the session\u2019s last, with the callback data SPEC 3 pins', () => {
    const { snapshot, outbound } = toOutbound(
      s,
      [text('a', 7), text('b', 7), text('stale', 7, 'wamid.X')],
      [],
      2_000,
      'w1',
    );
    expect(snapshot.outboundSeq).toBe(7);
    expect(outbound.map((r) => [r.id, r.seq, r.callbackData, r.to, r.createdAt])).toEqual([
      [`${key.channel}:${key.user}:5`, 5, 'baton:order:ask_name:7', key.user, 2_000],
      [`${key.channel}:${key.user}:6`, 6, 'baton:order:ask_name:7#2', key.user, 2_000],
      [`${key.channel}:${key.user}:7`, 7, 'baton:order:ask_name:7:wamid.X', key.user, 2_000],
    ]);
  });

  it('claims the first reply for the committing holder and leaves the later ones unclaimed', () => {
    const { outbound } = toOutbound(s, [text('a', 7), text('b', 7)], [], 2_000, 'w1');
    expect(outbound.map((r) => [r.claimedBy, r.claims])).toEqual([
      ['w1', undefined],
      [undefined, 0],
    ]);
    // The holder's own claims: the first reply's alone.
    expect([...claimed({ claims: new Set() }, outbound)]).toEqual([outbound[0]!.id]);
  });

  it('writes a started effect as a record the outbox runs, never sends', () => {
    const { outbound } = toOutbound(
      s,
      [],
      [{ id: 'eff-1', name: 'lookup', input: { n: 1 }, data: {}, step: 'looking_up', version: 8 }],
      2_000,
      'w1',
    );
    expect(outbound).toHaveLength(1);
    expect(outbound[0]).toMatchObject({
      seq: 5,
      callbackData: 'baton:order:looking_up:8:effect',
      isPrompt: false,
      effect: { id: 'eff-1', name: 'lookup', input: { n: 1 } },
    });
    expect(outbound[0]!.claimedBy).toBeUndefined();
    expect(claimed({ claims: new Set() }, outbound).size).toBe(0);
  });
});
