/**
 * SPEC 3: "`failed` ones appear in the dashboard". A reply Meta reports failed (its status
 * webhook) is listed on the overview, with the user, the step, the reply and Meta's error, linked
 * to the session; until now only the session's own page said so, and nothing led an agent there.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { envelopeWith, PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('failed replies on the overview, %s backend', (_name, available, setup) => {
  const h = harnessOn(available, setup);

  it.skipIf(!available)(
    'lists a reply Meta reported failed, newest first, linked to its session',
    async () => {
      const cookie = await h.dashboardCookie();
      const overview = async (): Promise<string> =>
        (await fetch(`${h.url}/admin`, { headers: { cookie } })).text();
      expect(await overview()).toMatch(/<section class="card" id="failed-replies">[\s\S]*None\./);

      const user = '15550704001';
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      const sent = await h.graph.waitFor((c) => c.body.to === `+${user}`);
      await h.settled(user, 1);
      const failed = envelopeWith({
        statuses: [
          {
            id: sent.providerMessageId,
            status: 'failed',
            timestamp: '1750000005',
            recipient_id: user,
            errors: [{ code: 131026, title: 'Message undeliverable' }],
          },
        ],
      });
      expect((await h.post(failed)).status).toBe(200);

      const page = await h.until(async () => {
        const p = await overview();
        return p.includes(`/admin/session?wa_id=${user}&amp;channel=${PHONE_ID}`) ? p : undefined;
      });
      const card = page.slice(page.indexOf('id="failed-replies"'));
      expect(card).toContain('<code>ask_name</code>');
      expect(card).toContain('131026');
      expect(card).not.toContain('None.');
      // When it failed, as well as when it was committed (the failure came after).
      expect(card).toMatch(/<th>Failed<\/th>\s*<th>Committed<\/th>/);
      const api = (await (await h.admin('/failed-replies')).json()) as {
        failed_replies: { to: string; created_at: string; failed_at: string }[];
      };
      const mine = api.failed_replies.find((f) => f.to === user)!;
      expect(Date.parse(mine.failed_at)).toBeGreaterThan(Date.parse(mine.created_at));
      expect(card).toContain(`<time>${mine.failed_at}</time>`);
    },
  );
});
