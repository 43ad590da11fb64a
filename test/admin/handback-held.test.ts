/**
 * Messages a user sent while their session waited for an agent are `held` (SPEC section 4),
 * also when they are still in the mailbox (the buffer window, a backlog) when the agent hands
 * the session back or resets it: the handback or the reset settles them as `held` first, so the
 * bot never applies a text meant for the agent ("thanks, talk to you later" as the user's name).
 * Both backends, end to end; a long buffer window keeps the messages pending.
 */
import { describe, expect, it } from 'vitest';
import type { TransitionRecord } from '../../src/model/session.ts';
import { escalatedAndTaken } from '../support/agent-calls.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)(
  'messages pending at a handback on the %s backend',
  (_name, available, setup) => {
    const ts = 1_750_000_000;
    const send = (path: string, method: string, body: unknown): Promise<Response> =>
      h.admin(path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const kinds = async (user: string): Promise<string[]> =>
      (await h.transitions(user)).map((r: TransitionRecord) => r.kind);

    // A long window: what the user writes just before the handback is still in the mailbox.
    const h = harnessOn(available, setup, { BATON_MAX_RETRIES: '0', BATON_BUFFER_MS: '1500' });

    it.skipIf(!available)(
      'a handback records what the user wrote before it as held, then resumes',
      async () => {
        const user = '15550409001';
        await escalatedAndTaken(h, user, ts);
        expect((await h.post(webhook([text(user, 'thanks, talk to you later', ts + 3)]))).status).toBe(200);
        expect((await h.post(webhook([text(user, 'bye', ts + 4)]))).status).toBe(200);
        const back = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
        expect(back.status).toBe(200);

        // Wait past the window: nothing more happens to the session.
        await new Promise((r) => setTimeout(r, 2000));
        const records = await h.transitions(user);
        expect(records.map((r) => r.kind)).toEqual([
          'advance',
          'advance',
          'escalated',
          'held',
          'held',
          'handback',
        ]);
        expect(records.slice(3, 5).every((r) => r.version === 3 && r.message_ids.length === 1)).toBe(true);
        expect(records[5]).toMatchObject({ version: 4, to_step: 'ask_name' });
        const s = await h.settled(user, 4);
        expect(s.current_step).toBe('ask_name');
        expect(s.data).toEqual({ customer_name: 'Jane' });
        expect(s.metadata.needs_agent).toBe(false);

        // The user's next message is the bot's again.
        expect((await h.post(webhook([text(user, 'Jane Doe', ts + 5)]))).status).toBe(200);
        expect((await h.settled(user, 5)).data).toEqual({ customer_name: 'Jane Doe' });
      },
    );

    it.skipIf(!available)('an agent reset records what the user wrote before it as held', async () => {
      const user = '15550409002';
      await escalatedAndTaken(h, user, ts);
      expect((await h.post(webhook([text(user, 'hello?', ts + 3)]))).status).toBe(200);
      const reset = await h.admin(`/sessions/${user}/reset`, { method: 'POST' });
      expect(reset.status).toBe(200);
      await new Promise((r) => setTimeout(r, 2000));
      expect(await kinds(user)).toEqual(['advance', 'advance', 'escalated', 'held', 'admin_reset']);
      const s = await h.settled(user, 4);
      expect(s.current_step).toBeNull();
    });

    it.skipIf(!available)('an agent reset names the agent who made it, when the body says', async () => {
      const user = '15550409003';
      await escalatedAndTaken(h, user, ts);
      const reset = await h.admin(`/sessions/${user}/reset`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ agent: 'Ana' }),
      });
      expect(reset.status).toBe(200);
      const last = (await h.transitions(user)).at(-1)!;
      expect(last).toMatchObject({ kind: 'admin_reset', worker: 'agent:Ana' });
      const bad = await h.admin(`/sessions/${user}/reset`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ agent: '' }),
      });
      expect(bad.status).toBe(400);
    });

    it.skipIf(!available)('a take without an agent says so in words (outside test QA80-F7)', async () => {
      for (const body of [{}, { agent: '' }]) {
        const r = await h.admin('/sessions/15550409004/agent', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        expect(r.status).toBe(400);
        expect(await r.json()).toMatchObject({
          code: 'BATON_ERR_BAD_REQUEST',
          error: 'body: agent must name the agent',
        });
      }
    });
  },
);
