import { describe, expect, it } from 'vitest';
import { conversationPage } from '../../src/admin/conversation.ts';
import { escapeHtml, html, raw } from '../../src/admin/html.ts';
import {
  conversationCard,
  duration,
  messageOutcomes,
  outboundCard,
  stateCard,
  timelineCard,
} from '../../src/admin/views.ts';
import type { StoredMessage } from '../../src/model/message.ts';
import type { OutboundRecord, SessionSnapshot, TransitionRecord } from '../../src/model/session.ts';

const EVIL = `"><script>alert('x')</script>&amp;\``;

const session: SessionSnapshot = {
  channel: 'ch',
  user: '1555',
  format: 1,
  flow: 'order',
  flowVersion: 1,
  step: 'ask_name',
  data: { [EVIL]: EVIL },
  version: 3,
  visitVersion: 3,
  lastInteraction: 1_750_000_000,
  lastMessageId: EVIL,
  retryCount: 1,
  needsAgent: true,
  createdAt: 1_750_000_000_000,
  outboundSeq: 1,
  agent: { name: EVIL, at: 1, version: 3 },
};

const inbound: StoredMessage = {
  id: 'wamid.1',
  channel: 'ch',
  user: '1555',
  provider: 'cloud-api',
  timestamp: 1_750_000_000,
  seq: 1,
  storedAt: 1_750_000_000_500,
  content: { type: 'text', body: `  two\n  lines ${EVIL}` },
};

const outbound: OutboundRecord = {
  id: 'ch:1555:1',
  channel: 'ch',
  user: '1555',
  seq: 1,
  flow: 'order',
  step: 'ask_name',
  version: 1,
  to: '1555',
  body: { type: 'buttons', text: EVIL, buttons: [{ id: 'a', title: EVIL }] },
  callbackData: 'baton:order:ask_name:1',
  isPrompt: true,
  status: 'failed',
  attempts: 2,
  lastError: EVIL,
  createdAt: 1_750_000_001_000,
};

const record: TransitionRecord = {
  version: 3,
  from_step: 'ask_name',
  to_step: 'ask_name',
  kind: 'late',
  message_ids: [EVIL],
  at: '2026-01-01T00:00:00.000Z',
  worker: EVIL,
  fencing_token: 4,
};

/** No raw markup from the hostile value survives: only escaped forms. */
function expectSafe(markup: string): void {
  expect(markup).not.toContain('<script>');
  expect(markup).not.toContain(`"><script`);
  expect(markup).not.toContain(`alert('x')`);
  expect(markup).toContain('&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;amp;&#96;');
}

