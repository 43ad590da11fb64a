/**
 * `BATON_SEND_TIMEOUT_MS`: a Graph request that never answers holds its user's replies for that
 * long, then counts as failed and is tried again. The timeout was fixed at 30 s (outside test
 * QA106-F3: a hung request held the user's session for 30 s, and no variable changed it).
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

describe('BATON_SEND_TIMEOUT_MS', () => {
  it('a hung send is cut at the configured timeout and sent again', async () => {
    const h = await startHarness({ BATON_SEND_TIMEOUT_MS: '1000' });
    try {
      const user = '15550770001';
      const other = '15550770002';
      // The first request to this user is answered only after 25 s: far past the timeout.
      h.graph.failNext(1, {
        status: 200,
        delayMs: 25_000,
        to: user,
        body: { messaging_product: 'whatsapp', messages: [{ id: 'wamid.hung' }] },
      });
      const ts = Math.floor(Date.now() / 1000);
      const started = Date.now();
      expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
      expect((await h.post(webhook([text(other, 'hi', ts)]))).status).toBe(200);
      // Another user is not held by it.
      await h.graph.waitFor((c) => c.body.to === `+${other}`, 5_000);
      // The hung user's reply arrives by the retry, long before the 30 s default would allow.
      const reply = await h.graph.waitFor((c) => c.body.to === `+${user}`, 10_000);
      expect(reply.at - started).toBeGreaterThanOrEqual(1000);
      const view = await h.settled(user, 1);
      expect(view.current_step).toBe('ask_name');
    } finally {
      await h.close();
    }
  });

  it('takes 1000-120000 ms and names the variable otherwise', () => {
    expect(loadConfig({}).sendTimeoutMs).toBe(30_000);
    expect(loadConfig({ BATON_SEND_TIMEOUT_MS: '5000' }).sendTimeoutMs).toBe(5000);
    for (const bad of ['500', '200000', 'soon'])
      expect(() => loadConfig({ BATON_SEND_TIMEOUT_MS: bad })).toThrow(/BATON_SEND_TIMEOUT_MS/);
  });
});
