import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatonError } from '../../src/errors.ts';
import type { InboundMessage, MessageContent } from '../../src/model/message.ts';
import { parseCloudApiWebhook, parseCloudApiWebhookReport } from '../../src/providers/cloud-api/parse.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/cloud-api');

/** Every fixture case as `[file, case, body]`. */
function loadFixtures(): Array<[string, string, unknown]> {
  const out: Array<[string, string, unknown]> = [];
  for (const file of readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const cases = JSON.parse(readFileSync(path.join(FIXTURES, file), 'utf8')) as Record<string, unknown>;
    for (const [name, body] of Object.entries(cases)) out.push([file.replace(/\.json$/, ''), name, body]);
  }
  return out;
}

const ALL = loadFixtures();

function fixture(file: string, name: string): unknown {
  const found = ALL.find(([f, n]) => f === file && n === name);
  if (found === undefined) throw new Error(`no fixture ${file}/${name}`);
  return found[2];
}

function onlyMessage(file: string, name: string): InboundMessage {
  const batch = parseCloudApiWebhook(fixture(file, name));
  expect(batch.messages).toHaveLength(1);
  return batch.messages[0]!;
}

function content(file: string, name: string): MessageContent {
  return onlyMessage(file, name).content;
}

interface RawBody {
  entry: Array<{ changes: Array<{ field: string; value: { messages?: unknown[]; statuses?: unknown[] } }> }>;
}

/** Counts of messages/statuses under `messages` changes, read naively from the raw JSON. */
function rawCounts(body: unknown): { messages: number; statuses: number } {
  let messages = 0;
  let statuses = 0;
  for (const entry of (body as RawBody).entry) {
    for (const change of entry.changes) {
      if (change.field !== 'messages') continue;
      messages += (change.value.messages ?? []).length;
      statuses += (change.value.statuses ?? []).length;
    }
  }
  return { messages, statuses };
}

describe('parseCloudApiWebhook on every shared fixture', () => {
  it('finds the fixtures', () => {
    expect(ALL.length).toBeGreaterThan(50);
  });

  it.each(ALL)('%s/%s parses without throwing and keeps every item', (_file, _name, body) => {
    const report = parseCloudApiWebhookReport(body);
    expect(report.skipped).toEqual([]);
    const counts = rawCounts(body);
    expect(report.batch.messages).toHaveLength(counts.messages);
    expect(report.batch.statuses).toHaveLength(counts.statuses);
    for (const m of report.batch.messages) {
      expect(m.provider).toBe('cloud-api');
      expect(typeof m.channel).toBe('string');
      expect(m.user.length).toBeGreaterThan(0);
      expect(Number.isInteger(m.timestamp)).toBe(true);
    }
  });

  const expectedTypes: Array<[string, string, MessageContent['type']]> = [
    ['message', 'text', 'text'],
    ['message', 'image', 'media'],
    ['message', 'media_with_url', 'media'],
    ['message', 'video', 'media'],
    ['message', 'document', 'media'],
    ['message', 'audio', 'media'],
    ['message', 'voice', 'media'],
    ['message', 'static_sticker', 'media'],
    ['message', 'animated_sticker', 'media'],
    ['message', 'reaction', 'reaction'],
    ['message', 'unreaction_empty', 'reaction'],
    ['message', 'unreaction_no_emoji', 'reaction'],
    ['message', 'current_location', 'location'],
    ['message', 'chosen_location', 'location'],
    ['message', 'contacts', 'contacts'],
    ['message', 'order', 'order'],
    ['message', 'unsupported', 'unsupported'],
    ['message', 'unsupported_with_type', 'unsupported'],
    ['message', 'reply', 'text'],
    ['message', 'forwarded', 'text'],
    ['message', 'forwarded_many_times', 'text'],
    ['message', 'interactive_message_with_err', 'unsupported'],
    ['message', 'referral', 'text'],
    ['callback_button', 'button', 'choice'],
    ['callback_button', 'quick_reply', 'choice'],
    ['callback_button', 'quick_reply_without_context', 'choice'],
    ['callback_selection', 'callback', 'choice'],
    ['callback_selection', 'description', 'choice'],
    ['flow_completion', 'completion', 'flow_reply'],
    ['flow_completion', 'without_flow_token', 'flow_reply'],
    ['edited_message', 'image', 'edit'],
    ['deleted_message', 'revoke', 'revoke'],
    ['system', 'phone_number_change', 'system'],
    ['system', 'identity_change', 'system'],
  ];

  it.each(expectedTypes)('%s/%s is %s content', (file, name, type) => {
    expect(content(file, name).type).toBe(type);
  });

  it('covers every fixture that carries a message', () => {
    const withMessages = ALL.filter(([, , body]) => rawCounts(body).messages > 0).map(
      ([f, n]) => `${f}/${n}`,
    );
    expect(withMessages.sort()).toEqual(expectedTypes.map(([f, n]) => `${f}/${n}`).sort());
  });

  it.each(ALL.filter(([, , body]) => rawCounts(body).messages + rawCounts(body).statuses === 0))(
    '%s/%s (not a messages change) produces nothing',
    (_file, _name, body) => {
      expect(parseCloudApiWebhook(body)).toEqual({ messages: [], statuses: [] });
    },
  );
});

