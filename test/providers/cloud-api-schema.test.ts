import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  audio,
  buttons,
  document,
  image,
  list,
  location,
  replyProblems,
  sticker,
  template,
  text,
  video,
} from '../../src/flow/replies.ts';
import type { OutboundBody, OutboundBodyType } from '../../src/model/session.ts';
import { CloudApiSender, buildCloudApiMessage } from '../../src/providers/cloud-api/send.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { metaSendSchema } from '../support/meta-send-schema.ts';
import { outbound } from './outbound.ts';

const schema = metaSendSchema();
const x = (n: number): string => 'x'.repeat(n);
const rows = (n: number, p = 'r') =>
  Array.from({ length: n }, (_, i) => ({ id: `${p}${i}`, title: `Row ${i}` }));
const JPG = 'https://example.com/a.jpg';

/** At least one body of every kind; the `Record` makes a new kind without an entry a type error. */
const EVERY_KIND: Record<OutboundBodyType, OutboundBody[]> = {
  text: [text('What is your name?'), text('See https://example.com', { previewUrl: true })],
  buttons: [
    buttons('Which product?', [
      { id: 'sku_550e', title: 'Trail Shoe' },
      { id: 'sku_551a', title: 'Rain Jacket' },
      { id: 'sku_777b', title: 'Day Pack' },
    ]),
    buttons('Confirm?', [{ id: 'confirm', title: 'Confirm' }], {
      header: 'Your order',
      footer: 'Free returns',
    }),
    buttons('Like it?', [{ id: 'y', title: 'Yes' }], { header: { type: 'image', link: JPG } }),
    buttons('Watch', [{ id: 'y', title: 'Yes' }], { header: { type: 'video', id: '1234' } }),
    buttons('Read', [{ id: 'y', title: 'Yes' }], {
      header: { type: 'document', link: 'https://example.com/t.pdf', filename: 'terms.pdf' },
    }),
  ],
  list: [
    list('Pick a size', 'Sizes', [
      { title: 'EU', rows: [{ id: 'eu42', title: '42', description: 'Fits 26.5 cm' }] },
    ]),
    list('Pick', 'Open', rows(10)),
    list(
      'Pick',
      'Open',
      [
        { title: 'EU', rows: rows(5, 'eu') },
        { title: 'US', rows: rows(5, 'us') },
      ],
      { header: 'Sizes', footer: 'Half sizes on request' },
    ),
  ],
  image: [image(JPG), image({ id: '1234' }, { caption: 'Trail Shoe' })],
  video: [video('https://example.com/a.mp4', { caption: 'How to' }), video({ id: '1' })],
  document: [document('https://example.com/i.pdf', { filename: 'invoice.pdf', caption: 'Your invoice' })],
  audio: [audio('https://example.com/a.ogg'), audio({ id: '5' })],
  sticker: [sticker('https://example.com/s.webp'), sticker({ id: '6' })],
  location: [
    location(52.520008, 13.404954, { name: 'Baton Store', address: 'Alexanderplatz 1' }),
    location(-33.9, 18.4),
  ],
  template: [
    template('hello_world', 'en_US'),
    template('order_shipped', 'en_US', {
      header: { type: 'document', link: 'https://example.com/i.pdf', filename: 'i.pdf' },
      body: ['Ana', '#123'],
      quickReplies: ['track', 'help'],
      components: [{ type: 'button', subType: 'url', index: 2, parameters: [{ type: 'text', text: 'abc' }] }],
      text: 'Hi Ana, #123 shipped',
    }),
    template('order_named', 'pt_BR', { header: { type: 'text', text: 'Ana' }, body: { order_id: '#1' } }),
    template('promo', 'en', { header: { type: 'video', id: '9' } }),
    template('promo_img', 'en', { header: { type: 'image', link: JPG } }),
  ],
};

const ALL = Object.values(EVERY_KIND).flat();

