/**
 * How the dashboard's cards read what they show (console QA): media, reactions and the like
 * in words rather than JSON, right-to-left texts laid out as such, effects as effects.
 */
import { describe, expect, it } from 'vitest';
import type { ConversationItem } from '../../src/admin/conversation.ts';
import {
  actionsCard,
  conversationCard,
  describeMessage,
  effectOutcomes,
  failedNotice,
  failedRepliesCard,
  letterContent,
  outboundCard,
  timelineCard,
} from '../../src/admin/views.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { RESET_CANCELLED, RESET_CANCELLED_MAYBE_SENT, type StoredMessage } from '../../src/model/message.ts';
import { snapshot } from '../distributed/fixtures.ts';
import { MAY_HAVE_REACHED, type DeadLetter, type OutboundRecord } from '../../src/model/session.ts';

const at = '2026-12-01T06:00:00.000Z';

describe('conversation card', () => {
  it('F12: an image is "image: <caption>" with its link, not JSON', () => {
    const item: ConversationItem = {
      direction: 'out',
      id: 'c:u:1',
      at,
      type: 'image',
      payload: { link: 'https://example.com/map.png', caption: 'Dónde está ahora' },
      status: 'sent',
      kind: 'prompt',
    };
    const page = conversationCard([item]).value;
    expect(page).toContain('>image: Dónde está ahora</div>');
    expect(page).toContain('href="https://example.com/map.png"');
    expect(page).not.toContain('{&quot;link&quot;');
  });

  it("shows when the user sent a message Baton stored a minute or more later: a late one's own time (outside test QA87-F7)", () => {
    const stored = '2026-12-06T06:34:01Z';
    const late = conversationCard([
      {
        direction: 'in',
        id: 'wamid.L',
        at: stored,
        type: 'text',
        text: 'old',
        sent_at: '2026-12-06T05:34:01Z',
      },
    ]).value;
    expect(late).toContain('<span class="sent-at muted">(sent <time>2026-12-06T05:34:01Z</time>)</span>');
    const prompt = conversationCard([
      {
        direction: 'in',
        id: 'wamid.P',
        at: stored,
        type: 'text',
        text: 'now',
        sent_at: '2026-12-06T06:34:00Z',
      },
    ]).value;
    expect(prompt).not.toContain('sent-at');
  });

  it('F12: a link that is not http(s) is not made a link', () => {
    const d = describeMessage({ type: 'image', payload: { link: 'javascript:alert(1)', caption: 'x' } });
    expect(d).toEqual({ text: 'image: x' });
  });

  it('F12: reactions, locations, buttons and unreadable messages are said in words', () => {
    expect(describeMessage({ type: 'reaction', payload: { messageId: 'wamid.A', emoji: '👍' } }).text).toBe(
      'reacted 👍 to wamid.A',
    );
    expect(describeMessage({ type: 'reaction', payload: { messageId: 'wamid.A' } }).text).toBe(
      'removed a reaction to wamid.A',
    );
    expect(
      describeMessage({ type: 'location', text: 'Shop', payload: { latitude: 1.5, longitude: -2 } }).text,
    ).toBe('location: Shop (1.5, -2)');
    expect(
      describeMessage({
        type: 'buttons',
        text: 'Which one?',
        payload: {
          buttons: [
            { id: 'a', title: 'A' },
            { id: 'b', title: 'B' },
          ],
        },
      }).text,
    ).toBe('Which one?\n[A] [B]');
    expect(
      describeMessage({ type: 'image', payload: { mediaId: '1234', mimeType: 'image/jpeg' } }).text,
    ).toBe('image (media id 1234)');
    expect(describeMessage({ type: 'unsupported', payload: { originalType: 'poll' } }).text).toBe(
      'a message Baton cannot read (poll)',
    );
  });

  it('F15: message texts carry dir="auto"', () => {
    const rtl = 'مرحبا، أحتاج مساعدة 👋🏽 שלום';
    const page = conversationCard([{ direction: 'in', id: 'wamid.R', at, type: 'text', text: rtl }]).value;
    expect(page).toContain(`<div class="text" dir="auto">${rtl}</div>`);
  });
});

