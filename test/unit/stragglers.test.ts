/**
 * Which stored messages a batch takes (SPEC 1.5): those stored within its window, and any stored
 * since that the user sent no later than the window's newest (else they would be `late`).
 */
import { describe, expect, it } from 'vitest';
import { withStragglers } from '../../src/engine/engine.ts';
import type { StoredMessage } from '../../src/model/message.ts';

let seq = 0;
function stored(body: string, timestamp: number, storedAt: number, readLateMs?: number): StoredMessage {
  seq += 1;
  return {
    ...(readLateMs === undefined ? {} : { readLateMs }),
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

  // Outside test QA137-F1, F3: a process stopped for 1.3 s mid-burst read the rest of the burst
  // then, a second after the window closed, and a batch that ran later (a worker restarted after
  // 3 s) no longer knew that the process had been late. Each message keeps how late it was read.
  it('counts a message read late as arrived when it may have come, however late the batch runs', () => {
    const pending = [
      stored('Jane', 100, 0),
      stored('12 Oak Road', 101, 1_350, 1_300),
      stored('Smith', 101, 1_360, 1_300),
      stored('later', 104, 4_000),
    ];
    expect(bodies(withStragglers(pending, 500))).toEqual(['Jane', '12 Oak Road', 'Smith']);
    // Read on time, the same messages are a batch of their own.
    const onTime = [stored('Jane', 100, 0), stored('12 Oak Road', 101, 1_350), stored('Smith', 101, 1_360)];
    expect(bodies(withStragglers(onTime, 500))).toEqual(['Jane']);
  });
});
