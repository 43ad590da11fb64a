/**
 * SPEC 1.6 and 1.8: an agent clears a lease whose holder is still sending a reply (Graph slow
 * to answer). The next holder must not send that reply a second time while the first send may
 * still reach the user: it waits for the earlier holder to record it. Nothing crashed, so the
 * user gets the reply once. Both stores, real HTTP, a fake Graph that answers slowly.
 */
import { describe, expect, it } from 'vitest';
import { RESET_CANCELLED_MAYBE_SENT, SENT_DESPITE_RESET } from '../../src/model/message.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('clearing a lease mid-send on the %s backend', (_name, available, setup) => {
  const h = harnessOn(available, setup);

  it.skipIf(!available)(
    'sends the reply once: the next holder waits for the send in flight',
    async () => {
      const user = '15550701001';
      h.graph.failNext(1, {
        status: 200,
        delayMs: 2500,
        body: {
          messaging_product: 'whatsapp',
          contacts: [{ input: `+${user}`, wa_id: user }],
          messages: [{ id: 'wamid.slow1' }],
        },
      });
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      await h.graph.waitForArrival((b) => b.to === `+${user}`);
      const cleared = await h.admin(`/sessions/${user}/lock`, { method: 'DELETE' });
      expect(await cleared.json()).toEqual({ released: true });
      await h.graph.waitFor((c) => c.body.to === `+${user}`);
      // The next holder has had the session for seconds by now; give a second send every chance.
      await new Promise((r) => setTimeout(r, 1500));
      const prompts = h.graph.requests.filter(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:order:ask_name:1',
      );
      expect(prompts).toHaveLength(1);
      const out = (await (await h.admin(`/sessions/${user}/outbound`)).json()) as {
        outbound: Array<{ status: string; wamid?: string }>;
      };
      expect(out.outbound).toMatchObject([{ status: 'sent', wamid: 'wamid.slow1' }]);
      // The conversation goes on as usual.
      expect((await h.post(webhook([text(user, 'Jane', 1_750_000_001)]))).status).toBe(200);
      await h.settled(user, 2);
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:2');
    },
    30_000,
  );

  /** The name prompt to `user` answered by the Graph after 2.5 s, with `wamid`. */
  const slowPrompt = (user: string, wamid: string): void =>
    h.graph.failNext(1, {
      status: 200,
      delayMs: 2500,
      to: user,
      body: {
        messaging_product: 'whatsapp',
        contacts: [{ input: `+${user}`, wa_id: user }],
        messages: [{ id: wamid }],
      },
    });
  type Out = { outbound: Array<{ status: string; wamid?: string; last_error?: string | null }> };
  const outbound = async (user: string): Promise<Out['outbound']> =>
    ((await (await h.admin(`/sessions/${user}/outbound`)).json()) as Out).outbound;

  it.skipIf(!available)(
    "a reset after a clear waits for the reply on its way: the new conversation's first prompt comes after it (QA133-F3)",
    async () => {
      const user = '15550701003';
      slowPrompt(user, 'wamid.slow-before-reset');
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      const arrived = Date.now();
      await h.graph.waitForArrival((b) => b.to === `+${user}`);
      // The agent's "Clear lease", then "Reset" while the name prompt is at the Graph, and the
      // user starts over meanwhile.
      expect(await (await h.admin(`/sessions/${user}/lock`, { method: 'DELETE' })).json()).toEqual({
        released: true,
      });
      const reset = h.admin(`/sessions/${user}/reset`, { method: 'POST' });
      await new Promise((r) => setTimeout(r, 300));
      expect((await h.post(webhook([text(user, 'hello again', 1_750_000_005)]))).status).toBe(200);
      expect((await reset).status).toBe(200);
      // The reset answered once the Graph had: the reply stands as sent, not cancelled.
      expect(Date.now() - arrived).toBeGreaterThanOrEqual(2000);
      await h.settled(user, 3);
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:order:ask_name:3',
      );
      const order = h.graph.sent
        .filter((c) => c.body.to === `+${user}`)
        .map((c) => String(c.body.biz_opaque_callback_data));
      expect(order).toEqual(['baton:order:ask_name:1', 'baton:order:ask_name:3']);
      expect(await outbound(user)).toMatchObject([
        { status: 'sent', wamid: 'wamid.slow-before-reset' },
        { status: 'sent' },
      ]);
      expect((await outbound(user))[0]!.last_error ?? null).toBeNull();
    },
    30_000,
  );

  it.skipIf(!available)(
    "records as sent a reply an agent's reset cancelled while its send was on its way, the clear forgotten (outside test Q1)",
    async () => {
      const user = '15550701002';
      slowPrompt(user, 'wamid.slow-reset');
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      await h.graph.waitForArrival((b) => b.to === `+${user}`);
      // The agent's "Clear lease", then "Reset" while the name prompt is at the Graph; the store
      // no longer knows of the clear (a Redis restarted empty), so the reset does not wait.
      expect(await (await h.admin(`/sessions/${user}/lock`, { method: 'DELETE' })).json()).toEqual({
        released: true,
      });
      const backend = h.baton.backend;
      const leaseCleared = backend.leaseCleared.bind(backend);
      backend.leaseCleared = () => Promise.resolve(null);
      try {
        expect((await h.admin(`/sessions/${user}/reset`, { method: 'POST' })).status).toBe(200);
      } finally {
        backend.leaseCleared = leaseCleared;
      }
      // Its send on its way: cancelled, said to have maybe reached the user.
      expect(await outbound(user)).toMatchObject([
        { status: 'failed', last_error: RESET_CANCELLED_MAYBE_SENT },
      ]);
      // The Graph took it: the record says so, and the reply is no failed one.
      await h.graph.waitFor((c) => c.body.to === `+${user}`);
      const after = await h.until(async () => {
        const o = (await outbound(user))[0];
        return o?.status === 'sent' ? o : undefined;
      }, 10_000);
      expect(after).toMatchObject({
        status: 'sent',
        wamid: 'wamid.slow-reset',
        last_error: SENT_DESPITE_RESET,
      });
      const failed = (await (await h.admin('/failed-replies')).json()) as { replies?: unknown[] };
      expect(JSON.stringify(failed)).not.toContain(user);
    },
    30_000,
  );
});