const reply: OutboundRecord = {
  channel: '106540352242922',
  user: '17770000003',
  id: '106540352242922:17770000003:1',
  seq: 1,
  flow: 'order_status',
  step: 'ask_order',
  version: 1,
  to: '17770000003',
  body: { type: 'text', text: 'Which order?' },
  callbackData: 'baton:order_status:ask_order:1',
  isPrompt: true,
  status: 'sent',
  attempts: 1,
  createdAt: Date.parse(at),
};
const lookup: OutboundRecord = {
  ...reply,
  id: '106540352242922:17770000003:2',
  seq: 2,
  step: 'looking_up',
  body: { type: 'text', text: '(effect lookup fx_1_abc: not a message)' },
  callbackData: 'baton:order_status:looking_up:1:effect',
  isPrompt: false,
  effect: { id: 'fx_1_abc', name: 'lookup', input: { order: 'ORD-22222' }, data: {} },
  attempts: 3,
};

describe('outbound card and timeline', () => {
  it('F8: an effect is listed as "effect <name>" with its key and how it ran, not as a sent text', () => {
    const page = outboundCard([reply, lookup]).value;
    const rows = page.split('<tr').slice(2);
    expect(rows[0]).toContain('data-kind="reply"');
    expect(rows[0]).toContain('>sent</span>');
    expect(rows[1]).toContain('data-kind="effect"');
    expect(rows[1]).toContain('effect <strong>lookup</strong>');
    expect(rows[1]).toContain('key <code>fx_1_abc</code>');
    expect(rows[1]).toContain('done: result stored');
    expect(rows[1]).not.toContain('>text<');
    expect(rows[1]).not.toContain('>sent<');
  });

  it("F8: an effect's result is shown with it, and whether the session applied it", () => {
    const result: StoredMessage = {
      channel: reply.channel,
      user: reply.user,
      id: 'fx:fx_1_abc',
      provider: 'cloud-api',
      timestamp: 1_760_000_000,
      content: {
        type: 'effect_result',
        effectId: 'fx_1_abc',
        name: 'lookup',
        ok: true,
        value: { found: { status: 'in transit' } },
        attempts: 3,
      },
      seq: 2,
      storedAt: Date.parse(at),
    };
    const outcomes = effectOutcomes(
      [result],
      [
        {
          version: 2,
          from_step: 'looking_up',
          to_step: 'looking_up',
          kind: 'stale_input',
          message_ids: ['fx:fx_1_abc'],
          at,
          worker: 'w',
          fencing_token: 3,
        },
      ],
    );
    const page = outboundCard([reply, lookup], undefined, outcomes).value;
    expect(page).toContain('result: not applied: the session had moved on');
    expect(page).toContain('&quot;status&quot;: &quot;in transit&quot;');
    expect(outboundCard([reply, lookup]).value).toContain('no result yet');
  });

  it("F8: the timeline says which message id is an effect's result", () => {
    const page = timelineCard([
      {
        version: 2,
        from_step: 'looking_up',
        to_step: 'looking_up',
        kind: 'stale_input',
        message_ids: ['fx:fx_1_abc'],
        at,
        worker: 'w',
        fencing_token: 3,
      },
    ]).value;
    expect(page).toContain('<code>fx:fx_1_abc</code> <span class="muted">(effect result)</span>');
  });
});

