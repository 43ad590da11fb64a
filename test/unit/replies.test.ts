import { describe, expect, it } from 'vitest';
import {
  audio,
  buttons,
  document,
  bidiSafeJson,
  image,
  isolated,
  list,
  location,
  replyProblems,
  sticker,
  template,
  text,
  video,
} from '../../src/flow/replies.ts';
import type { MediaRef, OutboundBody } from '../../src/model/session.ts';

const x = (n: number): string => 'x'.repeat(n);
const rows = (n: number, prefix = 'r') =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i + 1}`, title: `Row ${i + 1}` }));

describe('builders', () => {
  it('build the existing shapes exactly, adding nothing when no option is given', () => {
    expect(text('Hi')).toEqual({ type: 'text', text: 'Hi' });
    expect(Object.keys(text('Hi'))).toEqual(['type', 'text']);
    expect(buttons('Pick', [{ id: 'a', title: 'A' }])).toEqual({
      type: 'buttons',
      text: 'Pick',
      buttons: [{ id: 'a', title: 'A' }],
    });
    expect(list('Pick', 'Open', [{ title: 'S', rows: [{ id: 'a', title: 'A' }] }])).toEqual({
      type: 'list',
      text: 'Pick',
      button: 'Open',
      sections: [{ title: 'S', rows: [{ id: 'a', title: 'A' }] }],
    });
  });

  it('take options for preview, captions, file names, headers and footers', () => {
    expect(text('https://x.test', { previewUrl: true })).toEqual({
      type: 'text',
      text: 'https://x.test',
      previewUrl: true,
    });
    expect(image('https://x.test/a.jpg', { caption: 'A' })).toEqual({
      type: 'image',
      link: 'https://x.test/a.jpg',
      caption: 'A',
    });
    expect(video({ id: '123' })).toEqual({ type: 'video', id: '123' });
    expect(document('https://x.test/i.pdf', { filename: 'i.pdf', caption: 'Invoice' })).toEqual({
      type: 'document',
      link: 'https://x.test/i.pdf',
      caption: 'Invoice',
      filename: 'i.pdf',
    });
    expect(audio({ id: '9' })).toEqual({ type: 'audio', id: '9' });
    expect(sticker('https://x.test/s.webp')).toEqual({ type: 'sticker', link: 'https://x.test/s.webp' });
    expect(location(52.5, 13.4, { name: 'Shop' })).toEqual({
      type: 'location',
      latitude: 52.5,
      longitude: 13.4,
      name: 'Shop',
    });
    expect(
      buttons('Pick', [{ id: 'a', title: 'A' }], {
        header: { type: 'image', link: 'https://x.test/a.jpg' },
        footer: 'F',
      }),
    ).toMatchObject({ header: { type: 'image', link: 'https://x.test/a.jpg' }, footer: 'F' });
    expect(buttons('Pick', [{ id: 'a', title: 'A' }], { header: 'Head' }).header).toEqual({
      type: 'text',
      text: 'Head',
    });
  });

  it('list() takes bare rows as one untitled section', () => {
    expect(list('Pick', 'Open', rows(2)).sections).toEqual([{ rows: rows(2) }]);
  });

  it('template() turns positional, named, header and quick-reply values into components', () => {
    expect(
      template('order_shipped', 'en_US', {
        header: { type: 'image', link: 'https://x.test/a.jpg' },
        body: ['Ana', '#123'],
        quickReplies: ['track', 'help'],
        text: 'Hi Ana, #123 shipped',
      }),
    ).toEqual({
      type: 'template',
      name: 'order_shipped',
      language: 'en_US',
      components: [
        { type: 'header', parameters: [{ type: 'image', link: 'https://x.test/a.jpg' }] },
        {
          type: 'body',
          parameters: [
            { type: 'text', text: 'Ana' },
            { type: 'text', text: '#123' },
          ],
        },
        {
          type: 'button',
          subType: 'quick_reply',
          index: 0,
          parameters: [{ type: 'payload', payload: 'track' }],
        },
        {
          type: 'button',
          subType: 'quick_reply',
          index: 1,
          parameters: [{ type: 'payload', payload: 'help' }],
        },
      ],
      text: 'Hi Ana, #123 shipped',
    });
    expect(template('hello_world', 'en_US')).toEqual({
      type: 'template',
      name: 'hello_world',
      language: 'en_US',
    });
    expect(template('t', 'en', { body: { order_id: '#1' } }).components).toEqual([
      { type: 'body', parameters: [{ type: 'text', text: '#1', name: 'order_id' }] },
    ]);
  });
});

describe('replyProblems: bodies within the limits', () => {
  const valid: Array<[string, OutboundBody]> = [
    ['text at 4,096 characters', text(x(4096))],
    ['text counted in characters, not UTF-16 units', text('😀'.repeat(4096))],
    [
      'three buttons at every limit',
      buttons(
        x(1024),
        [
          { id: x(256), title: x(20) },
          { id: 'b', title: 'B' },
          { id: 'c', title: 'C' },
        ],
        { header: x(60), footer: x(60) },
      ),
    ],
    [
      'buttons with a document header',
      buttons('Pick', [{ id: 'a', title: 'A' }], {
        header: { type: 'document', id: '42', filename: 'a.pdf' },
      }),
    ],
    [
      'ten rows in three sections at every limit',
      list(
        x(1024),
        x(20),
        [
          { title: x(24), rows: [{ id: x(200), title: x(24), description: x(72) }, ...rows(3, 'a')] },
          { title: 'B', rows: rows(3, 'b') },
          { title: 'C', rows: rows(3, 'c') },
        ],
        { header: x(60), footer: x(60) },
      ),
    ],
    ['a single untitled section', list('Pick', 'Open', rows(10))],
    ['image with a 1,024-character caption', image('https://x.test/a.jpg', { caption: x(1024) })],
    ['video by id', video({ id: '1' })],
    ['document', document('http://x.test/a.pdf', { filename: 'a.pdf' })],
    ['audio', audio('https://x.test/a.ogg')],
    ['sticker', sticker({ id: '7' })],
    ['location at the poles and the date line', location(-90, 180, { name: 'N', address: 'A' })],
    ['location at the other edges', location(90, -180)],
    [
      'template with every kind of component',
      template('order_update_2', 'pt_BR', {
        header: { type: 'text', text: 'Ana' },
        body: ['1', '2'],
        quickReplies: ['a', 'b'],
        components: [
          { type: 'button', subType: 'url', index: 2, parameters: [{ type: 'text', text: 'abc' }] },
        ],
        text: 'Olá Ana',
      }),
    ],
    ['template without components', template('hello_world', 'en')],
  ];

  it.each(valid)('%s: none', (_, body) => {
    expect(replyProblems(body)).toEqual([]);
  });
});

describe('replyProblems: each limit, one over', () => {
  const cases: Array<[string, OutboundBody, string[]]> = [
    ['text over 4,096', text(x(4097)), ['text is 4097 characters; WhatsApp allows 4096']],
    ['empty text', text('  '), ['text is empty']],
    ['four buttons', buttons('Pick', rows(4)), ['buttons message has 4 buttons; WhatsApp allows 3']],
    ['no buttons', buttons('Pick', []), ['buttons message has no buttons; WhatsApp needs 1 to 3']],
    [
      'a long button title',
      buttons('Pick', [
        { id: 'a', title: 'A' },
        { id: 'b', title: x(23) },
      ]),
      ['button 2 title is 23 characters; WhatsApp allows 20'],
    ],
    [
      'a long button id and an empty title',
      buttons('Pick', [{ id: x(257), title: '' }]),
      ['button 1 id is 257 characters; WhatsApp allows 256', 'button 1 title is empty'],
    ],
    [
      'repeated button ids and titles',
      buttons('Pick', [
        { id: 'a', title: 'Same' },
        { id: 'a', title: 'Same' },
      ]),
      [
        `button 2 id "a" repeats button 1's; each must be unique in the message`,
        `button 2 title "Same" repeats button 1's; each must be unique in the message`,
      ],
    ],
    [
      'interactive body over 1,024',
      buttons(x(1025), [{ id: 'a', title: 'A' }]),
      ['body text is 1025 characters; WhatsApp allows 1024'],
    ],
    [
      'header and footer over 60',
      buttons('Pick', [{ id: 'a', title: 'A' }], { header: x(61), footer: x(61) }),
      ['header text is 61 characters; WhatsApp allows 60', 'footer is 61 characters; WhatsApp allows 60'],
    ],
    [
      'a media header without a source',
      buttons('Pick', [{ id: 'a', title: 'A' }], {
        header: { type: 'video' } as unknown as { type: 'video'; id: string },
      }),
      ['header video has neither a link nor a media id'],
    ],
    [
      'eleven rows in all',
      list('Pick', 'Open', [
        { title: 'A', rows: rows(6, 'a') },
        { title: 'B', rows: rows(5, 'b') },
      ]),
      ['list has 11 rows in all; WhatsApp allows 10'],
    ],
    [
      'row limits',
      list('Pick', 'Open', [{ id: x(201), title: x(25), description: x(73) }]),
      [
        'row 1 id is 201 characters; WhatsApp allows 200',
        'row 1 title is 25 characters; WhatsApp allows 24',
        'row 1 description is 73 characters; WhatsApp allows 72',
      ],
    ],
    [
      'row ids repeated across sections',
      list('Pick', 'Open', [
        { title: 'A', rows: [{ id: 'same', title: 'One' }] },
        { title: 'B', rows: [{ id: 'same', title: 'Two' }] },
      ]),
      [`row 2 id "same" repeats row 1's; each must be unique in the message`],
    ],
    [
      'section titles: too long, and missing among several',
      list('Pick', 'Open', [{ title: x(25), rows: rows(1, 'a') }, { rows: rows(1, 'b') }]),
      [
        'section 1 title is 25 characters; WhatsApp allows 24',
        'section 2 title is missing; WhatsApp needs a title on every section when there are several',
      ],
    ],
    [
      'list button label over 20, and an empty section',
      list('Pick', x(21), [
        { title: 'A', rows: rows(1) },
        { title: 'B', rows: [] },
      ]),
      ['list button label is 21 characters; WhatsApp allows 20', 'section 2 has no rows'],
    ],
    [
      'a list with no sections',
      list('Pick', 'Open', []),
      ['list has no sections; WhatsApp needs at least one row'],
    ],
    [
      'a media header on a list',
      { ...list('Pick', 'Open', rows(1)), header: { type: 'image', link: 'https://x.test/a.jpg' } },
      ['list header is an image; WhatsApp allows only a text header on lists'],
    ],
    [
      'caption over 1,024',
      image('https://x.test/a.jpg', { caption: x(1025) }),
      ['image caption is 1025 characters; WhatsApp allows 1024'],
    ],
    [
      'media that is not a URL',
      document('file:///etc/passwd'),
      ['document link "file:///etc/passwd" is not an http(s) URL'],
    ],
    [
      'a link with a space (outside test QA73-F1: URL reads it, Meta refuses it)',
      image('https://x.test/a b.jpg'),
      [
        'image link on https://x.test holds a space or one of "<>\\^`{|} unencoded, which Meta refuses; percent-encode it (mediaLink(url) does)',
      ],
    ],
    [
      'a link with a tab or a quote',
      document('https://x.test/a\tb.pdf?q="x"'),
      [
        'document link on https://x.test holds a space or one of "<>\\^`{|} unencoded, which Meta refuses; percent-encode it (mediaLink(url) does)',
      ],
    ],
    [
      'media with both a link and an id',
      { type: 'image', link: 'https://x.test/a.jpg', id: '1' } as unknown as OutboundBody,
      ['image has both a link and a media id; give one'],
    ],
    [
      'both given to the builder (untyped code): kept, and said, not one dropped',
      image({ link: 'https://x.test/a.jpg', id: '1' } as unknown as MediaRef),
      ['image has both a link and a media id; give one'],
    ],
    [
      'a named parameter in a positional body given to the builder (untyped code)',
      template('ok_name', 'en_US', { body: ['x', { name: 'y', text: 'z' }] as unknown as string[] }),
      ['template component 1 (body) mixes named and positional parameters'],
    ],
    ['an empty media id', video({ id: '' }), ['video media id is empty']],
    [
      'a caption on audio',
      { type: 'audio', id: '1', caption: 'no' } as unknown as OutboundBody,
      ['audio cannot carry a caption'],
    ],
    [
      'location out of range',
      location(90.5, -181),
      [
        'latitude 90.5 is out of range; it must be between -90 and 90',
        'longitude -181 is out of range; it must be between -180 and 180',
      ],
    ],
    [
      'location not a number',
      location(Number.NaN, 0, { name: '' }),
      ['latitude is not a number', 'location name is empty'],
    ],
    [
      'template name and language',
      template('Order-Update', 'english'),
      [
        'template name "Order-Update" may hold only lowercase letters, digits and underscores',
        'template language "english" is not a language code such as en or en_US',
      ],
    ],
    [
      'template parameters',
      template('t', 'en', {
        body: ['', 'ok'],
        components: [
          { type: 'button', subType: 'quick_reply', index: 10, parameters: [{ type: 'text', text: 'x' }] },
          { type: 'body', parameters: [{ type: 'text', text: 'again' }] },
        ],
      }),
      [
        'template component 1 (body) parameter 1 is empty',
        'template component 2 (button) index 10 is out of range; WhatsApp allows 0 to 9',
        'template component 2 (button) parameter 1 is text; a quick_reply button takes payload',
        'template has more than one body component',
      ],
    ],
    [
      'template mixing named and positional parameters',
      {
        type: 'template',
        name: 't',
        language: 'en',
        components: [
          {
            type: 'body',
            parameters: [
              { type: 'text', text: 'a', name: 'first' },
              { type: 'text', text: 'b' },
            ],
          },
        ],
      },
      ['template component 1 (body) mixes named and positional parameters'],
    ],
    [
      'an unknown type',
      { type: 'poll', text: 'x' } as unknown as OutboundBody,
      ['reply type "poll" is not one Baton can send'],
    ],
  ];

  it.each(cases)('%s', (_, body, problems) => {
    expect(replyProblems(body)).toEqual(problems);
  });
});

