import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  audio,
  buttons,
  document,
  image,
  list,
  location,
  sticker,
  template,
  text,
  video,
} from '../../src/flow/replies.ts';
import type { OutboundBody } from '../../src/model/session.ts';
import { WasenderSender, buildWasenderMessage, renderAsText } from '../../src/providers/wasender/send.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { outbound, sendError } from './outbound.ts';

const JPG = 'https://example.com/a.jpg';

describe('WasenderSender sends every kind over HTTP', () => {
  let fake: FakeGraph;
  let sender: WasenderSender;

  beforeAll(async () => {
    fake = await startFakeGraph();
    sender = new WasenderSender({ baseUrl: fake.url, apiKey: 'wasender-key' });
  });
  afterEach(() => fake.reset());
  afterAll(() => fake.close());

  // A worker of a split deployment started without the key posted to WASender's public address
  // with none (outside test QA89-F5): it sends nothing, and says what is missing, retryable.
  it('sends nothing without an API key, retryable, naming WASENDER_API_KEY', async () => {
    const keyless = new WasenderSender({ baseUrl: fake.url });
    const err = await sendError(keyless.send(outbound(text('hi'), { provider: 'wasender' })));
    expect(err.retryable).toBe(true);
    expect(err.unknownOutcome).toBe(false);
    expect(err.message).toContain('WASENDER_API_KEY');
    expect(fake.sent).toHaveLength(0);
  });

  const cases: Array<[string, OutboundBody, Record<string, unknown>]> = [
    [
      'text (the preview flag has no WASender field)',
      text('See https://x.test', { previewUrl: true }),
      { text: 'See https://x.test' },
    ],
    ['image with caption', image(JPG, { caption: 'Trail Shoe' }), { imageUrl: JPG, text: 'Trail Shoe' }],
    ['image without caption', image(JPG), { imageUrl: JPG }],
    [
      'video',
      video('https://x.test/v.mp4', { caption: 'How to' }),
      { videoUrl: 'https://x.test/v.mp4', text: 'How to' },
    ],
    [
      'document with file name',
      document('https://x.test/i.pdf', { filename: 'invoice.pdf', caption: 'Invoice' }),
      { documentUrl: 'https://x.test/i.pdf', fileName: 'invoice.pdf', text: 'Invoice' },
    ],
    ['audio', audio('https://x.test/a.ogg'), { audioUrl: 'https://x.test/a.ogg' }],
    ['sticker', sticker('https://x.test/s.webp'), { stickerUrl: 'https://x.test/s.webp' }],
    [
      'location',
      location(52.52, 13.405, { name: 'Baton Store', address: 'Alexanderplatz 1' }),
      { location: { latitude: 52.52, longitude: 13.405, name: 'Baton Store', address: 'Alexanderplatz 1' } },
    ],
    ['location without name', location(-33.9, 18.4), { location: { latitude: -33.9, longitude: 18.4 } }],
    [
      'buttons with a text header and footer, as numbered text',
      buttons(
        'Confirm?',
        [
          { id: 'confirm', title: 'Confirm' },
          { id: 'cancel', title: 'Cancel' },
        ],
        { header: 'Your order', footer: 'Free returns' },
      ),
      { text: '*Your order*\n\nConfirm?\n\n1. Confirm\n2. Cancel\n\n_Free returns_' },
    ],
    [
      'buttons with an image header: the image, with the numbered text as caption',
      buttons('Like it?', [{ id: 'y', title: 'Yes' }], { header: { type: 'image', link: JPG } }),
      { imageUrl: JPG, text: 'Like it?\n\n1. Yes' },
    ],
    [
      'buttons with a document header',
      buttons('Read it', [{ id: 'ok', title: 'OK' }], {
        header: { type: 'document', link: 'https://x.test/t.pdf', filename: 'terms.pdf' },
      }),
      { documentUrl: 'https://x.test/t.pdf', fileName: 'terms.pdf', text: 'Read it\n\n1. OK' },
    ],
    [
      'a list of two sections, rows numbered across them',
      list(
        'Pick a size',
        'Sizes',
        [
          { title: 'EU', rows: [{ id: 'eu42', title: '42', description: 'Fits 26.5 cm' }] },
          { title: 'US', rows: [{ id: 'us9', title: '9' }] },
        ],
        { footer: 'Half sizes on request' },
      ),
      { text: 'Pick a size\n\n*EU*\n1. 42 - Fits 26.5 cm\n\n*US*\n2. 9\n\n_Half sizes on request_' },
    ],
    [
      'a template, as its rendered text',
      template('order_shipped', 'en_US', { body: ['Ana'], text: 'Hi Ana, your order shipped.' }),
      { text: 'Hi Ana, your order shipped.' },
    ],
  ];

  it.each(cases)('%s', async (_, body, expected) => {
    const result = await sender.send(outbound(body));
    expect(result.providerMessageId).toMatch(/^\d+$/);
    const call = await fake.waitFor((c) => c.route === 'wasender', 2_000);
    expect(call.path).toBe('/api/send-message');
    expect(call.headers.authorization).toBe('Bearer wasender-key');
    expect(call.body).toEqual({ to: '+15550001111', ...expected });
  });

  const unsendable: Array<[string, OutboundBody, RegExp]> = [
    ['a template without text', template('order_shipped', 'en_US'), /template "order_shipped" has no text/],
    [
      'an image by media id',
      image({ id: '1234' }),
      /image is given by media id 1234: WASender sends media only by link/,
    ],
    [
      'a video header by media id',
      buttons('Watch', [{ id: 'a', title: 'A' }], { header: { type: 'video', id: '99' } }),
      /video header is given by media id 99/,
    ],
  ];

  it.each(unsendable)('refuses %s with a permanent SendError, before any request', async (_, body, why) => {
    const err = await sendError(sender.send(outbound(body)));
    expect(err.retryable).toBe(false);
    expect(err.code).toBe('BATON_ERR_SEND_PERMANENT');
    expect(err.message).toMatch(why);
    expect(fake.sent).toHaveLength(0);
  });
});

describe('renderAsText and buildWasenderMessage', () => {
  it('keep the text of existing bodies as it was', () => {
    const b: OutboundBody = { type: 'buttons', text: 'Which?', buttons: [{ id: 'a', title: 'A' }] };
    expect(renderAsText(b)).toBe('Which?\n\n1. A');
    expect(buildWasenderMessage(outbound(b))).toEqual({ to: '+15550001111', text: 'Which?\n\n1. A' });
    // A group's JID as it is.
    expect(buildWasenderMessage({ ...outbound(b), to: '120363040000000777@g.us' }).to).toBe(
      '120363040000000777@g.us',
    );
  });

  it('render media as their caption and a location as its name and address', () => {
    expect(renderAsText(image(JPG, { caption: 'C' }))).toBe('C');
    expect(renderAsText(audio(JPG))).toBe('');
    expect(renderAsText(location(1, 2, { name: 'N', address: 'A' }))).toBe('N\nA');
  });
});