describe('parseCloudApiWebhook: message fields', () => {
  it('reads the session key, ids, time and profile of a text', () => {
    expect(onlyMessage('message', 'text')).toEqual({
      provider: 'cloud-api',
      channel: '1122334455667',
      user: '972987654321',
      waId: '972987654321',
      userId: 'US.13491208655302741918',
      id: 'wamid.xyzxyz',
      timestamp: 1697043223,
      profileName: 'Test Name',
      content: { type: 'text', body: 'Body Text' },
    });
  });

  it('reads a sender sent as a JSON number as its digits (and the rest of the message as usual)', () => {
    const body = JSON.parse(JSON.stringify(fixture('message', 'text'))) as {
      entry: Array<{ changes: Array<{ value: { messages: Array<Record<string, unknown>> } }> }>;
    };
    body.entry[0]!.changes[0]!.value.messages[0]!.from = 972987654321;
    expect(parseCloudApiWebhook(body).messages[0]).toMatchObject({
      user: '972987654321',
      content: { type: 'text', body: 'Body Text' },
    });
  });

  it('reads a sender a gateway wrote as +E164 by its digits, and still finds its contact (QA83-F1)', () => {
    const body = JSON.parse(JSON.stringify(fixture('message', 'text'))) as {
      entry: Array<{
        changes: Array<{
          value: { messages: Array<Record<string, unknown>>; contacts: Array<Record<string, unknown>> };
        }>;
      }>;
    };
    const value = body.entry[0]!.changes[0]!.value;
    value.messages[0]!.from = '+972987654321';
    value.contacts[0]!.wa_id = '+972987654321';
    expect(parseCloudApiWebhook(body).messages[0]).toMatchObject({
      user: '972987654321',
      waId: '972987654321',
      profileName: 'Test Name',
    });
    // Not a phone number with a plus: taken as it is.
    value.messages[0]!.from = '+972-987';
    expect(parseCloudApiWebhook(body).messages[0]).toMatchObject({ user: '+972-987' });
  });

  it('keeps context.id of replies and button taps, not of forwards', () => {
    expect(onlyMessage('message', 'reply').contextId).toBe('wamid.xyzxyz==');
    expect(onlyMessage('callback_button', 'button').contextId).toBe('wamid.xyzxyz');
    expect(onlyMessage('callback_button', 'quick_reply_without_context').contextId).toBeUndefined();
    expect(onlyMessage('message', 'forwarded').contextId).toBeUndefined();
    expect(onlyMessage('message', 'forwarded_many_times').contextId).toBeUndefined();
  });

  it('maps reply buttons, list rows and template buttons to choices', () => {
    expect(content('callback_button', 'button')).toEqual({
      type: 'choice',
      source: 'button_reply',
      id: 'callback_data',
      title: 'title',
    });
    expect(content('callback_selection', 'description')).toEqual({
      type: 'choice',
      source: 'list_reply',
      id: 'callback_data',
      title: 'title',
    });
    expect(content('callback_button', 'quick_reply')).toEqual({
      type: 'choice',
      source: 'template_button',
      id: 'callback_data',
      title: 'title',
    });
  });

  it('maps media with their optional fields', () => {
    expect(content('message', 'document')).toEqual({
      type: 'media',
      mediaType: 'document',
      mediaId: '1234567890987654321',
      mimeType: 'application/pdf',
      caption: 'caption',
      filename: 'filename.pdf',
    });
    expect(content('message', 'media_with_url')).toMatchObject({
      mediaType: 'image',
      url: expect.stringContaining('https://'),
    });
    expect(content('message', 'voice')).toMatchObject({
      mediaType: 'audio',
      mimeType: 'audio/ogg; codecs=opus',
    });
    expect(content('message', 'animated_sticker')).toMatchObject({ mediaType: 'sticker' });
  });

  it('reads reactions; an empty or missing emoji means removed', () => {
    expect(content('message', 'reaction')).toEqual({
      type: 'reaction',
      messageId: 'wamid.yzxyzx=',
      emoji: '😮',
    });
    expect(content('message', 'unreaction_empty')).toEqual({ type: 'reaction', messageId: 'wamid.yzxyzx=' });
    expect(content('message', 'unreaction_no_emoji')).toEqual({
      type: 'reaction',
      messageId: 'wamid.yzxyzx=',
    });
  });

  it('reads locations, contacts, orders and flow replies', () => {
    expect(content('message', 'current_location')).toEqual({
      type: 'location',
      latitude: 12.25089,
      longitude: 43.90539,
    });
    expect(content('message', 'chosen_location')).toMatchObject({
      name: 'Facebook HQ',
      address: expect.any(String),
    });
    expect(content('message', 'contacts')).toEqual({ type: 'contacts', count: 3 });
    expect(content('message', 'order')).toEqual({
      type: 'order',
      catalogId: '354160437058781',
      itemCount: 3,
    });
    const flow = content('flow_completion', 'completion');
    expect(
      flow.type === 'flow_reply' && (JSON.parse(flow.responseJson) as { flow_token: string }).flow_token,
    ).toBe('AQAAAAACS5FpgQ_cAAAAAD0QI3s.');
  });

  it('reads unsupported messages with the type and reason Meta gives', () => {
    expect(content('message', 'unsupported_with_type')).toEqual({
      type: 'unsupported',
      originalType: 'pool',
      reason: 'Message type is currently not supported. (error 131051)',
    });
    expect(content('message', 'unsupported')).toMatchObject({
      type: 'unsupported',
      originalType: 'unsupported',
    });
    expect(content('message', 'interactive_message_with_err')).toMatchObject({
      type: 'unsupported',
      originalType: 'interactive',
    });
  });

  it('reads system notices, which may come without contacts', () => {
    const m = onlyMessage('system', 'phone_number_change');
    expect(m.user).toBe('972987654321');
    expect(m.profileName).toBeUndefined();
    expect(m.content).toEqual({ type: 'system', body: 'User A changed from 972987654321 to 972912345678' });
  });

  it('takes the user from the message when its contact disagrees', () => {
    // In this fixture contacts[0].wa_id (972987654321) is not the sender (16505551234).
    const m = onlyMessage('edited_message', 'image');
    expect(m.user).toBe('16505551234');
    expect(m.profileName).toBeUndefined();
  });
});