describe('dead letters and failed replies', () => {
  const letter = (kind: DeadLetter['kind'], payload: unknown): DeadLetter => ({
    id: `${kind}:1`,
    kind,
    channel: reply.channel,
    user: reply.user,
    ref: 'r',
    reason: 'why',
    payload,
    createdAt: Date.parse(at),
  });

  it("F7: a letter's content reads as the reply's text, the effect it runs, or the user's message", () => {
    expect(
      letterContent(letter('outbound', { ...reply, body: { type: 'text', text: 'agent text during 429' } })),
    ).toBe('agent text during 429');
    expect(letterContent(letter('outbound', lookup))).toBe('effect lookup (run, not sent)');
    const inbound: StoredMessage = {
      channel: reply.channel,
      user: reply.user,
      id: 'wamid.IN',
      provider: 'cloud-api',
      timestamp: 1_760_000_000,
      content: { type: 'text', body: 'ORD-22222 please' },
      seq: 1,
      storedAt: Date.parse(at),
    };
    expect(letterContent(letter('inbound', inbound))).toBe('ORD-22222 please');
    expect(letterContent(letter('unreadable', { text: { body: '<b>orphan</b>' } }))).toBe(
      '{"text":{"body":"<b>orphan</b>"}}',
    );
  });

  it('F11 (session page): failed replies are announced at the top, effects aside', () => {
    expect(failedNotice([reply, { ...lookup, status: 'failed' }]).value).toBe('');
    const notice = failedNotice([
      reply,
      { ...reply, seq: 3, status: 'failed', body: { type: 'text', text: 'Bye' } },
    ]).value;
    expect(notice).toContain('1 reply to this user failed');
    expect(notice).toContain('Bye');
  });

  it('a failed reply whose two attempts got no answer may have reached the user: said so, not "did not get"', () => {
    const unsure: OutboundRecord = {
      ...reply,
      seq: 4,
      status: 'failed',
      body: { type: 'text', text: 'Thanks, Ana' },
      lastError: `timed out; ${MAY_HAVE_REACHED}`,
    };
    const only = failedNotice([reply, unsure]).value;
    expect(only).toContain('1 reply to this user may have reached them');
    expect(only).toContain('Thanks, Ana');
    expect(only.replace(/\s+/g, ' ')).toContain('ask the user before replaying');
    expect(only).not.toContain('did not get');
    const both = failedNotice([
      { ...reply, seq: 3, status: 'failed', body: { type: 'text', text: 'Bye' }, lastError: '131026' },
      unsure,
    ]).value;
    expect(both.replace(/\s+/g, ' ')).toContain('1 reply to this user failed: they did not get it');
    expect(both).toContain('1 reply to this user may have reached them');
    expect(outboundCard([unsure]).value).toContain('may have reached</span');
    expect(failedRepliesCard([{ ...unsure, failedAt: Date.parse(at) }]).value).toContain(
      'class="badge status-uncertain"',
    );
  });

  it('a reply a reset cancelled after an attempt that got no answer may have reached the user too (QA136-F1)', () => {
    const cancelled: OutboundRecord = {
      ...reply,
      seq: 5,
      status: 'failed',
      body: { type: 'text', text: 'What is your name?' },
      lastError: RESET_CANCELLED_MAYBE_SENT,
    };
    const notice = failedNotice([cancelled]).value;
    expect(notice).toContain('1 reply to this user may have reached them');
    expect(notice).not.toContain('did not get');
    expect(outboundCard([cancelled]).value).toContain('may have reached</span');
    // One cancelled before any attempt: the user did not get it.
    expect(failedNotice([{ ...cancelled, lastError: RESET_CANCELLED }]).value).toContain('did not get');
  });
});

describe('actions card', () => {
  const key = { channel: '106540352242922', user: '17770000009' };
  const waiting = snapshot(key, 4, { needsAgent: true, step: 'choose_product' });

  it('offers the hand-back where this process runs the flow that wrote the session', () => {
    const card = actionsCard(waiting, orderFlow).value;
    expect(card).toContain('id="handback"');
    expect(card).not.toContain('id="handback-elsewhere"');
  });

  it('says where to hand back a session a newer version of its flow wrote, or of a flow not run here (outside test QA113-F3)', () => {
    const newer = actionsCard({ ...waiting, flowVersion: orderFlow.version + 1 }, orderFlow).value;
    expect(newer).not.toContain('id="handback"');
    expect(newer.replace(/\s+/g, ' ')).toContain(
      `Hand back is not offered here: version ${orderFlow.version + 1} of flow <code>order</code> wrote it, and this process runs version ${orderFlow.version}`,
    );
    const foreign = actionsCard({ ...waiting, flow: 'billing' }, undefined).value;
    expect(foreign).not.toContain('id="handback"');
    expect(foreign.replace(/\s+/g, ' ')).toContain('this process does not run flow <code>billing</code>');
  });

  it('offers no take, message or hand-back on a group’s session, and says why (outside test QA132-F2)', () => {
    const group = snapshot({ channel: 'wasender:s1', user: '120363040000000777@g.us' }, 1, {
      step: 'ask_name',
    });
    const card = actionsCard(group, orderFlow).value;
    for (const id of ['id="take"', 'id="reply"', 'id="handback"']) expect(card).not.toContain(id);
    expect(card).toContain('id="confirm-reset"');
    expect(card.replace(/\s+/g, ' ')).toContain(
      'This is a group: Baton keeps what is said there as a record and answers nothing',
    );
    expect(card).not.toContain('The bot is serving this session');
  });
});
