/** Every message type of Meta's send schema, rendered as WhatsApp shows it. */
import { describe, expect, it } from 'vitest';
import { renderMessage } from '../../src/simulate/render.ts';

const base = { messaging_product: 'whatsapp', recipient_type: 'individual', to: '15550100001' };

describe('renderMessage', () => {
  it('text, with line breaks', () => {
    expect(renderMessage({ ...base, type: 'text', text: { body: 'Hi\nthere', preview_url: true } })).toEqual({
      kind: 'text',
      lines: ['Hi', 'there'],
      picks: [],
    });
  });

  it('writes what a terminal would act on as escapes: a bot may quote its users (QA64-F4 for simulate)', () => {
    const body = 'Thanks, \u001b]0;pwned\u0007Ana\u202e!\tok\r\nsecond';
    expect(renderMessage({ ...base, type: 'text', text: { body } }).lines).toEqual([
      'Thanks, \\u{1b}]0;pwned\\u{7}Ana\\u{202e}!\tok\\u{d}',
      'second',
    ]);
  });

  it('shows a closed isolate as its text, as WhatsApp does; an unclosed one or one holding an override stays escaped (QA131-F6)', () => {
    const lines = (body: string): readonly string[] =>
      renderMessage({ ...base, type: 'text', text: { body } }).lines;
    expect(lines('Thanks, \u2068Jane evil\u2069. Which one?')).toEqual(['Thanks, Jane evil. Which one?']);
    expect(lines('\u2067ab\u2069 and \u2066cd\u2069')).toEqual(['ab and cd']);
    expect(lines('Thanks, \u2068Jane')).toEqual(['Thanks, \\u{2068}Jane']);
    expect(lines('\u2068a\u202eb\u2069')).toEqual(['\\u{2068}a\\u{202e}b\\u{2069}']);
  });

  it('reply buttons numbered, with text header and footer', () => {
    const r = renderMessage({
      ...base,
      type: 'interactive',
      interactive: {
        type: 'button',
        header: { type: 'text', text: 'Your order' },
        body: { text: 'Confirm?' },
        footer: { text: 'Reply within 24h' },
        action: {
          buttons: [
            { type: 'reply', reply: { id: 'confirm', title: 'Confirm' } },
            { type: 'reply', reply: { id: 'cancel', title: 'Cancel' } },
          ],
        },
      },
    });
    expect(r.lines).toEqual(['*Your order*', 'Confirm?', '_Reply within 24h_', '[1] Confirm   [2] Cancel']);
    expect(r.picks).toEqual([
      { n: 1, kind: 'button', id: 'confirm', title: 'Confirm' },
      { n: 2, kind: 'button', id: 'cancel', title: 'Cancel' },
    ]);
  });

  it('buttons with an image header show its link', () => {
    const r = renderMessage({
      ...base,
      type: 'interactive',
      interactive: {
        type: 'button',
        header: { type: 'image', image: { link: 'https://example.com/map.png' } },
        body: { text: 'Track' },
        action: { buttons: [{ type: 'reply', reply: { id: 'another', title: 'Another' } }] },
      },
    });
    expect(r.lines).toEqual(['[image] https://example.com/map.png', 'Track', '[1] Another']);
  });

  it('a list with several sections numbers rows across them', () => {
    const r = renderMessage({
      ...base,
      type: 'interactive',
      interactive: {
        type: 'list',
        body: { text: 'What next?' },
        action: {
          button: 'Options',
          sections: [
            {
              title: 'Order',
              rows: [
                { id: 'track', title: 'Track', description: 'Where is it' },
                { id: 'cancel_order', title: 'Cancel' },
              ],
            },
            { title: 'Other', rows: [{ id: 'human', title: 'Talk to a person' }] },
          ],
        },
      },
    });
    expect(r.kind).toBe('interactive:list');
    expect(r.lines).toEqual([
      'What next?',
      '≡ Options',
      '  Order',
      '    1. Track - Where is it',
      '    2. Cancel',
      '  Other',
      '    3. Talk to a person',
    ]);
    expect(r.picks.map((p) => [p.n, p.kind, p.id])).toEqual([
      [1, 'row', 'track'],
      [2, 'row', 'cancel_order'],
      [3, 'row', 'human'],
    ]);
  });

  it('cta_url shows the button text and the URL', () => {
    const r = renderMessage({
      ...base,
      type: 'interactive',
      interactive: {
        type: 'cta_url',
        body: { text: 'See the map' },
        action: { name: 'cta_url', parameters: { display_text: 'Open map', url: 'https://example.com/m' } },
      },
    });
    expect(r.lines).toEqual(['See the map', '[↗ Open map] https://example.com/m']);
  });

  it.each([
    [
      'image',
      { link: 'https://example.com/a.jpg', caption: 'Your parcel' },
      ['[image] https://example.com/a.jpg', 'Your parcel'],
    ],
    ['video', { id: '1234' }, ['[video] media id 1234']],
    ['audio', { link: 'https://example.com/a.ogg' }, ['[audio] https://example.com/a.ogg']],
    [
      'document',
      { link: 'https://example.com/i.pdf', filename: 'invoice.pdf', caption: 'Invoice' },
      ['[document invoice.pdf] https://example.com/i.pdf', 'Invoice'],
    ],
    ['sticker', { id: '99' }, ['[sticker] media id 99']],
  ])('%s as its link and caption', (type, media, lines) => {
    expect(renderMessage({ ...base, type, [type]: media })).toEqual({ kind: type, lines, picks: [] });
  });

  it('location, reaction and contacts', () => {
    expect(
      renderMessage({
        ...base,
        type: 'location',
        location: { latitude: '37.48', longitude: '-122.14', name: 'Meta HQ', address: '1 Hacker Way' },
      }).lines,
    ).toEqual(['📍 37.48,-122.14', 'Meta HQ', '1 Hacker Way']);
    expect(
      renderMessage({ ...base, type: 'reaction', reaction: { message_id: 'wamid.X', emoji: '👍' } }).lines,
    ).toEqual(['reacted 👍 to wamid.X']);
    expect(
      renderMessage({
        ...base,
        type: 'contacts',
        contacts: [
          {
            name: { formatted_name: 'Shop Support', first_name: 'Shop' },
            phones: [{ phone: '+1 555 0100' }],
          },
        ],
      }).lines,
    ).toEqual(['👤 Shop Support +1 555 0100']);
  });

  it('a template with its parameters; quick replies are pickable', () => {
    const r = renderMessage({
      ...base,
      type: 'template',
      template: {
        name: 'order_update',
        language: { code: 'en_US' },
        components: [
          { type: 'header', parameters: [{ type: 'image', image: { link: 'https://example.com/h.jpg' } }] },
          {
            type: 'body',
            parameters: [
              { type: 'text', text: 'Jane' },
              { type: 'currency', currency: { fallback_value: '$10.00', code: 'USD', amount_1000: 10000 } },
              { type: 'date_time', date_time: { fallback_value: 'May 1' } },
            ],
          },
          {
            type: 'button',
            sub_type: 'quick_reply',
            index: '0',
            parameters: [{ type: 'payload', payload: 'TRACK' }],
          },
          { type: 'button', sub_type: 'url', index: '1', parameters: [{ type: 'text', text: 'ORD-12345' }] },
        ],
      },
    });
    expect(r.lines).toEqual([
      '[template order_update (en_US)]',
      '  header: {{1}}=[image] https://example.com/h.jpg',
      '  body: {{1}}=Jane {{2}}=$10.00 {{3}}=May 1',
      '  button 0 (quick_reply): TRACK',
      '  button 1 (url): ORD-12345',
    ]);
    expect(r.picks).toEqual([{ n: 1, kind: 'button', id: 'TRACK', title: 'TRACK' }]);
  });

  it('flows, products and unknown types still show something', () => {
    expect(
      renderMessage({
        ...base,
        type: 'interactive',
        interactive: {
          type: 'flow',
          body: { text: 'Book' },
          action: { name: 'flow', parameters: { flow_cta: 'Book now', flow_id: '42' } },
        },
      }).lines,
    ).toEqual(['Book', '[▶ Book now] (WhatsApp Flow 42)']);
    expect(
      renderMessage({
        ...base,
        type: 'interactive',
        interactive: { type: 'product', action: { catalog_id: 'C1', product_retailer_id: 'sku_1' } },
      }).lines,
    ).toEqual(['[product sku_1 from catalog C1]']);
    expect(renderMessage({ ...base, type: 'hologram' }).lines[0]).toMatch(/^\[hologram message\]/);
  });
});
