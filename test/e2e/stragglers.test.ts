/**
 * A message stored after its burst's window closed, but before the burst's batch ran, and sent
 * before the burst's newest message, joins that batch instead of being recorded `late` after it
 * (outside tests under CPU load saw names lose their first half: the ingress stored a burst over
 * more than the window, once 2.2 s apart), however late the batch runs; one stored after the
 * batch ran is `late`. The worker is made late by a lease the test holds meanwhile.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const T0 = 1_750_000_000;

describe.each(HARNESS_BACKENDS)(
  'a burst stored over more than the window, %s backend',
  (_name, available, setup) => {
    const h = harnessOn(available, setup, { BATON_BUFFER_MS: '500' });

    it.skipIf(!available)(
      'is one batch when its batch runs late: the first text is not late',
      async () => {
        const user = '15550703001';
        const key = { channel: PHONE_ID, user };
        expect((await h.post(webhook([text(user, 'hi', T0)]))).status).toBe(200);
        await h.settled(user, 1);

        // A busy worker: the session's baton is taken while the burst comes in.
        const backend = h.baton.backend;
        const lease = await h.until(
          async () => (await backend.acquireLease(key, 'busy-elsewhere', 10_000)) ?? undefined,
        );
        const second = text(user, 'Lovelace', T0 + 2);
        const first = text(user, 'Ada', T0 + 1);
        const middle = text(user, 'Byron', T0 + 1);
        const past = text(user, 'Countess', T0 + 1);
        expect((await h.post(webhook([second]))).status).toBe(200);
        await new Promise((r) => setTimeout(r, 700)); // past the 500 ms window, within its grace
        expect((await h.post(webhook([first]))).status).toBe(200);
        // Stored more than a window after the window: in hand when the batch runs, so applied.
        await new Promise((r) => setTimeout(r, 1400));
        expect((await h.post(webhook([middle]))).status).toBe(200);
        await backend.releaseLease(lease);

        const s = await h.settled(user, 2);
        expect(s.data).toEqual({ customer_name: 'Ada Byron Lovelace' });
        // One that comes after the batch ran, sent before what it applied: late (SPEC 1.5).
        expect((await h.post(webhook([past]))).status).toBe(200);
        await h.until(async () => (await h.transitions(user)).some((r) => r.kind === 'late'));
        const records = await h.transitions(user);
        expect(records.map((r) => [r.version, r.kind, [...r.message_ids].sort()])).toEqual([
          [1, 'advance', [expect.any(String)]],
          [2, 'advance', [first.id, middle.id, second.id].sort()],
          [2, 'late', [past.id]],
        ]);
        await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:2');
        expect(h.graph.sent.map((c) => c.body.biz_opaque_callback_data)).toEqual([
          'baton:order:ask_name:1',
          'baton:order:choose_product:2',
        ]);
      },
      30_000,
    );
  },
);