describe('replyProblems: a list with one empty section', () => {
  it('says the list has no rows, once', () => {
    expect(replyProblems({ type: 'list', text: 'Pick', button: 'Open', sections: [{ rows: [] }] })).toEqual([
      'list has no rows; WhatsApp needs at least one',
    ]);
  });
});

describe('replyProblems: what is no reply at all (outside test QA103-F3)', () => {
  it('names what it is, not a reply of type "undefined"', () => {
    expect(replyProblems(42 as unknown as OutboundBody)).toEqual([
      'a reply is a text or a reply body (text(), buttons(), list(), image()...), not a number (42)',
    ]);
    expect(replyProblems(null as unknown as OutboundBody)[0]).toMatch(/not null \(null\)$/);
    expect(replyProblems(true as unknown as OutboundBody)[0]).toMatch(/not a boolean \(true\)$/);
  });
});

describe('builder types', () => {
  it('refuse what WhatsApp cannot take, at compile time', () => {
    // @ts-expect-error media by link or id, never both
    image({ link: 'https://x.test/a.jpg', id: '1' });
    // @ts-expect-error audio takes no caption
    audio('https://x.test/a.ogg', { caption: 'no' });
    const imageHeader = { header: { type: 'image', link: 'https://x.test/a.jpg' } } as const;
    // @ts-expect-error a list header is text only
    list('Pick', 'Open', [{ id: 'a', title: 'A' }], imageHeader);
    // @ts-expect-error coordinates are numbers
    location('52.5', '13.4');
    const bodies: OutboundBody[] = [text('a'), image('https://x.test/a.jpg'), template('t', 'en')];
    expect(bodies.map((b) => b.type)).toEqual(['text', 'image', 'template']);
  });
});

