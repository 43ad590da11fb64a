/**
 * Agent changes of one session keep the order they were asked in, on both backends, end to end:
 * - messages an API client posts one after another while each waits for the baton reach the
 *   user in that order (before, whichever waiting call got the baton next went first: A0, A1,
 *   A4, A2, A3 with a slow gateway, outside test QA31-F1);
 * - what the user sent before an agent takes a session the bot serves is the bot's to apply
 *   (SPEC 4: `held` is a message received while the session waits for an agent); before, a
 *   button tapped 100 ms before the take, still in the buffer window, was recorded `held` after
 *   the escalation (QA31-F2).
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('agent changes in order on the %s backend', (_name, available, setup) => {
  // A long window: what the user writes just before a take is still in the mailbox.
  const h = harnessOn(available, setup, { BATON_MAX_RETRIES: '0', BATON_BUFFER_MS: '800' });
  const ts = 1_750_000_000;
  const send = (path: string, method: string, body: unknown): Promise<Response> =>
    h.admin(path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it.skipIf(!available)(
    'messages posted while the first is still being sent reach the user in the order posted',
    async () => {
      const user = '15550411001';
      expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
      await h.settled(user, 1);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' })).status).toBe(200);
      // The first agent message is answered slowly: the others queue up behind its baton.
      h.graph.failNext(1, {
        status: 200,
        delayMs: 1200,
        body: { messaging_product: 'whatsapp', messages: [{ id: 'wamid.slow-agent-0' }] },
        to: user,
      });
      const texts = Array.from({ length: 6 }, (_, i) => `A${i}`);
      const answers: Array<Promise<Response>> = [];
      for (const t of texts) {
        answers.push(send(`/sessions/${user}/agent/messages`, 'POST', { text: t }));
        await new Promise((r) => setTimeout(r, 150));
      }
      expect((await Promise.all(answers)).map((r) => r.status)).toEqual(texts.map(() => 200));
      const received = h.graph.sent
        .filter((c) => c.body.to === `+${user}` && c.body.type === 'text')
        .map((c) => (c.body.text as { body: string }).body)
        .filter((b) => texts.includes(b));
      expect(received).toEqual(texts);
      const records = (await h.transitions(user)).filter((r) => r.kind === 'agent_message');
      expect(records).toHaveLength(texts.length);
    },
  );

  it.skipIf(!available)(
    'a take applies what the user sent before it, then escalates; what comes after is held',
    async () => {
      const user = '15550411002';
      expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
      await h.settled(user, 1);
      // "Jane" waits out the window; the agent takes the session at once.
      expect((await h.post(webhook([text(user, 'Jane', ts + 1)]))).status).toBe(200);
      const take = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' });
      expect(take.status).toBe(200);
      expect((await h.post(webhook([text(user, 'are you there?', ts + 2)]))).status).toBe(200);
      await h.until(async () => (await h.transitions(user)).length >= 4, 10_000);
      await new Promise((r) => setTimeout(r, 1200));
      const records = await h.transitions(user);
      expect(records.map((r) => r.kind)).toEqual(['advance', 'advance', 'escalated', 'held']);
      expect(records[1]).toMatchObject({ version: 2, from_step: 'ask_name', to_step: 'choose_product' });
      const s = await h.session(user);
      expect(s?.data).toEqual({ customer_name: 'Jane' });
      expect(s?.metadata.needs_agent).toBe(true);
    },
  );
});