describe('parseCloudApiWebhook: statuses', () => {
  it('reads a sent status with its callback data', () => {
    const { statuses } = parseCloudApiWebhook(fixture('message_status', 'with_tracker'));
    expect(statuses).toEqual([
      {
        provider: 'cloud-api',
        channel: '1122334455667',
        messageId: 'wamid.xyzxyz',
        status: 'sent',
        timestamp: 1698266945,
        recipient: '972987654321',
        bizOpaqueCallbackData: 'some data',
      },
    ]);
  });

  it.each(['sent', 'delivered', 'read', 'played', 'failed'])('reads %s', (name) => {
    const { statuses } = parseCloudApiWebhook(fixture('message_status', name));
    expect(statuses.map((s) => s.status)).toEqual([name]);
  });

  it('keeps the errors of a failed status', () => {
    const [failed] = parseCloudApiWebhook(fixture('message_status', 'failed')).statuses;
    expect(failed?.errors).toEqual([
      {
        code: 130472,
        title: "User's number is part of an experiment",
        message: "Failed to send message because this user's phone number is part of an experiment",
      },
    ]);
  });

  it('uses recipient_user_id when recipient_id is absent', () => {
    const body = envelope({
      metadata: { phone_number_id: 'P1' },
      statuses: [{ id: 'wamid.out', status: 'read', timestamp: '1750000000', recipient_user_id: 'US.42' }],
    });
    expect(parseCloudApiWebhook(body).statuses[0]).toMatchObject({ recipient: 'US.42', status: 'read' });
  });

  it('skips statuses it cannot use, keeping their neighbours', () => {
    const body = envelope({
      metadata: { phone_number_id: 'P1' },
      statuses: [
        { id: 'wamid.a', status: 'deleted', timestamp: '1750000000', recipient_id: '1' },
        { status: 'sent', timestamp: '1750000000', recipient_id: '1' },
        { id: 'wamid.b', status: 'delivered', timestamp: '1750000000', recipient_id: '1' },
      ],
    });
    const report = parseCloudApiWebhookReport(body);
    expect(report.batch.statuses.map((s) => s.messageId)).toEqual(['wamid.b']);
    expect(report.skipped.map((s) => s.kind)).toEqual(['status', 'status']);
  });
});

