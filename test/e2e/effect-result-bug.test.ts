/**
 * A bug in an effect's `onResult` (outside tester's E9): the result's batch is dead-lettered, as
 * for any flow failure, but the session went on awaiting that result, so every later message
 * waited behind it, silently, for good: no record, no reply, not in the inbox. Now the session
 * stops awaiting it and goes to an agent: `escalated`, in the inbox, the error notice sent; the
 * user's later messages are `held` for the agent, not stuck in the mailbox.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow, effect } from '../../src/flow/define.ts';
import type { SessionView } from '../../src/model/session.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const weatherFlow = defineFlow({
  id: 'weather',
  start: 'ask',
  data: z.object({ city: z.string().optional(), temp: z.number().optional() }),
  effects: {
    // The API's JSON, cast as usual: for "strtemp" it says the temperature as a string.
    forecast: effect({
      run: async (input: { city: string }) => ({
        city: input.city,
        sky: 'clear',
        temp: (input.city === 'strtemp' ? '16.5' : 16.5) as number,
      }),
    }),
  },
  steps: {
    ask: {
      say: 'City?',
      accepts: 'text',
      to: ['wait'],
      on: (i, c) => (i.type === 'text' ? c.goto('wait', { city: i.text.trim() }) : c.retry()),
    },
    wait: {
      say: 'Looking…',
      to: ['ask'],
      effect: {
        use: 'forecast',
        input: (d) => ({ city: String(d.city) }),
        onResult: (r, c) => {
          if (r.city === 'boom') throw new Error('a bug in onResult');
          return c.goto('ask', { temp: r.temp }, `${r.city}: ${r.sky}`);
        },
        onFailure: (_f, c) => c.goto('ask'),
      },
    },
  },
});

describe.each(HARNESS_BACKENDS)(
  'a flow that fails on an effect’s result, on the %s backend',
  (_n, available, setup) => {
    const h = harnessOn(available, setup, {}, { flows: [weatherFlow] });

    it.skipIf(!available)('hands the session to an agent; later messages are held, not stuck', async () => {
      const user = '15550810001';
      const T = 1_750_000_000;
      expect((await h.post(webhook([text(user, 'hi', T)]))).status).toBe(200);
      await h.until(async () => (await h.session(user))?.current_step === 'ask');
      expect((await h.post(webhook([text(user, 'boom', T + 1)]))).status).toBe(200);
      // The result's batch is dead-lettered and the session escalated.
      await h.until(async () => (await h.transitions(user)).some((r) => r.kind === 'escalated'), 15_000);
      const s = (await (await h.admin(`/sessions/${user}`)).json()) as SessionView;
      expect(s.current_step).toBe('wait');
      expect(s.metadata.needs_agent).toBe(true);
      const inbox = (await (await h.admin('/inbox')).json()) as { sessions: SessionView[] };
      expect(inbox.sessions.map((x) => x.wa_id)).toContain(user);
      const dead = (await (await h.admin('/dead-letters')).json()) as {
        dead_letters: Array<{ reason: string; ref: string }>;
      };
      expect(dead.dead_letters.some((d) => d.ref.startsWith('fx:') && /onResult/.test(d.reason))).toBe(true);
      // The user was told something went wrong, the notice tagged with the escalation's version
      // (state changed: no message id appended, and an effect's is no wamid: QA53-F2).
      const notice = await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && /went wrong/i.test(JSON.stringify(c.body)),
      );
      expect(notice.body.biz_opaque_callback_data).toBe('baton:weather:wait:3');

      // Later messages are recorded for the agent at once, not left waiting in the mailbox.
      expect((await h.post(webhook([text(user, 'hello?', T + 2)]))).status).toBe(200);
      await h.until(async () => (await h.transitions(user)).some((r) => r.kind === 'held'), 15_000);
      const versions = (await h.transitions(user)).map((r) => r.version);
      expect(versions).toEqual([1, 2, 3, 3]);
      const stats = (await (await h.admin('/stats')).json()) as { queue_depth: number };
      expect(stats.queue_depth).toBe(0);
    });

    // Data the flow's own schema refuses (outside test A7): committed, it restarted the session at
    // the user's next message, recorded like a user's reset, the order gone.
    it.skipIf(!available)(
      'data its schema refuses is refused where it is set: dead-lettered, naming the key; no restart later',
      async () => {
        const user = '15550810002';
        const T = 1_750_000_100;
        expect((await h.post(webhook([text(user, 'hi', T)]))).status).toBe(200);
        await h.until(async () => (await h.session(user))?.current_step === 'ask');
        expect((await h.post(webhook([text(user, 'strtemp', T + 1)]))).status).toBe(200);
        await h.until(async () => (await h.transitions(user)).some((r) => r.kind === 'escalated'), 15_000);
        const dead = (await (await h.admin('/dead-letters')).json()) as {
          dead_letters: Array<{ user: string; reason: string; ref: string }>;
        };
        const letter = dead.dead_letters.find((d) => d.user === user);
        expect(letter?.ref).toMatch(/^fx:/);
        expect(letter?.reason).toMatch(/BATON_ERR_FLOW_DATA|data schema refuses: temp: /);
        const s = (await (await h.admin(`/sessions/${user}`)).json()) as SessionView;
        expect(s).toMatchObject({ current_step: 'wait', data: { city: 'strtemp' } });
        expect(s.metadata.needs_agent).toBe(true);

        expect((await h.post(webhook([text(user, 'hello?', T + 2)]))).status).toBe(200);
        await h.until(async () => (await h.transitions(user)).some((r) => r.kind === 'held'), 15_000);
        expect((await h.transitions(user)).map((r) => r.kind)).not.toContain('reset');
      },
    );
  },
);
