import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BatonError } from '../../src/errors.ts';
import type { OutboundBody } from '../../src/model/session.ts';
import { parseWasenderWebhook, parseWasenderWebhookReport } from '../../src/providers/wasender/parse.ts';
import { WasenderSender, renderAsText } from '../../src/providers/wasender/send.ts';
import { verifyWasenderSignature } from '../../src/providers/wasender/verify.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { outbound, sendError } from './outbound.ts';

const key = (over: Record<string, unknown> = {}) => ({
  id: '3EB0C767D26A1D7C5E2A',
  fromMe: false,
  remoteJid: '15557654321@s.whatsapp.net',
  senderPn: '15557654321@s.whatsapp.net',
  cleanedSenderPn: '15557654321',
  ...over,
});

const textMessage = {
  key: key(),
  messageBody: 'Hello there',
  pushName: 'Ana',
  messageTimestamp: 1750000000,
  message: { conversation: 'Hello there' },
};

describe('parseWasenderWebhook: messages', () => {
  it('reads messages.received with a single message object', () => {
    const batch = parseWasenderWebhook({
      event: 'messages.received',
      sessionId: 'sess-1',
      timestamp: 1750000001,
      data: { messages: textMessage },
    });
    expect(batch).toEqual({
      messages: [
        {
          provider: 'wasender',
          channel: 'wasender:sess-1',
          user: '15557654321',
          waId: '15557654321',
          id: 'wasender:sess-1:15557654321:3EB0C767D26A1D7C5E2A',
          timestamp: 1750000000,
          profileName: 'Ana',
          content: { type: 'text', body: 'Hello there' },
        },
      ],
      statuses: [],
    });
  });

  it('reads messages.upsert arrays and skips messages sent by the session itself', () => {
    const batch = parseWasenderWebhook({
      event: 'messages.upsert',
      data: {
        messages: [
          { ...textMessage, key: key({ id: 'A' }) },
          { ...textMessage, key: key({ id: 'B', fromMe: true }) },
          {
            ...textMessage,
            key: key({ id: 'C' }),
            messageBody: undefined,
            message: { extendedTextMessage: { text: 'ext' } },
          },
        ],
      },
    });
    expect(batch.messages.map((m) => [m.id, m.channel, m.content])).toEqual([
      ['wasender:15557654321:A', 'wasender', { type: 'text', body: 'Hello there' }],
      ['wasender:15557654321:C', 'wasender', { type: 'text', body: 'ext' }],
    ]);
  });

  it.each(['messages-personal.received', 'message.personal.received'])('reads %s', (event) => {
    expect(parseWasenderWebhook({ event, data: { messages: textMessage } }).messages).toHaveLength(1);
  });

  it('reads the older form with key and message directly under data', () => {
    const batch = parseWasenderWebhook({
      event: 'messages.received',
      timestamp: 1750000009,
      data: { ...textMessage, messageTimestamp: undefined },
    });
    expect(batch.messages[0]).toMatchObject({
      id: 'wasender:15557654321:3EB0C767D26A1D7C5E2A',
      timestamp: 1750000009,
    });
  });

  it('scopes a key id to its chat: the same key id from two users, or a Cloud API wamid, names two messages', () => {
    const ids = parseWasenderWebhook({
      event: 'messages.upsert',
      sessionId: 'sess-1',
      data: {
        messages: [
          { ...textMessage, key: key({ id: 'SAME' }) },
          {
            ...textMessage,
            key: key({
              id: 'SAME',
              remoteJid: '15550001111@s.whatsapp.net',
              senderPn: '15550001111@s.whatsapp.net',
              cleanedSenderPn: '15550001111',
            }),
          },
          { ...textMessage, key: key({ id: 'wamid.HBgLMTU1NTA=' }) },
        ],
      },
    }).messages.map((m) => m.id);
    expect(ids).toEqual([
      'wasender:sess-1:15557654321:SAME',
      'wasender:sess-1:15550001111:SAME',
      'wasender:sess-1:15557654321:wamid.HBgLMTU1NTA=',
    ]);
  });

  it('takes the participant\u2019s number when there is no sender pn, and never a @lid', () => {
    const group = parseWasenderWebhook({
      event: 'messages.upsert',
      data: {
        messages: [
          {
            ...textMessage,
            key: {
              id: 'G',
              remoteJid: '1203@s.whatsapp.net',
              participant: '9@lid',
              cleanedParticipantPn: '15550009999',
            },
          },
          { ...textMessage, key: { id: 'L', remoteJid: '12345@lid' } },
        ],
      },
    });
    expect(group.messages.map((m) => m.user)).toEqual(['15550009999']);
    expect(
      parseWasenderWebhookReport({
        event: 'messages.upsert',
        data: { messages: [{ ...textMessage, key: { id: 'L', remoteJid: '12345@lid' } }] },
      }).skipped,
    ).toMatchObject([{ kind: 'message', id: 'L', reason: 'message names no sender phone number' }]);
  });

  it('reads media, locations, reactions, contacts and protocol messages', () => {
    const m = (message: Record<string, unknown>, id: string) => ({
      key: key({ id }),
      messageTimestamp: '1750000000',
      message,
    });
    const batch = parseWasenderWebhook({
      event: 'messages.upsert',
      data: {
        messages: [
          m(
            { imageMessage: { url: 'https://mmg.whatsapp.net/x', mimetype: 'image/jpeg', caption: 'look' } },
            'img',
          ),
          m({ documentMessage: { mimetype: 'application/pdf', fileName: 'a.pdf' } }, 'doc'),
          m({ locationMessage: { degreesLatitude: 1.5, degreesLongitude: -2.5, name: 'Here' } }, 'loc'),
          m({ reactionMessage: { key: { id: 'orig' }, text: '👍' } }, 'react'),
          m({ reactionMessage: { key: { id: 'orig' }, text: '' } }, 'unreact'),
          m({ contactsArrayMessage: { contacts: [{}, {}] } }, 'cards'),
          m({ protocolMessage: { type: 0 } }, 'revoke'),
          m({ protocolMessage: { type: 'MESSAGE_EDIT' } }, 'edit'),
          m({ pollCreationMessage: { name: 'poll' } }, 'poll'),
          m({ extendedTextMessage: { text: 'quoted', contextInfo: { stanzaId: 'BAE5PREV' } } }, 'reply'),
        ],
      },
    });
    // By key id: Baton's message id is the key id scoped to its chat.
    const byId = new Map(batch.messages.map((msg) => [msg.id.slice('wasender:15557654321:'.length), msg]));
    expect(byId.get('img')?.content).toEqual({
      type: 'media',
      mediaType: 'image',
      mediaId: 'img',
      mimeType: 'image/jpeg',
      caption: 'look',
      url: 'https://mmg.whatsapp.net/x',
    });
    expect(byId.get('doc')?.content).toMatchObject({ mediaType: 'document', filename: 'a.pdf' });
    expect(byId.get('loc')?.content).toEqual({
      type: 'location',
      latitude: 1.5,
      longitude: -2.5,
      name: 'Here',
    });
    expect(byId.get('react')?.content).toEqual({ type: 'reaction', messageId: 'orig', emoji: '👍' });
    expect(byId.get('unreact')?.content).toEqual({ type: 'reaction', messageId: 'orig' });
    expect(byId.get('cards')?.content).toEqual({ type: 'contacts', count: 2 });
    expect(byId.get('revoke')?.content).toEqual({ type: 'revoke' });
    expect(byId.get('edit')?.content).toEqual({ type: 'edit' });
    expect(byId.get('poll')?.content).toMatchObject({
      type: 'unsupported',
      originalType: 'pollCreationMessage',
    });
    expect(byId.get('reply')).toMatchObject({
      contextId: 'BAE5PREV',
      content: { type: 'text', body: 'quoted' },
    });
    expect(byId.get('img')?.timestamp).toBe(1750000000);
  });

  it('skips and reports a message without key.id', () => {
    const report = parseWasenderWebhookReport({
      event: 'messages.received',
      data: { messages: [{ message: {} }, textMessage] },
    });
    expect(report.batch.messages).toHaveLength(1);
    expect(report.skipped).toMatchObject([{ kind: 'message', reason: 'message has no key.id' }]);
  });

  it('names the channel by a numeric sessionId too (outside test QA8-L3)', () => {
    const channelOf = (sessionId: unknown) =>
      parseWasenderWebhook({ event: 'messages.received', sessionId, data: { messages: [textMessage] } })
        .messages[0]!.channel;
    expect(channelOf(123)).toBe('wasender:123');
    expect(channelOf('123')).toBe('wasender:123');
    expect(channelOf(1.5)).toBe('wasender');
  });

  it('reports items that are no message object, and a message event without data, to be kept as unreadable', () => {
    // They were answered 200 and kept nowhere (outside test QA8-L2); the Cloud API's are dead letters.
    const reasons = (data: unknown) =>
      parseWasenderWebhookReport({
        event: 'messages.received',
        ...(data === undefined ? {} : { data }),
      }).skipped.map((s) => [s.reason, s.raw]);
    expect(reasons({ messages: 'x' })).toEqual([['message is not an object', 'x']]);
    expect(reasons({ messages: ['x', 7, textMessage] })).toEqual([
      ['message is not an object', 'x'],
      ['message is not an object', 7],
    ]);
    expect(reasons('x')).toEqual([['message is not an object', 'x']]);
    expect(reasons(undefined)).toEqual([['message is not an object', null]]);
    // An event that carries no messages at all is no message.
    expect(reasons({})).toEqual([]);
  });

  it("stores a sender's message without key.id as unsupported, under an id its redelivery repeats", () => {
    const { key, ...rest } = textMessage as { key: Record<string, unknown> };
    const noId = { ...rest, key: { ...key, id: undefined } };
    const body = { event: 'messages.received', data: { messages: [noId] } };
    const first = parseWasenderWebhookReport(body);
    expect(first.skipped).toEqual([]);
    expect(first.batch.messages[0]).toMatchObject({
      id: expect.stringMatching(/^wasender:15557654321:baton\.noid\.[0-9a-f]{40}$/),
      content: { type: 'unsupported', originalType: 'text', reason: 'message has no key.id' },
    });
    expect(parseWasenderWebhookReport(body).batch.messages[0]!.id).toBe(first.batch.messages[0]!.id);
  });

  it('reads a message nested thousands of levels deep without throwing (a whole webhook was answered 500: QA54-F1)', () => {
    const deep = (n: number): unknown => {
      let v: unknown = 'bottom';
      for (let i = 0; i < n; i += 1) v = [v];
      return v;
    };
    const { key, ...rest } = textMessage as { key: Record<string, unknown> };
    const noId = { ...rest, key: { ...key, id: undefined }, extra: deep(20_000) };
    const protocol = {
      key: key,
      messageTimestamp: 1750000000,
      message: { protocolMessage: { type: deep(20_000) } },
    };
    const report = parseWasenderWebhookReport({
      event: 'messages.received',
      data: { messages: [noId, protocol] },
    });
    expect(report.skipped).toEqual([]);
    expect(report.batch.messages.map((m) => m.content)).toEqual([
      { type: 'unsupported', originalType: 'text', reason: 'message has no key.id' },
      { type: 'unsupported', originalType: 'protocolMessage', reason: 'protocol message type (an array)' },
    ]);
  });

  it('keeps a group or broadcast chat message in a session of that chat, as no input to a flow', () => {
    for (const [jid, type] of [
      ['120363040000000000@g.us', 'group'],
      ['status@broadcast', 'broadcast'],
      ['120363040000000001@newsletter', 'newsletter'],
      ['120363040000000002@G.US ', 'group'],
    ] as const) {
      const batch = parseWasenderWebhook({
        event: 'messages.received',
        sessionId: 'sess-1',
        data: {
          messages: {
            ...textMessage,
            key: {
              ...key(),
              remoteJid: jid,
              participant: '15551234567@s.whatsapp.net',
              cleanedParticipantPn: '15551234567',
            },
          },
        },
      });
      expect(batch.messages[0], jid).toMatchObject({
        user: jid.trim().toLowerCase(),
        content: { type: 'unsupported', originalType: type },
      });
      // Not the sender's private session (outside test QA35-F1), and no phone number to answer.
      expect(batch.messages[0]!.waId).toBeUndefined();
      expect(batch.messages[0]!.profileName).toBeUndefined();
    }
  });

  it('times a message without timestamps by the clock', () => {
    const batch = parseWasenderWebhook(
      { event: 'messages.received', data: { messages: { ...textMessage, messageTimestamp: undefined } } },
      { now: () => 1_750_000_500_999 },
    );
    expect(batch.messages[0]?.timestamp).toBe(1_750_000_500);
  });
});