describe('isolated and bidiSafeJson (outside test QA50-F2)', () => {
  it('leaves text without directional controls as it is', () => {
    expect(isolated('Jane Smith')).toBe('Jane Smith');
    expect(isolated('سارة')).toBe('سارة');
  });

  it('wraps text holding directional controls in a first-strong isolate, without the controls', () => {
    expect(isolated('Ann \u202Etxt.exe')).toBe('\u2068Ann txt.exe\u2069');
    // A pop-isolate of the user's own would end the isolate early and free an override.
    expect(isolated('\u2069\u202Eevil')).toBe('\u2068evil\u2069');
    // An opener of the user's own would take the closing pop-isolate (outside test QA51-F1).
    expect(isolated('Ann \u202E\u2067txt.exe')).toBe('\u2068Ann txt.exe\u2069');
    expect(isolated('a\u2066\u2067\u2068\u202A\u202B\u202C\u202Db')).toBe('\u2068ab\u2069');
  });

  it('writes directional controls in JSON as escapes: the same value', () => {
    const json = JSON.stringify({ name: 'Ann \u202Etxt.exe', x: '\u2066a\u2069' });
    const safe = bidiSafeJson(json);
    expect(safe).toBe('{"name":"Ann \\u202etxt.exe","x":"\\u2066a\\u2069"}');
    expect(JSON.parse(safe)).toEqual(JSON.parse(json));
  });
});
