/**
 * SPEC 1.6 and 1.7: a holder killed after its send went out and before recording it leaves a
 * copy of the reply at the user's that Baton never learnt the id of; the next holder sends the
 * reply again (the one repeat 1.6 allows) and records that second copy's id. Meta's status
 * webhooks for the first copy carry its `biz_opaque_callback_data`, unique per user (SPEC 3):
 * Baton keeps the copy's id as the reply's alias, so a button on it still names the prompt it
 * carried, and a tap on it after a later visit of the same step is stale (an outside soak saw
 * all 3 taps on prompts sent twice applied, against 796 of 797 stale for prompts sent once).
 *
 * The killed holder's copy is played by its status webhook: the one trace of it Baton can see.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import type { RecordedCall } from '../support/fake-graph.ts';
import { button, envelopeWith, text, webhook, type Msg } from '../support/payloads.ts';
import { HARNESS_BACKENDS, pgQuery } from '../support/services.ts';

const T0 = 1_750_000_000;

describe.each(HARNESS_BACKENDS)(
  'a copy of a prompt whose send was never recorded, on the %s backend',
  (name, available, setup) => {
    const h = harnessOn(available, setup);
    let n = 0;
    const sentTo = (to: string): RecordedCall[] => h.graph.sent.filter((c) => c.body.to === `+${to}`);

    /** Posts `msg` and waits for the session to settle at `version` with `sends` new replies. */
    async function step(msg: Msg, version: number, sends = 1): Promise<RecordedCall[]> {
      const before = sentTo(msg.from).length;
      expect((await h.post(webhook([msg]))).status).toBe(200);
      await h.settled(msg.from, version);
      await h.until(() => sentTo(msg.from).length >= before + sends);
      return sentTo(msg.from).slice(before);
    }

    /** Meta's status webhook about the killed holder's copy: its id, and the reply's callback data. */
    function copyDelivered(waId: string, copyId: string, callbackData: string): Record<string, unknown> {
      return envelopeWith({
        statuses: [
          {
            id: copyId,
            status: 'delivered',
            timestamp: String(T0 + 2),
            recipient_id: waId,
            biz_opaque_callback_data: callbackData,
            conversation: { id: 'c1', origin: { type: 'service' } },
            pricing: { billable: true, pricing_model: 'PMP', category: 'service', type: 'regular' },
          },
        ],
      });
    }

    it.skipIf(!available)(
      "a tap on the first copy's button after a later visit of the step is stale",
      async () => {
        const waId = `1555093${name === 'embedded' ? 1 : 2}${String(++n).padStart(3, '0')}`;
        await step(text(waId, 'hi', T0), 1);
        const [prompt] = await step(text(waId, 'Gus', T0 + 1), 2);
        const callbackData = prompt!.body.biz_opaque_callback_data!;
        expect(callbackData).toBe('baton:order:choose_product:2');
        const copyId = `wamid.COPY${waId}`;
        expect((await h.post(copyDelivered(waId, copyId, callbackData))).status).toBe(200);
        // The copy's status is about that copy, not about the send recorded.
        const { outbound } = (await (await h.admin(`/sessions/${waId}/outbound`)).json()) as {
          outbound: Array<{ callback_data: string; wamid?: string; status: string }>;
        };
        expect(outbound.find((o) => o.callback_data === callbackData)).toMatchObject({
          wamid: prompt!.providerMessageId,
          status: 'sent',
        });

        await step(text(waId, 'reset', T0 + 3), 3); // back to ask_name: a new visit follows
        await step(text(waId, 'Gus', T0 + 4), 4);
        const old = button(waId, 'sku_550e', 'Trail Shoe', T0 + 5, copyId);
        await step(old, 4);
        expect((await h.session(waId))!.current_step).toBe('choose_product');
        expect((await h.transitions(waId)).at(-1)).toMatchObject({
          kind: 'stale_input',
          message_ids: [old.id],
        });

        if (name === 'distributed') {
          // PostgreSQL knows the copy too (a session Redis no longer keeps is read from there).
          await h.until(async () => {
            const rows = await pgQuery<{ aliases: string[] | null }>(
              h.baton.config.pgSchema,
              "SELECT record -> 'aliases' AS aliases FROM outbound WHERE user_id = $1 AND provider_message_id = $2",
              [waId, prompt!.providerMessageId],
            );
            return JSON.stringify(rows[0]?.aliases) === JSON.stringify([copyId]);
          });
        }
      },
      30_000,
    );

    it.skipIf(!available)(
      "a status whose callback data names no reply of the user's teaches nothing",
      async () => {
        const waId = `1555094${name === 'embedded' ? 1 : 2}${String(++n).padStart(3, '0')}`;
        const other = `1555095${name === 'embedded' ? 1 : 2}${String(n).padStart(3, '0')}`;
        await step(text(waId, 'hi', T0), 1);
        const [prompt] = await step(text(waId, 'Ida', T0 + 1), 2);
        const callbackData = prompt!.body.biz_opaque_callback_data!;
        // Another user's status with this user's callback data, and one naming no reply at all.
        expect((await h.post(copyDelivered(other, `wamid.X${waId}`, callbackData))).status).toBe(200);
        expect(
          (await h.post(copyDelivered(waId, `wamid.Y${waId}`, 'baton:order:choose_product:9'))).status,
        ).toBe(200);
        await step(text(waId, 'reset', T0 + 3), 3);
        await step(text(waId, 'Ida', T0 + 4), 4);
        // Unknown context ids: the button id alone decides (SPEC 1.7), and choose_product takes it.
        await step(button(waId, 'sku_550e', 'Trail Shoe', T0 + 5, `wamid.X${waId}`), 5);
        expect((await h.session(waId))!.current_step).toBe('collect_shipping_address');
      },
    );
  },
);
