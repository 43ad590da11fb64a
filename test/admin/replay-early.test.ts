/**
 * A reply refused for good is dead-lettered first and marked failed a moment later (the engine's
 * `failOutbound`: the letter is durable before the record says failed). An agent, or a script on
 * the admin API, that replays the letter in between must still get the reply sent: before the fix,
 * the holder's late `failed` undid the replay, the letter read "replayed" and nothing went out
 * (seen once in CI, where a test replayed the moment the letter was listed).
 */
import { describe, expect, it } from 'vitest';
import type { OutboundPatch } from '../../src/backends/types.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)(
  'a replay while the failure is being recorded, %s backend',
  (_name, available, setup) => {
    const h = harnessOn(available, setup);

    it.skipIf(!available)('waits for the failure to be recorded, then the reply goes out once', async () => {
      const user = '15550712001';
      const { backend } = h.baton;
      // The holder's `failed` write is held until the agent's replay has been asked for.
      let replayAsked!: () => void;
      const asked = new Promise<void>((r) => (replayAsked = r));
      const update = backend.updateOutbound.bind(backend);
      let held = 0;
      backend.updateOutbound = async (id: string, patch: OutboundPatch): Promise<void> => {
        if (patch.status === 'failed' && held === 0) {
          held += 1;
          await asked;
          await new Promise((r) => setTimeout(r, 200));
        }
        return update(id, patch);
      };
      try {
        h.graph.failNext(1, { status: 400, graphCode: 131047, to: user });
        expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
        const letter = await h.until(async () => {
          const { dead_letters } = (await (await h.admin('/dead-letters')).json()) as {
            dead_letters: Array<{ id: string; user: string }>;
          };
          return dead_letters.find((d) => d.user === user);
        });
        const replay = h.admin(`/dead-letters/${encodeURIComponent(letter.id)}/replay`, { method: 'POST' });
        replayAsked();
        expect((await replay).status).toBe(200);
        expect(held).toBe(1);
        await h.graph.waitFor((c) => c.body.to === `+${user}` && c.status === 200);
        await h.settled(user, 1);
        expect(h.graph.sent.filter((c) => c.body.to === `+${user}` && c.status === 200)).toHaveLength(1);
        const { dead_letters } = (await (await h.admin('/dead-letters')).json()) as {
          dead_letters: Array<{ user: string; replayed_at?: string }>;
        };
        expect(dead_letters.filter((d) => d.user === user && d.replayed_at === undefined)).toEqual([]);
      } finally {
        backend.updateOutbound = update;
      }
    });
  },
);
