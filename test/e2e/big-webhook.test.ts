/**
 * SPEC 1.5 and 3: Meta may send up to 1,000 updates in one POST. A user's 999 texts in one
 * webhook are stored within one buffer window, so they are one batch: the new session's first
 * message starts it, the other 998 are one name, and one product prompt is sent (not a second
 * batch that retries the product step). Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import { bothStores } from '../support/stores.ts';

describe.each(bothStores())('a webhook of 999 texts from one user (%s)', (_mode, env) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ ...env(), BATON_BUFFER_MS: '300' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is one batch: one name, one product prompt', async () => {
    const u = '15557790001';
    const ts = Math.floor(Date.now() / 1000);
    const words = Array.from({ length: 999 }, (_x, i) => `w${i}`);
    expect((await h.post(webhook(words.map((w) => text(u, w, ts))))).status).toBe(200);
    const s = await h.settled(u, 2);
    expect(s.current_step).toBe('choose_product');
    expect(s.data).toEqual({ customer_name: words.slice(1).join(' ') });
    const records = await h.transitions(u);
    expect(records.map((r) => [r.version, r.kind, r.message_ids.length])).toEqual([
      [1, 'advance', 1],
      [2, 'advance', 998],
    ]);
    const prompts = h.graph.sent
      .filter((c) => c.body.to === `+${u}`)
      .map((c) => c.body.biz_opaque_callback_data);
    expect(prompts).toEqual(['baton:order:choose_product:2']);
  }, 60_000);
});