describe("buildCloudApiMessage against Meta's send schema", () => {
  it('knows every type the schema maps', () => {
    expect(schema.types).toEqual(
      expect.arrayContaining(['text', 'image', 'interactive', 'template', 'location']),
    );
  });

  it.each(ALL.map((b) => [`${b.type} ${JSON.stringify(b).slice(0, 80)}`, b] as const))('%s', (_, body) => {
    expect(replyProblems(body)).toEqual([]);
    const wire = buildCloudApiMessage(outbound(body));
    expect(wire.messaging_product).toBe('whatsapp');
    expect(wire.to).toBe('+15550001111');
    expect(wire.biz_opaque_callback_data).toBe('baton:order:choose_product:3');
    expect(schema.errors(wire)).toEqual([]);
  });

  it('validates a body addressed by BSUID (liberty 3)', () => {
    const wire = buildCloudApiMessage(outbound(image(JPG), { to: 'US.13491208655302741918' }));
    expect(wire).not.toHaveProperty('to');
    expect(schema.errors(wire)).toEqual([]);
  });

  it('bodies at every limit pass both replyProblems and the schema', () => {
    const atLimits: OutboundBody[] = [
      buttons(
        x(1024),
        [
          { id: x(256), title: x(20) },
          { id: 'b', title: 'B' },
          { id: 'c', title: 'C' },
        ],
        { header: x(60), footer: x(60) },
      ),
      list('Pick', x(20), [
        { title: x(24), rows: [{ id: x(200), title: x(24), description: x(72) }, ...rows(9)] },
      ]),
    ];
    for (const body of atLimits) {
      expect(replyProblems(body)).toEqual([]);
      expect(schema.errors(buildCloudApiMessage(outbound(body)))).toEqual([]);
    }
  });

  it('a body one over a limit fails the schema as well as replyProblems', () => {
    const over: OutboundBody[] = [
      buttons('Pick', [{ id: 'a', title: x(21) }]),
      buttons('Pick', rows(4)),
      buttons(x(1025), [{ id: 'a', title: 'A' }]),
      buttons('Pick', [{ id: x(257), title: 'A' }]),
      buttons('Pick', [{ id: 'a', title: 'A' }], { header: x(61) }),
      buttons('Pick', [{ id: 'a', title: 'A' }], { footer: x(61) }),
      list('Pick', x(21), rows(1)),
      list('Pick', 'Open', rows(11)),
      list('Pick', 'Open', [{ title: x(25), rows: rows(1) }]),
      list('Pick', 'Open', [{ id: x(201), title: 'A' }]),
      list('Pick', 'Open', [{ id: 'a', title: x(25) }]),
      list('Pick', 'Open', [{ id: 'a', title: 'A', description: x(73) }]),
    ];
    for (const body of over) {
      expect(replyProblems(body), JSON.stringify(body).slice(0, 120)).not.toEqual([]);
      expect(
        schema.errors(buildCloudApiMessage(outbound(body))),
        JSON.stringify(body).slice(0, 120),
      ).not.toEqual([]);
    }
  });

  it('rejects a body that drifts from the schema', () => {
    const wire = buildCloudApiMessage(outbound(text('Hi')));
    expect(schema.errors({ ...wire, text: { body: 'Hi', preview: true } })).not.toEqual([]);
    expect(schema.errors({ ...wire, extra: 1 })).not.toEqual([]);
    expect(schema.errors({ ...wire, messaging_product: undefined })).not.toEqual([]);
    const loc = buildCloudApiMessage(outbound(location(1, 2)));
    expect(schema.errors({ ...loc, location: { latitude: 1, longitude: 2 } })).not.toEqual([]);
    const tpl = buildCloudApiMessage(outbound(template('t', 'en')));
    expect(schema.errors({ ...tpl, template: { name: 't', language: { code: 'en' } } })).not.toEqual([]);
  });

  it('needs liberty 2: the published button-index pattern rejects index 0, its own example', () => {
    const wire = buildCloudApiMessage(outbound(template('t', 'en', { quickReplies: ['a'] })));
    expect(
      metaSendSchema({ published: true })
        .errors(wire)
        .map((e) => e.keyword),
    ).toContain('pattern');
    expect(schema.errors(wire)).toEqual([]);
  });

  it('keeps the wire bytes of text, buttons and list as they were', () => {
    expect(JSON.stringify(buildCloudApiMessage(outbound(text('Hi'))))).toBe(
      '{"messaging_product":"whatsapp","recipient_type":"individual","to":"+15550001111","type":"text",' +
        '"text":{"body":"Hi"},"biz_opaque_callback_data":"baton:order:choose_product:3"}',
    );
    expect(JSON.stringify(buildCloudApiMessage(outbound(buttons('Pick', [{ id: 'a', title: 'A' }]))))).toBe(
      '{"messaging_product":"whatsapp","recipient_type":"individual","to":"+15550001111","type":"interactive",' +
        '"interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}},' +
        '"biz_opaque_callback_data":"baton:order:choose_product:3"}',
    );
    const l: OutboundBody = {
      type: 'list',
      text: 'Pick',
      button: 'Open',
      sections: [{ title: 'S', rows: [{ id: 'a', title: 'A', description: 'D' }] }],
    };
    expect(JSON.stringify(buildCloudApiMessage(outbound(l)))).toBe(
      '{"messaging_product":"whatsapp","recipient_type":"individual","to":"+15550001111","type":"interactive",' +
        '"interactive":{"type":"list","body":{"text":"Pick"},"action":{"button":"Open","sections":[{"title":"S",' +
        '"rows":[{"id":"a","title":"A","description":"D"}]}]}},"biz_opaque_callback_data":"baton:order:choose_product:3"}',
    );
  });

  it('builds the Graph objects Meta documents for the new kinds', () => {
    const wire = (b: OutboundBody) => {
      const { messaging_product, recipient_type, to, biz_opaque_callback_data, ...rest } =
        buildCloudApiMessage(outbound(b));
      void [messaging_product, recipient_type, to, biz_opaque_callback_data];
      return rest;
    };
    expect(wire(text('u', { previewUrl: true }))).toEqual({
      type: 'text',
      text: { body: 'u', preview_url: true },
    });
    expect(wire(document({ id: '7' }, { caption: 'c', filename: 'f.pdf' }))).toEqual({
      type: 'document',
      document: { id: '7', caption: 'c', filename: 'f.pdf' },
    });
    expect(wire(location(1.5, -2, { name: 'N', address: 'A' }))).toEqual({
      type: 'location',
      location: { latitude: '1.5', longitude: '-2', name: 'N', address: 'A' },
    });
    expect(
      wire(buttons('B', [{ id: 'a', title: 'A' }], { header: { type: 'image', link: JPG }, footer: 'F' })),
    ).toEqual({
      type: 'interactive',
      interactive: {
        type: 'button',
        header: { type: 'image', image: { link: JPG } },
        body: { text: 'B' },
        footer: { text: 'F' },
        action: { buttons: [{ type: 'reply', reply: { id: 'a', title: 'A' } }] },
      },
    });
    expect(wire(list('B', 'Open', rows(1)))).toMatchObject({
      interactive: { action: { sections: [{ rows: [{ id: 'r0', title: 'Row 0' }] }] } },
    });
    expect(wire(template('t', 'en_US', { body: { name: 'Ana' }, quickReplies: ['p'] }))).toEqual({
      type: 'template',
      template: {
        name: 't',
        language: { policy: 'deterministic', code: 'en_US' },
        components: [
          { type: 'body', parameters: [{ type: 'text', parameter_name: 'name', text: 'Ana' }] },
          {
            type: 'button',
            sub_type: 'quick_reply',
            index: '0',
            parameters: [{ type: 'payload', payload: 'p' }],
          },
        ],
      },
    });
  });
});

describe('CloudApiSender sends every kind over HTTP', () => {
  let fake: FakeGraph;
  let sender: CloudApiSender;
  beforeAll(async () => {
    fake = await startFakeGraph();
    sender = new CloudApiSender({ baseUrl: `${fake.url}/v21.0` });
  });
  afterAll(() => fake.close());

  it('posts each body, and what arrives matches the schema', async () => {
    for (const body of ALL) await sender.send(outbound(body));
    expect(fake.sent).toHaveLength(ALL.length);
    for (const call of fake.sent) expect(schema.errors(call.body)).toEqual([]);
    expect(fake.sent.map((c) => c.body.type)).toEqual(ALL.map((b) => buildCloudApiMessage(outbound(b)).type));
  });
});