describe('dashboard views escape every value', () => {
  it('escapes the five HTML specials and the backtick', () => {
    expect(escapeHtml(`<a href="x" title='y'>&\``)).toBe(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&#96;',
    );
    expect(html`<p title="${EVIL}">${EVIL}</p>`.value).not.toContain('<script>');
    expect(html`${raw('<b>ok</b>')}${[html`<i>${'<'}</i>`, null, false, 3]}`.value).toBe(
      '<b>ok</b><i>&lt;</i>3',
    );
  });

  it('the state card, with hostile data keys, values, message id and agent name', () => {
    const m = stateCard(session, {
      holder: EVIL,
      expires_at: 'soon',
      expires_in_ms: 1500,
      holder_live: true,
    }).value;
    expectSafe(m);
    expect(m).toContain('taken by <strong>&quot;&gt;&lt;script&gt;');
    expect(m).not.toContain('lease-holder-gone');
  });

  it("says when a lease's holder is gone: clearing it is safe (outside test Q4)", () => {
    const m = stateCard(session, {
      holder: 'vm:14638:345265',
      expires_at: 'soon',
      expires_in_ms: 1500,
      holder_live: false,
    }).value;
    expect(m).toMatch(/id="lease-holder-gone"\s*>its worker is gone: clearing the lease is safe</);
  });

  it('the conversation, keeping the text’s own whitespace and nothing more', () => {
    const { messages } = conversationPage([inbound], [outbound], 10);
    const m = conversationCard(messages).value;
    expectSafe(m);
    expect(m).toContain('<div class="text" dir="auto">  two\n  lines &quot;&gt;&lt;script&gt;');
    expect(m).toContain('status-failed');
  });

  it('marks a message Baton read late, its process stalled (outside test QA137-F1)', () => {
    const late = { ...inbound, id: 'w.late', readLateMs: 1_308 };
    const { messages } = conversationPage(
      [inbound, late, { ...inbound, id: 'w.soon', readLateMs: 40 }],
      [],
      10,
    );
    expect(messages.map((m) => m.read_late_ms)).toEqual([undefined, 1_308, 40]);
    const m = conversationCard(messages).value;
    expect(m.match(/read \d+ ms late/g)).toEqual(['read 1308 ms late']);
  });

  it('lists messages stored in one millisecond as the engine applies them: by WhatsApp timestamp, then arrival (outside test QA77-F7)', () => {
    // "Ana" arrived first but was sent a second after "hi" (their webhooks crossed); "Silva" came
    // with "Ana"'s second; a far-future stamp counts as the storage time (SPEC 1.5), the second
    // "hi" was sent in, and it arrived first.
    const at = (id: string, timestamp: number, seq: number, body: string): StoredMessage => ({
      ...inbound,
      id,
      timestamp,
      seq,
      content: { type: 'text', body },
    });
    const msgs = [
      at('w.ana', 1_750_000_001, 1, 'Ana'),
      at('w.hi', 1_750_000_000, 2, 'hi'),
      at('w.silva', 1_750_000_001, 3, 'Silva'),
      at('w.future', 1_750_009_999, 0, 'from the future'),
    ];
    const ids = (page: { messages: readonly { id: string }[] }): string[] => page.messages.map((m) => m.id);
    expect(ids(conversationPage(msgs, [], 10))).toEqual(['w.future', 'w.hi', 'w.ana', 'w.silva']);
    // Pages follow the same order.
    const first = conversationPage(msgs, [], 2);
    expect(ids(first)).toEqual(['w.future', 'w.hi']);
    expect(ids(conversationPage(msgs, [], 2, first.next_cursor!))).toEqual(['w.ana', 'w.silva']);
  });

  it('shows the start of a long message, the rest folded, both escaped and nothing lost (outside test QA64-F3)', () => {
    // 1,499 letters, then an emoji (two UTF-16 units) as the 1,500th character: not split.
    const long = `${'a'.repeat(1_499)}\u{1F600}${EVIL}${'&'.repeat(100)}${'b'.repeat(2_000)}`;
    const text = (body: string): StoredMessage => ({ ...inbound, content: { type: 'text', body } });
    const { messages } = conversationPage([text(long)], [], 10);
    const m = conversationCard(messages).value;
    expectSafe(m.replaceAll('<wbr>', ''));
    const [shown, rest] = [...m.matchAll(/<div class="text[^"]*" dir="auto">(.*?)<\/div>/gs)].map(
      (x) => x[1]!,
    );
    expect(m).toContain('<div class="text clipped" dir="auto">');
    expect(shown!.replaceAll('<wbr>', '')).toBe(`${'a'.repeat(1_499)}\u{1F600}`);
    expect(m).toContain(
      '<details class="rest"><summary>Shortened: the first 1,500 of 3,635 characters. Show the other 2,135</summary>',
    );
    // Line breaks are offered in long runs, never inside an escaped character.
    expect(rest).toContain('<wbr>');
    expect(rest!.replaceAll('<wbr>', '')).toBe(escapeHtml(`${EVIL}${'&'.repeat(100)}${'b'.repeat(2_000)}`));
    // A message no longer than the bound is shown whole, as before.
    const whole = conversationCard(conversationPage([text('c'.repeat(1_500))], [], 10).messages).value;
    expect(whole).not.toContain('<details class="rest">');
  });

  it('cuts a long message between characters as the user sees them: an emoji sequence at the cut goes whole to the rest', () => {
    // A family (man, ZWJ, woman, ZWJ, girl: 5 code points) whose first code point is the 1,499th.
    const family = '\u{1F468}\u200d\u{1F469}\u200d\u{1F467}';
    const long = `${'a'.repeat(1_498)}${family}${'b'.repeat(600)}`;
    const text = (body: string): StoredMessage => ({ ...inbound, content: { type: 'text', body } });
    const m = conversationCard(conversationPage([text(long)], [], 10).messages).value;
    const [shown, rest] = [...m.matchAll(/<div class="text[^"]*" dir="auto">(.*?)<\/div>/gs)].map((x) =>
      x[1]!.replaceAll('<wbr>', ''),
    );
    expect(shown).toBe('a'.repeat(1_498));
    expect(rest).toBe(`${family}${'b'.repeat(600)}`);
    expect(m).toContain('Shortened: the first 1,498 of 2,103 characters. Show the other 605</summary>');
    // One letter under thousands of combining accents is one character longer than the bound:
    // cut inside it, between code points, so the start shows and the rest is no longer one giant
    // character to lay out (QA64-F3's case).
    const accents = `e${'\u0301'.repeat(3_000)}`;
    const cut = conversationCard(conversationPage([text(accents)], [], 10).messages).value;
    expect(cut).toContain('Shortened: the first 1,500 of 3,001 characters. Show the other 1,501</summary>');
  });

  it('leaves effects\u2019 results out of the conversation, their texts redacted or not', () => {
    const result = (content: StoredMessage['content'], id: string): StoredMessage => ({
      ...inbound,
      id,
      content,
    });
    const { messages } = conversationPage(
      [
        inbound,
        result(
          {
            type: 'effect_result',
            effectId: 'fx_1_a',
            name: 'lookup',
            ok: true,
            value: { n: 1 },
            attempts: 1,
          },
          'fx:fx_1_a',
        ),
        // After BATON_MESSAGE_RETENTION (an outside test saw it shown as the user's "unsupported").
        result(
          {
            type: 'unsupported',
            originalType: 'effect_result',
            reason: 'deleted after BATON_MESSAGE_RETENTION',
          },
          'fx:fx_2_b',
        ),
      ],
      [],
      10,
    );
    expect(messages.map((m) => m.id)).toEqual([inbound.id]);
  });

  it("says a text the message retention deleted was deleted, the user's and the bot's (outside test QA8-L1)", () => {
    const reason = 'deleted after BATON_MESSAGE_RETENTION';
    const { messages } = conversationPage(
      [{ ...inbound, content: { type: 'unsupported', originalType: 'text', reason } }],
      [{ ...outbound, body: { type: 'text', text: reason } }],
      10,
    );
    expect(messages.map((m) => [m.direction, m.type, m.text, m.payload])).toEqual([
      ['in', 'deleted', undefined, { originalType: 'text', reason }],
      ['out', 'deleted', undefined, { reason }],
    ]);
    const card = conversationCard(messages).value;
    expect(card).toContain(`(${reason})`);
    expect(card).not.toContain('cannot read');
  });

  it('the timeline and the outbound table, marking late records', () => {
    const t = timelineCard([record]).value;
    expectSafe(t);
    expect(t).toContain('class="kind-late marked"');
    const o = outboundCard([outbound]).value;
    expectSafe(o);
  });

  it("shows a reply's last error as what it is now: the failure, the retry's reason, or behind it", () => {
    const cell = (status: OutboundRecord['status']): string => {
      const row = outboundCard([{ ...outbound, status, lastError: '(#130429) Rate limit hit' }]).value;
      return row.split('<td>').at(-1)!.split('</td>')[0]!.trim();
    };
    expect(cell('failed')).toBe('(#130429) Rate limit hit');
    expect(cell('pending')).toContain('retrying after: (#130429) Rate limit hit');
    for (const s of ['sent', 'delivered', 'read'] as const) {
      expect(cell(s)).toMatch(/^<span class="muted prior-error"\s*>got through after: \(#130429\)/);
    }
    const sent = outboundCard([{ ...outbound, status: 'sent', lastError: EVIL }]).value;
    expectSafe(sent);
  });

  it('says when a list shows only a window of its rows, with links to the newer and older ones', () => {
    const href = (n: number): string => `/admin/session?wa_id=1&channel=2${n > 0 ? `&older=${n}` : ''}`;
    const newest = timelineCard([record], { skip: 0, rows: 300, older: true, href }).value;
    expect(newest).toContain('The newest 1.');
    expect(newest).toContain(
      '<a class="older" href="/admin/session?wa_id=1&amp;channel=2&amp;older=300">Older</a>',
    );
    expect(newest).not.toContain('class="newer"');
    const middle = timelineCard([record], { skip: 600, rows: 300, older: false, href }).value;
    expect(middle).toMatch(/1 older, before the newest\s+600\./);
    expect(middle).toContain(
      '<a class="newer" href="/admin/session?wa_id=1&amp;channel=2&amp;older=300">Newer</a>',
    );
    expect(middle).not.toContain('class="older"');
    expect(timelineCard([record]).value).not.toContain('The newest');
    expect(conversationCard([]).value).toContain('No messages.');
  });

  it('marks the user\u2019s messages that were not applied, and says why (outside test QA34-F6)', () => {
    const msg = (id: string, body: string): StoredMessage => ({
      ...inbound,
      id,
      content: { type: 'text', body },
    });
    const rec = (kind: TransitionRecord['kind'], ids: string[]): TransitionRecord => ({
      version: 2,
      from_step: 'ask_name',
      to_step: 'ask_name',
      kind,
      message_ids: ids,
      at: '2025-06-15T15:06:40.000Z',
      worker: 'w',
      fencing_token: 1,
    });
    const { messages } = conversationPage(
      [msg('wamid.a', 'Jane'), msg('wamid.l', 'old'), msg('wamid.h', 'hello?'), msg('wamid.w', 'new')],
      [],
      10,
    );
    const outcomes = messageOutcomes([
      rec('advance', ['wamid.a']),
      rec('late', ['wamid.l']),
      rec('held', ['wamid.h']),
    ]);
    const m = conversationCard(messages, undefined, outcomes).value;
    const line = (id: string) =>
      m.slice(m.indexOf(`data-id="${id}"`), m.indexOf('</li>', m.indexOf(`data-id="${id}"`)));
    expect(line('wamid.l')).toMatch(/class="badge not-applied kind-late"[^>]*>late, not applied</);
    expect(line('wamid.h')).toMatch(/title="the session waits for an agent[^"]*">held</);
    // Applied, or not processed yet: no mark.
    expect(line('wamid.a')).not.toContain('not-applied');
    expect(line('wamid.w')).not.toContain('not-applied');
  });

  it('writes durations for people', () => {
    expect(
      [850, 42_000, 192_000, 5 * 3_600_000 + 120_000, 2 * 86_400_000 + 4 * 3_600_000].map(duration),
    ).toEqual(['850ms', '42s', '3m 12s', '5h 2m', '2d 4h']);
  });
});

describe('the hand-back form', () => {
  it('offers a field per missing key as its schema types it, and no step that needs a list (outside test B15)', async () => {
    const { z } = await import('zod');
    const { defineFlow } = await import('../../src/flow/define.ts');
    const { actionsCard } = await import('../../src/admin/views.ts');
    const step = (needs: readonly string[]) => ({
      say: 'x',
      accepts: 'any' as const,
      needs: needs as never,
      to: ['start' as const],
      on: () => ({ kind: 'retry' as const }),
    });
    const flow = defineFlow({
      id: 'clinic',
      data: z.object({
        name: z.string().optional(),
        age: z.number().optional(),
        insured: z.boolean().optional(),
        service: z.enum(['dental', 'eyes']).optional(),
        slots: z.array(z.string()).optional(),
      }),
      start: 'start',
      steps: {
        start: { ...step([]), to: ['confirm', 'choose_slot'] as never },
        confirm: step(['name', 'age', 'insured', 'service']),
        choose_slot: step(['slots']),
      },
    });
    const card = actionsCard({ ...session, flow: 'clinic', step: 'start', data: {} }, flow).value;
    expect(card).toContain('<option value="confirm">confirm (needs name, age, insured, service)</option>');
    expect(card).not.toContain('choose_slot (needs');
    expect(card).not.toContain('name="data.slots"');
    const flat = card.replace(/\s+/g, ' ');
    expect(flat).toMatch(/<input type="text" name="data.name" data-kind="string"/);
    expect(flat).toMatch(/<input type="number" name="data.age" data-kind="number"/);
    expect(flat).toMatch(
      /<select name="data.insured" data-kind="boolean">.*?<option value="true">true<\/option>/,
    );
    expect(flat).toMatch(
      /<select name="data.service" data-kind="enum">.*?<option value="eyes">eyes<\/option>/,
    );
  });
});