function envelope(...values: unknown[]): unknown {
  return {
    object: 'whatsapp_business_account',
    entry: [{ id: 'WABA', changes: values.map((value) => ({ field: 'messages', value })) }],
  };
}

const META = { display_phone_number: '15550001111', phone_number_id: 'PNID' };

describe('parseCloudApiWebhook: the envelope', () => {
  it.each([
    ['null', null],
    ['an array', []],
    ['a string', 'whatsapp_business_account'],
    ['another object type', { object: 'page', entry: [] }],
    ['no entry', { object: 'whatsapp_business_account' }],
    ['entry not an array', { object: 'whatsapp_business_account', entry: {} }],
  ])('refuses %s with BATON_ERR_BAD_ENVELOPE', (_what, body) => {
    expect(() => parseCloudApiWebhook(body)).toThrow(BatonError);
    try {
      parseCloudApiWebhook(body);
    } catch (err) {
      expect((err as BatonError).code).toBe('BATON_ERR_BAD_ENVELOPE');
      expect((err as BatonError).statusCode).toBe(400);
    }
  });

  it('accepts an empty entry list and malformed entries or changes', () => {
    expect(parseCloudApiWebhook({ object: 'whatsapp_business_account', entry: [] })).toEqual({
      messages: [],
      statuses: [],
    });
    const body = {
      object: 'whatsapp_business_account',
      entry: [null, { id: 'x' }, { changes: [null, { field: 'messages' }, { field: 'messages', value: 3 }] }],
    };
    expect(parseCloudApiWebhook(body)).toEqual({ messages: [], statuses: [] });
  });

  it('reads every entry and change, in order', () => {
    const msg = (id: string, ts: string) => ({
      from: '1555',
      id,
      timestamp: ts,
      type: 'text',
      text: { body: id },
    });
    const body = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: 'W1',
          changes: [
            { field: 'messages', value: { metadata: META, messages: [msg('a', '1'), msg('b', '2')] } },
            { field: 'account_update', value: { event: 'X' } },
            {
              field: 'messages',
              value: { metadata: { phone_number_id: 'OTHER' }, messages: [msg('c', '3')] },
            },
          ],
        },
        { id: 'W2', changes: [{ field: 'messages', value: { metadata: META, messages: [msg('d', '4')] } }] },
      ],
    };
    const { messages } = parseCloudApiWebhook(body);
    expect(messages.map((m) => [m.id, m.channel])).toEqual([
      ['a', 'PNID'],
      ['b', 'PNID'],
      ['c', 'OTHER'],
      ['d', 'PNID'],
    ]);
  });
});

