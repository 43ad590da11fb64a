/**
 * How the dashboard's cards read what they show (console QA): media, reactions and the like
 * in words rather than JSON, right-to-left texts laid out as such, effects as effects.
 */
import { describe, expect, it } from 'vitest';
import type { ConversationItem } from '../../src/admin/conversation.ts';
import { conversationCard, describeMessage } from '../../src/admin/views.ts';

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