describe('parseWasenderWebhook: statuses and other events', () => {
  const update = (status: number, id = '34874643876') => ({
    event: 'messages.update',
    sessionId: 'sess-1',
    timestamp: 1747775431467,
    data: { update: { status }, key: { remoteJid: '15557654321@s.whatsapp.net', id, fromMe: true } },
  });

  it.each([
    [0, 'failed'],
    [2, 'sent'],
    [3, 'delivered'],
    [4, 'read'],
    [5, 'played'],
  ] as const)('maps status %i to %s (timestamp in ms becomes seconds)', (code, status) => {
    expect(parseWasenderWebhook(update(code)).statuses).toEqual([
      {
        provider: 'wasender',
        channel: 'wasender:sess-1',
        messageId: '34874643876',
        status,
        timestamp: 1747775431,
        recipient: '15557654321',
      },
    ]);
  });

  it('matches an update by WASender\u2019s msgId when it names one (the id its send answer gave)', () => {
    const withMsgId = update(0);
    (withMsgId.data as Record<string, unknown>).msgId = 100000;
    expect(parseWasenderWebhook(withMsgId).statuses[0]).toMatchObject({
      messageId: '100000',
      status: 'failed',
    });
  });

  it('ignores PENDING and reports unknown codes', () => {
    expect(parseWasenderWebhookReport(update(1))).toEqual({
      batch: { messages: [], statuses: [] },
      skipped: [],
    });
    expect(parseWasenderWebhookReport(update(9)).skipped).toEqual([
      { kind: 'status', id: '34874643876', reason: 'status code 9 is not a delivery status' },
    ]);
  });

  it('reads an array of updates', () => {
    const body = { event: 'messages.update', data: [update(3, 'a').data, update(4, 'b').data] };
    expect(parseWasenderWebhook(body).statuses.map((s) => [s.messageId, s.status])).toEqual([
      ['a', 'delivered'],
      ['b', 'read'],
    ]);
  });

  it.each(['session.status', 'qrcode.updated', 'messages.delete', 'chats.upsert', 'webhook.test'])(
    'ignores %s',
    (event) => {
      expect(parseWasenderWebhook({ event, data: { messages: textMessage } })).toEqual({
        messages: [],
        statuses: [],
      });
    },
  );

  it.each([
    ['null', null],
    ['an array', [{ event: 'messages.received' }]],
    ['no event', { data: {} }],
    ['a numeric event', { event: 3, data: {} }],
  ])('refuses %s with BATON_ERR_BAD_ENVELOPE', (_what, body) => {
    let thrown: unknown;
    try {
      parseWasenderWebhook(body);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BatonError);
    expect(thrown).toMatchObject({ code: 'BATON_ERR_BAD_ENVELOPE', statusCode: 400 });
  });

  it('accepts a message event whose data holds nothing readable', () => {
    expect(parseWasenderWebhook({ event: 'messages.received', data: 'x' })).toEqual({
      messages: [],
      statuses: [],
    });
    expect(parseWasenderWebhook({ event: 'messages.received' })).toEqual({ messages: [], statuses: [] });
  });
});

