/**
 * Outside test D3: a session an agent had taken and was writing to expired after
 * `BATON_SESSION_TTL` counted from the user's last message alone; the bot restarted at its first
 * question, the data was wiped and the agent's next message was refused. An agent's take,
 * messages and handback now keep the session alive, on both backends.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const TTL_SEC = 4;

describe.each(HARNESS_BACKENDS)(
  'an agent at work keeps a session alive, %s backend',
  (_name, available, setup) => {
    const h = harnessOn(available, setup, { BATON_SESSION_TTL: `${TTL_SEC}s`, BATON_DEDUPE_TTL: '1h' });
    const json = (body: unknown): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

    it.skipIf(!available)('the user writing after the TTL is held for the agent, not restarted', async () => {
      const user = '15550714001';
      const nowSec = () => Math.floor(Date.now() / 1000);
      expect((await h.post(webhook([text(user, 'hi', nowSec())]))).status).toBe(200);
      await h.settled(user, 1);
      expect((await h.post(webhook([text(user, 'Kim', nowSec())]))).status).toBe(200);
      await h.settled(user, 2);
      expect((await h.admin(`/sessions/${user}/agent`, json({ agent: 'ana' }))).status).toBe(200);
      await new Promise((r) => setTimeout(r, (TTL_SEC - 1) * 1000));
      const wrote = await h.admin(
        `/sessions/${user}/agent/messages`,
        json({ text: 'Checking, one moment.' }),
      );
      expect(wrote.status).toBe(200);
      // Past the TTL after the user's last message, within it after the agent's.
      await new Promise((r) => setTimeout(r, 2_000));
      expect((await h.post(webhook([text(user, 'thanks!', nowSec())]))).status).toBe(200);
      await h.until(async () => (await h.transitions(user)).at(-1)?.kind === 'held');
      expect((await h.transitions(user)).map((t) => t.kind)).not.toContain('expired');
      expect(await h.session(user)).toMatchObject({
        current_step: 'choose_product',
        data: { customer_name: 'Kim' },
        metadata: { needs_agent: true },
      });
      const again = await h.admin(`/sessions/${user}/agent/messages`, json({ text: 'Which product?' }));
      expect(again.status).toBe(200);
    });
  },
);
