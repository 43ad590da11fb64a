/**
 * Strings no store takes as they come: a lone UTF-16 surrogate (Redis's cjson refuses it, and a
 * Lua script failing halfway leaves its writes behind) and U+0000 (PostgreSQL text refuses it).
 * Each webhook carries one hostile message and one from another user; both are stored and
 * answered, on both backends, and the admin API keeps answering. An id no session key can be
 * made of (a space, a control character, over 128 characters, `.` or `..`) is skipped and reported, never
 * left to fail the webhook.
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { envelopeWith } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const cases = HARNESS_BACKENDS;

/** The raw JSON text of a webhook: hostile escapes survive only as text, not through JSON.stringify. */
function rawWebhook(messages: string[], contacts: string[] = []): string {
  const body = JSON.stringify(envelopeWith({ contacts: '@CONTACTS@', messages: '@MESSAGES@' }));
  return body
    .replace('"@CONTACTS@"', `[${contacts.join(',')}]`)
    .replace('"@MESSAGES@"', `[${messages.join(',')}]`);
}

const msg = (from: string, id: string, textJson: string): string =>
  `{"from":"${from}","id":"${id}","timestamp":"1750000000","type":"text","text":{"body":${textJson}}}`;

describe.each(cases)('hostile strings on the %s backend', (_name, available, setup) => {
  const h = harnessOn(available, setup);

  it.skipIf(!available)('a lone surrogate or a NUL harms neither its message nor its neighbour', async () => {
    const [a, b, c] = ['15550007001', '15550007002', '15550007003'];
    const body = rawWebhook(
      [
        msg(a, 'wamid.HS.A', '"fine"'),
        msg(b, 'wamid.HS.B', '"broken emoji \\ud83d and a \\u0000 nul"'),
        msg(c, 'wamid.HS.C', '"\\udc00"'),
      ],
      [`{"profile":{"name":"Mal\\ud800ory\\u0000"},"wa_id":"${b}"}`],
    );
    const r = await h.post(undefined, { raw: body });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ received: 3, duplicates: 0 });
    // Meta's retry of the same body is recognised, nothing more.
    expect(await (await h.post(undefined, { raw: body })).json()).toEqual({ received: 0, duplicates: 3 });
    for (const u of [a, b, c]) {
      const s = await h.settled(u, 1);
      expect(s.current_step).toBe('ask_name');
      await h.graph.waitFor((call) => call.body.to === `+${u}`);
    }
    // The admin API reads the sessions (distributed: through PostgreSQL's copy) and the texts.
    const list = await h.admin('/sessions?limit=200');
    expect(list.status).toBe(200);
    const conv = await h.admin(`/sessions/${b}/messages`);
    expect(conv.status).toBe(200);
    const inbound = (
      (await conv.json()) as { messages: Array<{ direction: string; text?: string }> }
    ).messages.find((m) => m.direction === 'in');
    expect(inbound?.text).toBe('broken emoji \uFFFD and a \uFFFD nul');
    expect((await h.admin('/inbox')).status).toBe(200);
    expect((await h.admin(`/sessions/${b}/transitions`)).status).toBe(200);
  });

  it.skipIf(!available)(
    'an id no session key can be made of is skipped; its neighbour is stored',
    async () => {
      const fine = '15550007010';
      const body = rawWebhook([
        msg('1555 0007011', 'wamid.HS.SPACE', '"hi"'),
        msg('9'.repeat(129), 'wamid.HS.LONG', '"hi"'),
        msg('1555\\u00000007012', 'wamid.HS.NUL', '"hi"'),
        msg(fine, 'wamid.HS.FINE', '"hi"'),
        msg('15550007013', `wamid.${'x'.repeat(300)}`, '"hi"'),
        // A browser resolves these path segments, even encoded: the dashboard could not name them.
        msg('.', 'wamid.HS.DOT', '"hi"'),
        msg('..', 'wamid.HS.DOTDOT', '"hi"'),
        // Message ids that would all be stored as `wamid.HS.\uFFFD`: the later ones duplicates of
        // the first, in no record and no dead letter (outside test QA76-F2). Each is skipped.
        msg('15550007014', 'wamid.HS.\\ufffd', '"first"'),
        msg('15550007014', 'wamid.HS.\\u0000', '"second"'),
        msg('15550007014', 'wamid.HS.\\ud800', '"third"'),
        // Look-alikes, the same text from the same sender: two letters, not one (QA78-F5).
        msg('15550007015', 'wamid.HS.LA\\u0000', '"look-alike"'),
        msg('15550007015', 'wamid.HS.LA\\udfff', '"look-alike"'),
      ]);
      const r = await h.post(undefined, { raw: body });
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ received: 1, duplicates: 0 });
      await h.settled(fine, 1);
      // Reported where an agent looks: each skipped one is a dead letter of its own.
      const letters = (await (await h.admin('/dead-letters')).json()) as {
        dead_letters: Array<{ reason: string; payload: unknown }>;
      };
      const texts = letters.dead_letters
        .filter((d) => d.reason.includes('U+FFFD'))
        .map((d) => JSON.stringify(d.payload));
      expect(texts).toHaveLength(5);
      expect(texts.filter((x) => x.includes('look-alike'))).toHaveLength(2);
      for (const t of ['first', 'second', 'third']) expect(texts.some((x) => x.includes(t))).toBe(true);
    },
  );
});