describe('verifyWasenderSignature', () => {
  it('is true only for the exact secret', () => {
    expect(verifyWasenderSignature('s3cret-value', 's3cret-value')).toBe(true);
    expect(verifyWasenderSignature('s3cret-valuf', 's3cret-value')).toBe(false);
    expect(verifyWasenderSignature('s3cret', 's3cret-value')).toBe(false);
    expect(verifyWasenderSignature('s3cret-value ', 's3cret-value')).toBe(false);
    expect(verifyWasenderSignature('', 's3cret-value')).toBe(false);
    expect(verifyWasenderSignature(undefined, 's3cret-value')).toBe(false);
  });

  it('is false with an empty secret', () => {
    expect(verifyWasenderSignature('', '')).toBe(false);
  });

  it('compares non-ASCII secrets byte for byte', () => {
    expect(verifyWasenderSignature('clé-ß-😀', 'clé-ß-😀')).toBe(true);
    expect(verifyWasenderSignature('cle-ss-😀', 'clé-ß-😀')).toBe(false);
  });
});

describe('renderAsText', () => {
  it('numbers buttons after the text', () => {
    const body: OutboundBody = {
      type: 'buttons',
      text: 'Which product?',
      buttons: [
        { id: 'sku_550e', title: 'Trail Shoe' },
        { id: 'sku_551a', title: 'Rain Jacket' },
      ],
    };
    expect(renderAsText(body)).toBe('Which product?\n\n1. Trail Shoe\n2. Rain Jacket');
  });

  it('numbers list rows across sections, with section headings', () => {
    const body: OutboundBody = {
      type: 'list',
      text: 'Pick',
      button: 'Open',
      sections: [
        { title: 'Shoes', rows: [{ id: 'a', title: 'Trail', description: 'grippy' }] },
        { title: '', rows: [{ id: 'b', title: 'Road' }] },
      ],
    };
    expect(renderAsText(body)).toBe('Pick\n\n*Shoes*\n1. Trail - grippy\n\n2. Road');
  });
});

