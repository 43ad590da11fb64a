/**
 * A gateway refusing sends does not hold the user's messages back (outside test QA11-F1): while a
 * reply waits out its backoff, a message the user sends is applied at once (the state goes on,
 * the queue stays empty), and the replies go out later in order. Before, each turn waited out up
 * to 30 s of backoff with the baton in hand, and every message waited behind it.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('a gateway refusing sends, %s backend', (_name, available, setup) => {
  // Backoffs of 4, 8, 16 s...: far longer than the test waits for the message to be applied. A
  // buffer window of 1.5 s: a message is not due for that long after it is stored, and the
  // backoff must not be cut (into a loop of attempts) before then.
  const h = harnessOn(
    available,
    setup,
    { BATON_BUFFER_MS: '1500' },
    { engine: { sendBackoffMs: 4000, maxSendAttempts: 8 } },
  );
  const now = () => Math.floor(Date.now() / 1000);
  const sentTo = (user: string) =>
    h.graph.sent.filter((c) => c.body.to === `+${user}`).map((c) => c.body.biz_opaque_callback_data);

  it.skipIf(!available)(
    "applies the user's next message while the reply before it waits out its backoff; replies go in order",
    async () => {
      const user = '15550721001';
      // Graph answers 503 to this user's next three sends.
      h.graph.failNext(3, { status: 503, to: user });
      expect((await h.post(webhook([text(user, 'hi', now())]))).status).toBe(200);
      await h.until(() => h.graph.requests.some((c) => c.body.to === `+${user}`));
      expect((await h.post(webhook([text(user, 'Ada Lovelace', now())]))).status).toBe(200);
      // Applied with nothing sent yet: the prompt for "hi" still waits out its backoff.
      await h.until(async () => (await h.session(user))?.metadata.version === 2);
      expect(sentTo(user)).toEqual([]);
      expect(await h.session(user)).toMatchObject({
        current_step: 'choose_product',
        data: { customer_name: 'Ada Lovelace' },
      });
      // The wait was cut short once, when the message's window closed, not in a loop of
      // attempts while it was still open: the first attempt, and at most one after the cut.
      expect(h.graph.requests.filter((c) => c.body.to === `+${user}`).length).toBeLessThanOrEqual(2);
      // Graph takes them again: the name prompt first, then the product prompt.
      await h.until(() => sentTo(user).length === 2, 40_000);
      expect(sentTo(user)).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
    },
    60_000,
  );
});
