/**
 * An event and the user's own messages in one buffer window, on both backends (outside tests
 * QA7-F1 and QA9-F1, end to end): the user writes before the news the event brings reaches them.
 * The step the event leads to keeps its prompt whatever the rest of the batch does: the user is
 * told once, never twice, and never escalated for answers to a question nobody sent.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { eventsSpec } from '../support/event-flow.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const shop = defineFlow(eventsSpec);

describe.each(HARNESS_BACKENDS)(
  'an event in a burst of user messages, %s backend',
  (_name, available, setup) => {
    const h = harnessOn(available, setup, { BATON_BUFFER_MS: '400' }, { flows: [shop] });
    const now = () => Math.floor(Date.now() / 1000);
    const sentTo = (user: string) =>
      h.graph.sent
        .filter((c) => c.body.to === `+${user}`)
        .map((c) => ({
          tag: c.body.biz_opaque_callback_data,
          text: (c.body.text as { body?: string } | undefined)?.body ?? c.body.type,
        }));
    /** The user at the menu, then the window quiet again. */
    const atMenu = async (user: string) => {
      expect((await h.post(webhook([text(user, 'hi', now())]))).status).toBe(200);
      await h.settled(user, 1);
      expect((await h.post(webhook([text(user, 'Ana', now())]))).status).toBe(200);
      await h.settled(user, 2);
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:shop:menu:2',
      );
    };
    /** `order_shipped` posted, then at once the user's texts, stamped after it: one window. */
    const shippedThenTexts = async (user: string, texts: string[]) => {
      const r = await h.admin(`/sessions/${user}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'order_shipped', payload: { order: 'ORD-7' } }),
      });
      expect(r.status).toBe(202);
      const ts = now();
      for (const body of texts) expect((await h.post(webhook([text(user, body, ts)]))).status).toBe(200);
    };

    it.skipIf(!available)('tells the user the news once when their text after it is a retry', async () => {
      const user = '15550714001';
      await atMenu(user);
      await shippedThenTexts(user, ['thanks']);
      const s = await h.settled(user, 4);
      expect(s).toMatchObject({ current_step: 'tracking', data: { order: 'ORD-7', status: 'shipped' } });
      expect((await h.transitions(user)).slice(2).map((t) => [t.kind, t.to_step])).toEqual([
        ['advance', 'tracking'],
        ['retry', 'tracking'],
      ]);
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:shop:tracking:3',
      );
      await new Promise((r) => setTimeout(r, 300));
      // One prompt for the news, from the event's own visit; the retry's copy of it is not sent.
      expect(sentTo(user).map((x) => x.tag)).toEqual([
        'baton:shop:ask_name:1',
        'baton:shop:menu:2',
        'baton:shop:tracking:3',
      ]);
    });

    it.skipIf(!available)(
      'tells the user the news before handing them off for the retries after it',
      async () => {
        const user = '15550714002';
        await atMenu(user);
        await shippedThenTexts(user, ['a', 'b', 'c', 'd']);
        const s = await h.settled(user, 7);
        expect(s).toMatchObject({ current_step: 'tracking' });
        expect((await h.transitions(user)).slice(2).map((t) => t.kind)).toEqual([
          'advance',
          'retry',
          'retry',
          'retry',
          'escalated',
        ]);
        await h.until(() => sentTo(user).length >= 4);
        await new Promise((r) => setTimeout(r, 300));
        const sent = sentTo(user);
        expect(sent.slice(0, 2).map((x) => x.tag)).toEqual(['baton:shop:ask_name:1', 'baton:shop:menu:2']);
        // The news (the event's visit, version 3), then the hand-off notice: nothing else.
        expect(sent.slice(2)).toEqual([
          { tag: 'baton:shop:tracking:3', text: 'interactive' },
          {
            tag: expect.stringMatching(/^baton:shop:tracking:7/),
            text: expect.stringMatching(/member of our team/),
          },
        ]);
      },
    );
  },
);
