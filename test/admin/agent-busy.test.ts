/**
 * An agent's change needs the session's baton. A worker waiting out a throttled gateway
 * (Retry-After: 30 s) yields it to the agent instead of holding it for the whole backoff; a
 * worker that really works (here: a slow shop lookup) keeps it, and the agent gets a clear,
 * retryable `409 BATON_ERR_SESSION_BUSY`.
 */
import { describe, expect, it } from 'vitest';
import type { SessionView } from '../../src/model/session.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('an agent and a busy worker on the %s backend', (_name, available, setup) => {
  const ts = 1_750_000_000;
  const call = (path: string, method: string, body: unknown): Promise<Response> =>
    h.admin(path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const h = harnessOn(available, setup, { BATON_LOCK_TTL_MS: '3000' });
  /** The user says hi and Graph throttles the name prompt, asking for 6 s: that refusal. */
  const throttledPrompt = async (user: string) => {
    h.graph.failNext(1, { status: 429, graphCode: 130429, retryAfter: 6 });
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    return h.graph.waitForRequest((c) => c.body.to === `+${user}` && c.status === 429);
  };

  it.skipIf(!available)(
    'a worker waiting out a throttled gateway yields the baton to the agent',
    async () => {
      const user = '15550808001';
      const refused = await throttledPrompt(user);

      const started = Date.now();
      const took = await call(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' });
      expect(took.status).toBe(200);
      // Not the 6 s backoff, not the lock TTL: the worker looks every half second.
      expect(Date.now() - started).toBeLessThan(2_500);
      const s = (await (await h.admin(`/sessions/${user}`)).json()) as SessionView;
      expect(s.metadata.needs_agent).toBe(true);
      // The prompt left unsent goes out in order once the gateway lets it: not before its
      // Retry-After, though another turn took the session up meanwhile (the agent's take).
      const sent = await h.graph.waitFor((c) => c.body.to === `+${user}`, 15_000);
      expect(sent.at - refused.at).toBeGreaterThanOrEqual(5_950);
    },
  );

  it.skipIf(!available)(
    "an agent's message and handback behind a reply in backoff answer at once, and everything goes out in order later (they waited the backoff out: QA53-F1)",
    async () => {
      const user = '15550808003';
      const refused = await throttledPrompt(user);
      expect((await call(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' })).status).toBe(200);

      let started = Date.now();
      const wrote = await call(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here' });
      expect(wrote.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(2_500);
      started = Date.now();
      const back = await call(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
      expect(back.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(2_500);

      // In order, none before the throttle's Retry-After: the bot's prompt, the agent's message,
      // the handback's prompt.
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && JSON.stringify(c.body).includes('Ana here'),
        20_000,
      );
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && /:3$/.test(String(c.body.biz_opaque_callback_data)),
        5_000,
      );
      const sent = h.graph.sent.filter((c) => c.body.to === `+${user}`);
      expect(sent.map((c) => String(c.body.biz_opaque_callback_data).replace(/^baton:order:/, ''))).toEqual([
        'ask_name:1',
        expect.stringMatching(/^ask_name:2:agent-\d+$/),
        'ask_name:3',
      ]);
      expect(sent[0]!.at - refused.at).toBeGreaterThanOrEqual(5_950);
    },
  );

  it.skipIf(!available)(
    'a worker holding the baton for real work makes the agent wait, then 409 BUSY',
    async () => {
      const user = '15550808002';
      // The worker's send hangs (Graph answers after 6 s, beyond the agent's wait): it holds the
      // baton the whole time, as it does for a slow lookup.
      h.graph.failNext(1, { status: 200, delayMs: 6_000, body: { messages: [{ id: 'wamid.SLOW' }] } });
      expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
      await h.graph.waitForArrival((b) => b.to === `+${user}`);
      const r = await call(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' });
      expect(r.status).toBe(409);
      expect(await r.json()).toMatchObject({ code: 'BATON_ERR_SESSION_BUSY' });
    },
  );
});
