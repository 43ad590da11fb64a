import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OutboundBody } from '../../src/model/session.ts';
import { CloudApiSender, buildCloudApiMessage } from '../../src/providers/cloud-api/send.ts';
import { parseRetryAfter } from '../../src/providers/http.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { outbound, sendError } from './outbound.ts';

const TOKEN = 'test-access-token';

const TEXT: OutboundBody = { type: 'text', text: 'What is your name?' };

describe('CloudApiSender against the fake Graph API', () => {
  let fake: FakeGraph;
  let sender: CloudApiSender;

  beforeAll(async () => {
    fake = await startFakeGraph({ accessToken: TOKEN });
    sender = new CloudApiSender({ baseUrl: `${fake.url}/v21.0`, accessToken: TOKEN });
  });
  afterEach(() => fake.reset());
  afterAll(() => fake.close());

  it('POSTs a text to /{phone_number_id}/messages with the bearer token', async () => {
    const result = await sender.send(outbound(TEXT));
    expect(result.providerMessageId).toMatch(/^wamid\.fake\.\d+$/);
    const [call] = fake.sent;
    expect(call?.path).toBe('/v21.0/106540352242922/messages');
    expect(call?.phoneNumberId).toBe('106540352242922');
    expect(call?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(call?.headers['content-type']).toBe('application/json');
    expect(call?.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '+15550001111',
      type: 'text',
      text: { body: 'What is your name?' },
      biz_opaque_callback_data: 'baton:order:choose_product:3',
    });
    expect(call?.providerMessageId).toBe(result.providerMessageId);
  });

  it('sends reply buttons as an interactive button message', async () => {
    const body: OutboundBody = {
      type: 'buttons',
      text: 'Which product?',
      buttons: [
        { id: 'sku_550e', title: 'Trail Shoe' },
        { id: 'sku_551a', title: 'Rain Jacket' },
        { id: 'sku_777b', title: 'Day Pack' },
      ],
    };
    await sender.send(outbound(body));
    const call = await fake.waitFor((c) => c.body.type === 'interactive', 2_000);
    expect(call.body.interactive).toEqual({
      type: 'button',
      body: { text: 'Which product?' },
      action: {
        buttons: [
          { type: 'reply', reply: { id: 'sku_550e', title: 'Trail Shoe' } },
          { type: 'reply', reply: { id: 'sku_551a', title: 'Rain Jacket' } },
          { type: 'reply', reply: { id: 'sku_777b', title: 'Day Pack' } },
        ],
      },
    });
    expect(call.body.biz_opaque_callback_data).toBe('baton:order:choose_product:3');
  });

  it('sends a list as an interactive list message', async () => {
    const body: OutboundBody = {
      type: 'list',
      text: 'Pick a size',
      button: 'Sizes',
      sections: [
        {
          title: 'EU',
          rows: [
            { id: 'eu42', title: '42', description: 'Fits 26.5 cm' },
            { id: 'eu43', title: '43' },
          ],
        },
      ],
    };
    await sender.send(outbound(body, { callbackData: 'baton:order:size:4:wamid.in' }));
    expect(fake.sent[0]?.body).toMatchObject({
      type: 'interactive',
      interactive: {
        type: 'list',
        body: { text: 'Pick a size' },
        action: {
          button: 'Sizes',
          sections: [
            {
              title: 'EU',
              rows: [
                { id: 'eu42', title: '42', description: 'Fits 26.5 cm' },
                { id: 'eu43', title: '43' },
              ],
            },
          ],
        },
      },
      biz_opaque_callback_data: 'baton:order:size:4:wamid.in',
    });
  });

  it('addresses a user known only by BSUID through `recipient`', async () => {
    await sender.send(outbound(TEXT, { to: 'US.13491208655302741918', user: 'US.13491208655302741918' }));
    const body = fake.sent[0]?.body;
    expect(body?.recipient).toBe('US.13491208655302741918');
    expect(body).not.toHaveProperty('to');
  });

  it('omits the Authorization header without a token', async () => {
    const open = await startFakeGraph();
    try {
      await new CloudApiSender({ baseUrl: open.url }).send(outbound(TEXT));
      expect(open.sent[0]?.headers.authorization).toBeUndefined();
    } finally {
      await open.close();
    }
  });

  it('is refused (permanent) by a Graph that wants a token', async () => {
    const err = await sendError(new CloudApiSender({ baseUrl: fake.url }).send(outbound(TEXT)));
    expect(err).toMatchObject({
      retryable: false,
      httpStatus: 401,
      providerCode: 190,
      code: 'BATON_ERR_SEND_PERMANENT',
    });
    expect(err.message).not.toContain(TOKEN);
  });

  it('HTTP 429 with Retry-After is retryable with retryAfterMs', async () => {
    fake.failNext(1, { status: 429, retryAfter: 2 });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({
      retryable: true,
      httpStatus: 429,
      retryAfterMs: 2000,
      code: 'BATON_ERR_SEND_RETRYABLE',
    });
    // The next attempt goes through: failures are consumed one request at a time.
    await expect(sender.send(outbound(TEXT))).resolves.toHaveProperty('providerMessageId');
    expect(fake.requests.map((c) => c.status)).toEqual([429, 200]);
    expect(fake.sent).toHaveLength(1);
  });

  it('reads Retry-After given as an HTTP date', async () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const dated = new CloudApiSender({ baseUrl: fake.url, accessToken: TOKEN, now: () => now });
    fake.failNext(1, { status: 503, retryAfter: new Date(now + 7_000).toUTCString() });
    const err = await sendError(dated.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 503, retryAfterMs: 7_000 });
  });

  it.each([130429, 131056, 80007, 4, 131057, 131000, 1, 2])(
    'HTTP 400 with Graph code %i is retryable',
    async (code) => {
      fake.failNext(1, { status: 400, graphCode: code });
      const err = await sendError(sender.send(outbound(TEXT)));
      expect(err).toMatchObject({ retryable: true, httpStatus: 400, providerCode: code });
      expect(err.retryAfterMs).toBeUndefined();
    },
  );

  // SPEC 3: throttling is recognised by its code "whatever the HTTP status" (an outside test, P2).
  it.each([130429, 80007])('HTTP 200 with a Graph error %i in the body is retryable', async (code) => {
    fake.failNext(1, { status: 200, body: { error: { code, message: 'Rate limit hit' } } });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 200, providerCode: code });
  });

  it('a throttling code written as a string is a throttling code (outside test QA48)', async () => {
    fake.failNext(1, { status: 400, body: { error: { code: '130429', message: 'Rate limit hit' } } });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 400, providerCode: 130429 });
    fake.failNext(1, { status: 400, body: { error: { code: ' 131056 ', message: 'Pair rate limit' } } });
    const padded = await sendError(sender.send(outbound(TEXT)));
    expect(padded).toMatchObject({ retryable: true, providerCode: 131056 });
    expect(padded.message).toContain('Graph error 131056');
  });

  it('HTTP 200 without messages[0].id or an error stays a permanent failure', async () => {
    fake.failNext(1, { status: 200, body: { messages: [] } });
    await expect(sendError(sender.send(outbound(TEXT)))).resolves.toMatchObject({ retryable: false });
  });

  it('HTTP 400 with Graph code 131047 is permanent, with code and message in the detail', async () => {
    fake.failNext(1, { status: 400, graphCode: 131047, message: '(#131047) Re-engagement message' });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({
      retryable: false,
      httpStatus: 400,
      providerCode: 131047,
      code: 'BATON_ERR_SEND_PERMANENT',
    });
    expect(err.message).toContain('131047');
    expect(err.message).toContain('Re-engagement message');
    expect(err.message).not.toContain('15550001111');
  });

  it.each([500, 502, 503])('HTTP %i without a Graph code is retryable', async (status) => {
    fake.failNext(1, { status });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: status });
    expect(err.providerCode).toBeUndefined();
  });

  it('a non-JSON error body is classified by its status', async () => {
    fake.failNext(1, { status: 502, body: 'Bad gateway' });
    await expect(sendError(sender.send(outbound(TEXT)))).resolves.toMatchObject({
      retryable: true,
      httpStatus: 502,
    });
    fake.failNext(1, { status: 404, body: [] });
    await expect(sendError(sender.send(outbound(TEXT)))).resolves.toMatchObject({
      retryable: false,
      httpStatus: 404,
    });
  });

  it('a 200 without a message id is a permanent error (the message may be out; do not repeat it)', async () => {
    fake.failNext(1, { status: 200, body: { messaging_product: 'whatsapp', messages: [] } });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: false, httpStatus: 200 });
  });

  it('a reset connection is a retryable network error', async () => {
    fake.failNext(1, { status: 0, network: 'reset' });
    const err = await sendError(sender.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 0 });
    expect(err.message).toMatch(/network error/);
    expect(err.cause).toBeDefined();
  });

  it('a refused connection is a retryable network error', async () => {
    const gone = await startFakeGraph();
    const url = gone.url;
    await gone.close();
    const err = await sendError(new CloudApiSender({ baseUrl: url }).send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 0 });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('a slow answer times out as retryable', async () => {
    fake.failNext(1, { status: 200, delayMs: 2_000 });
    const quick = new CloudApiSender({ baseUrl: fake.url, accessToken: TOKEN, timeoutMs: 50 });
    const err = await sendError(quick.send(outbound(TEXT)));
    expect(err).toMatchObject({ retryable: true, httpStatus: 0 });
    expect(err.message).toContain('timed out after 50 ms');
  });

  it("a caller's abort signal cancels the send as retryable", async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await sendError(sender.send(outbound(TEXT), { signal: controller.signal }));
    expect(err).toMatchObject({ retryable: true, httpStatus: 0 });
    expect(err.message).toContain('aborted');
  });
});

describe('buildCloudApiMessage', () => {
  it('puts the callback data on every body type', () => {
    for (const body of [
      TEXT,
      { type: 'buttons', text: 't', buttons: [{ id: 'a', title: 'A' }] },
      { type: 'list', text: 't', button: 'b', sections: [{ title: 's', rows: [{ id: 'r', title: 'R' }] }] },
    ] satisfies OutboundBody[]) {
      expect(buildCloudApiMessage(outbound(body)).biz_opaque_callback_data).toBe(
        'baton:order:choose_product:3',
      );
    }
  });
});

describe('parseRetryAfter', () => {
  it.each([
    ['0', 0],
    ['1', 1000],
    ['1.5', 1500],
    [' 30 ', 30_000],
    ['Thu, 01 Jan 2026 00:00:10 GMT', 10_000],
    ['Wed, 31 Dec 2025 23:59:00 GMT', 0],
  ])('%j -> %i ms', (value, ms) => {
    expect(parseRetryAfter(value, Date.parse('2026-01-01T00:00:00Z'))).toBe(ms);
  });

  it.each([null, undefined, '', 'soon', '-1'])('%j -> undefined', (value) => {
    expect(parseRetryAfter(value, 0)).toBeUndefined();
  });
});