describe('WasenderSender against the fake', () => {
  let fake: FakeGraph;
  let sender: WasenderSender;

  beforeAll(async () => {
    fake = await startFakeGraph();
    sender = new WasenderSender({ baseUrl: fake.url, apiKey: 'wasender-key' });
  });
  afterEach(() => fake.reset());
  afterAll(() => fake.close());

  it('POSTs {to, text} with the bearer key and returns msgId as a string', async () => {
    const result = await sender.send(outbound({ type: 'text', text: 'Hi' }));
    expect(result.providerMessageId).toMatch(/^\d+$/);
    const call = await fake.waitFor((c) => c.route === 'wasender', 2_000);
    expect(call.path).toBe('/api/send-message');
    expect(call.headers.authorization).toBe('Bearer wasender-key');
    expect(call.body).toEqual({ to: '+15550001111', text: 'Hi' });
    expect(call.providerMessageId).toBe(result.providerMessageId);
  });

  it('sends buttons as numbered text', async () => {
    await sender.send(
      outbound({
        type: 'buttons',
        text: 'Confirm?',
        buttons: [
          { id: 'confirm', title: 'Confirm' },
          { id: 'cancel', title: 'Cancel' },
        ],
      }),
    );
    expect(fake.sent[0]?.body.text).toBe('Confirm?\n\n1. Confirm\n2. Cancel');
  });

  it('429 is retryable, with Retry-After or the body retry_after', async () => {
    fake.failNext(1, { status: 429, retryAfter: 60 });
    await expect(sendError(sender.send(outbound({ type: 'text', text: 'x' })))).resolves.toMatchObject({
      retryable: true,
      httpStatus: 429,
      retryAfterMs: 60_000,
    });
    fake.failNext(1, {
      status: 429,
      body: { message: 'You have reached the limit: 1 message every 1 minute.', retry_after: 5 },
    });
    const err = await sendError(sender.send(outbound({ type: 'text', text: 'x' })));
    expect(err).toMatchObject({ retryable: true, retryAfterMs: 5_000 });
    expect(err.message).toContain('1 message every 1 minute');
  });

  it('5xx and network failures are retryable; 422 and success:false are permanent', async () => {
    fake.failNext(1, { status: 500 });
    await expect(sendError(sender.send(outbound({ type: 'text', text: 'x' })))).resolves.toMatchObject({
      retryable: true,
      httpStatus: 500,
    });
    fake.failNext(1, { status: 0, network: 'reset' });
    await expect(sendError(sender.send(outbound({ type: 'text', text: 'x' })))).resolves.toMatchObject({
      retryable: true,
      httpStatus: 0,
    });
    fake.failNext(1, {
      status: 422,
      body: { success: false, message: 'The to field is invalid.', errors: { to: ['invalid'] } },
    });
    const invalid = await sendError(sender.send(outbound({ type: 'text', text: 'x' })));
    expect(invalid).toMatchObject({ retryable: false, httpStatus: 422, code: 'BATON_ERR_SEND_PERMANENT' });
    expect(invalid.message).toContain('The to field is invalid.');
    fake.failNext(1, { status: 200, body: { success: false, message: 'Session not connected' } });
    await expect(sendError(sender.send(outbound({ type: 'text', text: 'x' })))).resolves.toMatchObject({
      retryable: false,
      httpStatus: 200,
    });
  });
});
