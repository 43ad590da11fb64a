/**
 * Which stored messages a batch takes (SPEC 1.5): those stored within its window, and any stored
 * since that the user sent no later than the window's newest (else they would be `late`).
 */
import { describe, expect, it } from 'vitest';
import { withStragglers } from '../../src/engine/engine.ts';
import type { StoredMessage } from '../../src/model/message.ts';

let seq = 0;
function stored(body: string, timestamp: number, storedAt: number): StoredMessage {
  seq += 1;
  return {
    provider: 'cloud-api',
    channel: '1065',
    user: '15550001',
    id: `wamid.${body}`,
    timestamp,
    seq,
    storedAt,
    content: { type: 'text', body },
  };
}

const bodies = (ms: StoredMessage[]): string[] => ms.map((m) => (m.content as { body: string }).body);

describe('withStragglers', () => {
  it('takes the window, and what was stored since but sent before its newest, however late', () => {
    // A starved ingress read a burst (hi 18, Hana 19, Moreau 20) 2.2 s apart; the batch ran late.
    const pending = [stored('Hana', 19, 23_202), stored('hi', 18, 25_433), stored('Moreau', 20, 25_695)];
    expect(bodies(withStragglers(pending, 23_702))).toEqual(['Hana', 'hi']);
  });

  it('leaves what the user sent after the window’s newest for a batch of its own', () => {
    const pending = [stored('Jane', 100, 0), stored('Smith', 101, 200), stored('later', 103, 2_000)];
    expect(bodies(withStragglers(pending, 500))).toEqual(['Jane', 'Smith']);
  });

  it('takes a message of the same second stored later (equal timestamps are not late)', () => {
    const pending = [stored('a', 100, 0), stored('b', 100, 5_000)];
    expect(bodies(withStragglers(pending, 500))).toEqual(['a', 'b']);
  });
});