describe('parseCloudApiWebhook: identities', () => {
  it('keys a user known only by BSUID on the user_id', () => {
    const body = envelope({
      metadata: META,
      contacts: [
        { profile: { name: 'Ana', username: 'ana' }, user_id: 'US.1349', parent_user_id: 'US.ENT.1181' },
      ],
      messages: [
        {
          from_user_id: 'US.1349',
          id: 'wamid.b1',
          timestamp: '1750000000',
          type: 'text',
          text: { body: 'hi' },
        },
      ],
    });
    const [m] = parseCloudApiWebhook(body).messages;
    expect(m).toMatchObject({ user: 'US.1349', userId: 'US.1349', profileName: 'Ana' });
    expect(m?.waId).toBeUndefined();
  });

  it('leaves out a user_id that is no id beside a phone number: the message is the number’s, unbound', () => {
    for (const bad of ['US.1 349', 'US:1349', 'x'.repeat(129), '']) {
      const body = envelope({
        metadata: META,
        contacts: [{ profile: { name: 'Ana' }, wa_id: '15550001', user_id: bad }],
        messages: [
          {
            from: '15550001',
            from_user_id: bad,
            id: 'wamid.u1',
            timestamp: '1750000000',
            type: 'text',
            text: { body: 'hi' },
          },
        ],
      });
      const [m] = parseCloudApiWebhook(body).messages;
      expect(m).toMatchObject({ user: '15550001', waId: '15550001' });
      expect(m?.userId).toBeUndefined();
    }
  });

  it('matches each message to its own contact in a mixed batch', () => {
    const body = envelope({
      metadata: META,
      contacts: [
        { profile: { name: 'Ana' }, wa_id: '111' },
        { profile: { name: 'Bo' }, wa_id: '222' },
      ],
      messages: [
        { from: '222', id: 'm1', timestamp: '1', type: 'text', text: { body: 'x' } },
        { from: '111', id: 'm2', timestamp: '2', type: 'text', text: { body: 'y' } },
      ],
    });
    const names = parseCloudApiWebhook(body).messages.map((m) => [m.user, m.profileName]);
    expect(names).toEqual([
      ['222', 'Bo'],
      ['111', 'Ana'],
    ]);
  });

  it('falls back to the lone contact when the message names no sender', () => {
    const body = envelope({
      metadata: META,
      contacts: [{ profile: { name: 'Ana' }, wa_id: '111', user_id: 'US.9' }],
      messages: [{ id: 'm1', timestamp: '1', type: 'text', text: { body: 'x' } }],
    });
    expect(parseCloudApiWebhook(body).messages[0]).toMatchObject({
      user: '111',
      waId: '111',
      userId: 'US.9',
    });
  });
});

