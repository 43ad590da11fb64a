import { describe, expect, it } from 'vitest';
import type { OutboundRecord } from '../../src/model/session.ts';
import type { Sender } from '../../src/providers/index.ts';
import {
  createCloudApiProvider,
  createRoutingSender,
  createWasenderProvider,
  signMetaBody,
} from '../../src/providers/index.ts';
import { outbound, sendError } from './outbound.ts';

const raw = Buffer.from(
  JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [
      {
        id: 'W',
        changes: [
          {
            field: 'messages',
            value: {
              metadata: { phone_number_id: 'P' },
              messages: [{ from: '1', id: 'm', timestamp: '1', type: 'text', text: { body: 'hé' } }],
            },
          },
        ],
      },
    ],
  }),
);

describe('createCloudApiProvider', () => {
  const provider = createCloudApiProvider({ appSecret: 'secret' });

  it('verifies X-Hub-Signature-256 from Node-style headers', () => {
    expect(provider.name).toBe('cloud-api');
    expect(provider.verify(raw, { 'x-hub-signature-256': signMetaBody(raw, 'secret') })).toBe(true);
    expect(provider.verify(raw, { 'X-Hub-Signature-256': signMetaBody(raw, 'secret') })).toBe(true);
    expect(provider.verify(raw, { 'x-hub-signature-256': [signMetaBody(raw, 'secret')] })).toBe(true);
    expect(provider.verify(raw, { 'x-hub-signature-256': signMetaBody(raw, 'other') })).toBe(false);
    expect(provider.verify(raw, {})).toBe(false);
    const twice = [signMetaBody(raw, 'secret'), signMetaBody(raw, 'secret')];
    expect(provider.verify(raw, { 'x-hub-signature-256': twice })).toBe(false);
  });

  it('accepts every request when no secret is configured', () => {
    expect(createCloudApiProvider().verify(raw, {})).toBe(true);
    expect(createCloudApiProvider({ appSecret: '' }).verify(raw, {})).toBe(true);
  });

  it('parses', () => {
    const parsed = provider.parse(JSON.parse(raw.toString('utf8')));
    expect(parsed.batch.messages[0]?.content).toEqual({ type: 'text', body: 'hé' });
    expect(parsed.skipped).toEqual([]);
  });
});

describe('createWasenderProvider', () => {
  it('checks X-Webhook-Signature against the secret', () => {
    const provider = createWasenderProvider({ webhookSecret: 'hook-secret' });
    expect(provider.name).toBe('wasender');
    expect(provider.verify(raw, { 'x-webhook-signature': 'hook-secret' })).toBe(true);
    expect(provider.verify(raw, { 'x-webhook-signature': 'nope' })).toBe(false);
    expect(provider.verify(raw, {})).toBe(false);
    expect(provider.enabled).toBe(true);
    // Without a secret the route is off and nothing verifies.
    expect(createWasenderProvider().enabled).toBe(false);
    expect(createWasenderProvider().verify(raw, {})).toBe(false);
    expect(createWasenderProvider({ webhookSecret: '' }).verify(raw, { 'x-webhook-signature': '' })).toBe(
      false,
    );
  });

  it('parses', () => {
    expect(createWasenderProvider().parse({ event: 'session.status', data: {} })).toEqual({
      batch: { messages: [], statuses: [] },
      skipped: [],
    });
  });
});

describe('createRoutingSender', () => {
  const recorder = (name: string, log: string[]): Sender => ({
    send(msg: OutboundRecord) {
      log.push(`${name}:${msg.id}`);
      return Promise.resolve({ providerMessageId: name });
    },
  });

  it('routes by the record provider, cloud-api by default', async () => {
    const log: string[] = [];
    const sender = createRoutingSender({
      'cloud-api': recorder('cloud', log),
      wasender: recorder('was', log),
    });
    await sender.send(outbound({ type: 'text', text: 'a' }, { id: '1' }));
    await sender.send(outbound({ type: 'text', text: 'b' }, { id: '2', provider: 'wasender' }));
    await sender.send(outbound({ type: 'text', text: 'c' }, { id: '3', provider: 'cloud-api' }));
    expect(log).toEqual(['cloud:1', 'was:2', 'cloud:3']);
  });

  it('fails permanently for a provider without a sender', async () => {
    const sender = createRoutingSender({});
    const err = await sendError(sender.send(outbound({ type: 'text', text: 'a' }, { provider: 'wasender' })));
    expect(err.retryable).toBe(false);
  });
});