describe('parseCloudApiWebhook: bad messages inside a valid envelope', () => {
  const base = { from: '1555', timestamp: '1750000000' };

  it('records what it cannot read as unsupported, never throwing', () => {
    const body = envelope({
      metadata: META,
      messages: [
        { ...base, id: 'm1', type: 'interactive' },
        { ...base, id: 'm2', type: 'interactive', interactive: { type: 'call_permission_reply' } },
        {
          ...base,
          id: 'm3',
          type: 'interactive',
          interactive: { type: 'button_reply', button_reply: { id: 'x' } },
        },
        { ...base, id: 'm4', type: 'request_welcome' },
        { ...base, id: 'm5' },
        { ...base, id: 'm6', type: 'text', text: 'not an object' },
        { ...base, id: 'm7', type: 'image', image: { mime_type: 'image/png' } },
        { ...base, id: 'm8', type: 'location', location: { latitude: '1', longitude: 2 } },
        { ...base, id: 'm9', type: 'button', button: { text: 'no payload' } },
        { ...base, id: 'm10', type: 'reaction', reaction: { emoji: '👍' } },
        { ...base, id: 'm11', type: 'order', order: {} },
        { ...base, id: 'm12', type: 'contacts' },
        { ...base, id: 'm13', type: 'system', system: {} },
        { ...base, id: 'm14', type: 'interactive', interactive: { type: 'nfm_reply', nfm_reply: {} } },
      ],
    });
    const { messages } = parseCloudApiWebhook(body);
    expect(messages.map((m) => [m.id, m.content.type])).toEqual(
      Array.from({ length: 14 }, (_, i) => [`m${i + 1}`, 'unsupported']),
    );
    expect(messages.map((m) => (m.content.type === 'unsupported' ? m.content.originalType : ''))).toEqual([
      'interactive',
      'interactive',
      'interactive',
      'request_welcome',
      'unknown',
      'text',
      'image',
      'location',
      'button',
      'reaction',
      'order',
      'contacts',
      'system',
      'interactive',
    ]);
    for (const m of messages) expect(m.content).toHaveProperty('reason', expect.any(String));
  });

  it('skips and reports a message without sender, keeping its neighbours', () => {
    const body = envelope({
      metadata: META,
      messages: [
        { ...base, type: 'text', text: { body: 'no id' } },
        { id: 'm2', timestamp: '1', type: 'text', text: { body: 'no sender' } },
        { timestamp: '1', type: 'text', text: { body: 'no id, no sender' } },
        'garbage',
        { ...base, id: 'm4', type: 'text', text: { body: 'fine' } },
      ],
    });
    const report = parseCloudApiWebhookReport(body);
    expect(report.batch.messages.map((m) => m.id)).toEqual([expect.stringMatching(/^baton\.noid\./), 'm4']);
    expect(report.skipped).toMatchObject([
      { kind: 'message', id: 'm2', reason: expect.stringContaining('no sender') },
      { kind: 'message', reason: 'message has no id' },
      { kind: 'message', reason: 'message is not an object' },
    ]);
  });

  it('stores a message without an id as unsupported, under an id its redelivery repeats', () => {
    const noId = (body: string): unknown =>
      envelope({ metadata: META, messages: [{ ...base, type: 'text', text: { body } }] });
    const [a] = parseCloudApiWebhookReport(noId('hello')).batch.messages;
    const [again] = parseCloudApiWebhookReport(noId('hello')).batch.messages;
    const [other] = parseCloudApiWebhookReport(noId('bye')).batch.messages;
    expect(a).toMatchObject({
      id: expect.stringMatching(/^baton\.noid\.[0-9a-f]{40}$/),
      user: base.from,
      content: { type: 'unsupported', originalType: 'text', reason: 'message has no id' },
    });
    expect(again!.id).toBe(a!.id);
    expect(other!.id).not.toBe(a!.id);
  });

  it('skips messages of a change without phone_number_id', () => {
    const body = envelope({ messages: [{ ...base, id: 'm1', type: 'text', text: { body: 'x' } }] });
    const report = parseCloudApiWebhookReport(body);
    expect(report.batch.messages).toEqual([]);
    expect(report.skipped).toMatchObject([
      { kind: 'message', id: 'm1', reason: expect.stringContaining('phone_number_id') },
    ]);
  });

  it('takes a phone_number_id written as a number as the same id (as it does a numeric from)', () => {
    const body = envelope({
      metadata: { display_phone_number: '15550001111', phone_number_id: 106540352242922 },
      messages: [{ ...base, id: 'm1', type: 'text', text: { body: 'x' } }],
    });
    const report = parseCloudApiWebhookReport(body);
    expect(report.skipped).toEqual([]);
    expect(report.batch.messages.map((m) => m.channel)).toEqual(['106540352242922']);
  });

  it('stores a message without a readable timestamp as unsupported, timed by the clock', () => {
    const body = envelope({
      metadata: META,
      messages: [{ from: '1555', id: 'm1', timestamp: 'yesterday', type: 'text', text: { body: 'x' } }],
    });
    const [m] = parseCloudApiWebhook(body, { now: () => 1_750_000_123_456 }).messages;
    expect(m).toMatchObject({
      timestamp: 1_750_000_123,
      content: { type: 'unsupported', originalType: 'text', reason: 'message has no valid timestamp' },
    });
  });

  it('accepts numeric timestamps and an empty text body', () => {
    const body = envelope({
      metadata: META,
      messages: [{ from: '1555', id: 'm1', timestamp: 1750000000, type: 'text', text: { body: '' } }],
    });
    expect(parseCloudApiWebhook(body).messages[0]).toMatchObject({
      timestamp: 1750000000,
      content: { type: 'text', body: '' },
    });
  });
});
