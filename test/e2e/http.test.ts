import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startHarness, VERIFY_TOKEN, type Harness } from '../support/harness.ts';
import { envelopeWith, PHONE_ID, statusWebhook, text, webhook } from '../support/payloads.ts';
import { webhookBody } from '../../loadgen/payloads.ts';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/cloud-api');

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

describe('GET /webhooks/whatsapp (Meta handshake)', () => {
  const q = (p: Record<string, string>) => `${h.url}/webhooks/whatsapp?${new URLSearchParams(p).toString()}`;

  it('answers the challenge as plain text when the token matches', async () => {
    const r = await fetch(
      q({ 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '1158201444' }),
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await r.text()).toBe('1158201444');
  });

  it('answers it on the URL pasted with a trailing slash too', async () => {
    const p = { 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '42' };
    const r = await fetch(`${h.url}/webhooks/whatsapp/?${new URLSearchParams(p).toString()}`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('42');
  });

  it.each([
    [{ 'hub.mode': 'subscribe', 'hub.verify_token': 'wrong', 'hub.challenge': '1' }],
    [{ 'hub.mode': 'unsubscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '1' }],
    [{ 'hub.challenge': '1' }],
  ])('answers 403 otherwise (%o)', async (params) => {
    expect((await fetch(q(params))).status).toBe(403);
  });
});

describe('POST /webhooks/whatsapp refuses bad input with the right status, never 500', () => {
  const body = () => webhook([text('15550009999', 'hi', 1_750_000_000)]);

  it('401 without a signature', async () => {
    const r = await h.post(body(), { signature: null });
    expect(r.status).toBe(401);
    expect(await r.json()).toMatchObject({ error: expect.any(String) });
  });

  it('401 with a wrong signature', async () => {
    expect((await h.post(body(), { signature: 'sha256=' + '0'.repeat(64) })).status).toBe(401);
    expect((await h.post(body(), { signature: 'garbage' })).status).toBe(401);
  });

  it('401 when the body was re-serialised after signing (signature is over raw bytes)', async () => {
    const raw = '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[]}],"x":"caf\\u00e9"}';
    const ok = await h.post(null, { raw });
    expect(ok.status).toBe(200);
    const { signMetaBody } = await import('../../src/providers/index.ts');
    const sig = signMetaBody(Buffer.from(raw), 'test-app-secret');
    const reencoded = JSON.stringify(JSON.parse(raw));
    expect((await h.post(null, { raw: reencoded, signature: sig })).status).toBe(401);
  });

  it('400 with {error} for malformed JSON', async () => {
    const r = await h.post(null, { raw: '{"object": "whatsapp_business_account", "entry": [' });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: expect.any(String) });
  });

  it('400 with {error} for a body that is not UTF-8 (RFC 8259: JSON text is UTF-8), nothing stored', async () => {
    // A user's name with a stray Latin-1 byte (0xE9), signed as sent: not replaced by U+FFFD.
    const [before, after] = JSON.stringify(webhook([text('15550990001', 'Caf@', 1_750_000_000)])).split('@');
    const raw = Buffer.concat([Buffer.from(before!), Buffer.from([0xe9]), Buffer.from(after!)]);
    const r = await h.post(null, { raw });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: expect.stringContaining('UTF-8') });
    expect((await h.admin('/sessions/15550990001')).status).toBe(404);
  });

  it('415 with {error} for a compressed body, said as such, not as JSON that is not UTF-8 (QA83-F6)', async () => {
    const { gzipSync } = await import('node:zlib');
    const { signMetaBody } = await import('../../src/providers/index.ts');
    const body = gzipSync(Buffer.from(JSON.stringify(webhook([text('15550990002', 'hi', 1_750_000_000)]))));
    for (const encoding of ['gzip', 'Deflate', 'br']) {
      const r = await fetch(`${h.url}/webhooks/whatsapp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-encoding': encoding,
          'x-hub-signature-256': signMetaBody(body, 'test-app-secret'),
        },
        body: new Uint8Array(body),
      });
      expect(r.status, encoding).toBe(415);
      expect(await r.json()).toMatchObject({ error: expect.stringContaining('Content-Encoding') });
    }
    expect((await h.admin('/sessions/15550990002')).status).toBe(404);
  });

  it.each([
    ['an array', []],
    ['another object', { object: 'page', entry: [] }],
    ['no entry', { object: 'whatsapp_business_account' }],
    ['entry not an array', { object: 'whatsapp_business_account', entry: {} }],
    ['a string', 'hello'],
    ['null', null],
  ])('400 for an envelope that is %s', async (_name, b) => {
    const r = await h.post(b);
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: expect.any(String) });
  });

  it('413 for a body over 4 MiB', async () => {
    const raw = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [],
      pad: 'x'.repeat(4 * 1024 * 1024),
    });
    const r = await h.post(null, { raw });
    expect(r.status).toBe(413);
    // Counted, as other refusals are.
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(metrics).toMatch(/^baton_webhooks_total\{provider="cloud-api",outcome="too_large"\} [1-9]/m);
  });

  it('a client that writes the whole 4 MiB + 1 body gets the 413, not a reset connection', async () => {
    // Answered before the body was read, the connection closed on unread bytes: the socket was
    // reset and a client still writing lost the answer (an outside test: half the time, busy machine).
    const { port } = new URL(h.url);
    const body = Buffer.alloc(4 * 1024 * 1024 + 1, 'a');
    for (let i = 0; i < 5; i++) {
      const outcome = await new Promise<string>((resolve) => {
        const s = connect(Number(port), '127.0.0.1');
        let answer = '';
        let error = '';
        s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
        s.on('close', () => resolve(`${answer.split(' ')[1] ?? 'none'}${error ? `+${error}` : ''}`));
        s.write(
          `POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        s.end(body);
      });
      expect(outcome).toBe('413');
    }
  });

  it('a body declared bigger than Baton drains is answered 413 at once', async () => {
    const { port } = new URL(h.url);
    const answer = await new Promise<string>((resolve) => {
      const s = connect(Number(port), '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n')) {
          s.destroy();
          resolve(got.split(' ')[1] ?? 'none');
        }
      });
      s.on('error', () => resolve(got.split(' ')[1] ?? 'none'));
      s.write(
        `POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n{"object":`,
      );
    });
    expect(answer).toBe('413');
  });

  it('a body declared too big that trickles in is answered 413 within seconds, not 408 (outside test QA1-3)', async () => {
    const { port } = new URL(h.url);
    const started = Date.now();
    // The answer comes with the connection closed: the rest of the body is never read.
    const answer = await untilClosed(
      port,
      `POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${50 * 1024 * 1024}\r\n\r\n{`,
    );
    expect(answer.split(' ')[1]).toBe('413');
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a request whose framing is ambiguous is answered 400 saying so, and nothing smuggled is answered (outside test QA96-F4)', async () => {
    const { port } = new URL(h.url);
    for (const framing of [
      'Content-Length: 4\r\nTransfer-Encoding: chunked',
      'Content-Length: 4\r\nContent-Length: 40',
    ]) {
      const answer = await untilClosed(
        port,
        `POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${framing}\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      expect(answer.split(' ')[1], framing).toBe('400');
      expect(answer).toMatch(/"code":"BATON_ERR_BAD_REQUEST"/);
      expect(answer).toMatch(/not valid HTTP\/1\.1 \(HPE_\w+\): its framing or headers could not be read/);
      // One answer: the request after it was never read.
      expect(answer.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
    }
  });

  it('accepts a 3 MB body (Meta sends up to 3 MB)', async () => {
    const raw = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [],
      pad: 'x'.repeat(3 * 1000 * 1000),
    });
    expect((await h.post(null, { raw })).status).toBe(200);
  });

  it('stores an unreadable message as unsupported without refusing its neighbours', async () => {
    const good = text('15550008888', 'hi', 1_750_000_000);
    const weird = { from: '15550008888', id: 'wamid.WEIRD1', timestamp: '1750000000', type: 'interactive' };
    const r = await h.post(webhook([weird, good]));
    expect(r.status).toBe(200);
    await h.settled('15550008888', 1);
    const t = await h.transitions('15550008888');
    expect(t.find((x) => x.message_ids.includes('wamid.WEIRD1'))!.kind).toBe('ignored');
    expect(t.find((x) => x.message_ids.includes(good.id))!.kind).toBe('advance');
  });
});

describe('health, readiness, metrics, admin auth', () => {
  it('answers an unknown route, and what the HTTP parser refuses, in the {error, code} shape', async () => {
    for (const [method, path] of [
      ['PUT', '/webhooks/whatsapp'],
      ['GET', '/nope'],
      ['GET', '/admin/etc/passwd'],
    ] as const) {
      const r = await fetch(`${h.url}${path}`, { method });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(await r.json()).toMatchObject({ code: 'BATON_ERR_NOT_FOUND', error: expect.any(String) });
    }
    // A mistyped callback path is not found, whatever its body's label (outside test QA139-F4: 415).
    for (const type of ['weird', 'application/json', 'text/plain']) {
      const r = await fetch(`${h.url}/webhooks/WhatsApp`, {
        method: 'POST',
        headers: { 'content-type': type },
        body: '{}',
      });
      expect(r.status, type).toBe(404);
      expect(await r.json()).toEqual({
        error: 'No route POST /webhooks/WhatsApp',
        code: 'BATON_ERR_NOT_FOUND',
      });
    }
    const big = await fetch(`${h.url}/healthz?${'q'.repeat(20_000)}`);
    expect(big.status).toBe(431);
    expect(await big.json()).toMatchObject({ code: 'BATON_ERR_HEADERS_TOO_LARGE' });
  });

  it('answers what Node would answer bare in the {error, code} shape too: no Host, an odd Expect, CONNECT (outside test QA54-F4)', async () => {
    const { port } = new URL(h.url);
    const exchange = (request: string): Promise<string> =>
      new Promise((resolve) => {
        const s = connect(Number(port), '127.0.0.1');
        let answer = '';
        s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        s.on('error', () => undefined);
        s.on('close', () => resolve(answer));
        s.write(request);
      });
    const shape = (answer: string): { status: string; body: unknown } => ({
      status: answer.split(' ')[1] ?? 'none',
      body: JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4) || 'null') as unknown,
    });
    for (const path of ['/webhooks/whatsapp', '/healthz', '/admin/api/stats']) {
      expect(shape(await exchange(`GET ${path} HTTP/1.1\r\nConnection: close\r\n\r\n`))).toMatchObject({
        status: '400',
        body: { code: 'BATON_ERR_BAD_REQUEST', error: expect.stringContaining('Host') },
      });
    }
    const post = `POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nExpect: weird\r\nContent-Length: 2\r\n\r\n{}`;
    expect(shape(await exchange(post))).toMatchObject({
      status: '417',
      body: { code: 'BATON_ERR_EXPECTATION_FAILED' },
    });
    expect(
      shape(await exchange('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')),
    ).toMatchObject({
      status: '404',
      body: { code: 'BATON_ERR_NOT_FOUND' },
    });
    // An HTTP/1.0 request needs no Host.
    expect(shape(await exchange('GET /healthz HTTP/1.0\r\n\r\n')).status).toBe('200');
  });

  it('serves /healthz and /readyz', async () => {
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    const r = await fetch(`${h.url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ ok: true, checks: { sqlite: true } });
  });

  it('exposes baton_ metrics', async () => {
    const body = await (await fetch(`${h.url}/metrics`)).text();
    for (const name of [
      'baton_webhooks_total',
      'baton_messages_total',
      'baton_queue_depth',
      'baton_oldest_pending_seconds',
      'baton_lock_wait_seconds',
      'baton_batch_seconds',
      'baton_outbound_total',
      'baton_late_messages_total',
      'baton_stale_inputs_total',
      'baton_duplicates_total',
    ]) {
      expect(body).toContain(name);
    }
  });

  it('refuses the admin API without the bearer token', async () => {
    expect((await fetch(`${h.url}/admin/api/sessions/123`)).status).toBe(401);
    const wrong = await fetch(`${h.url}/admin/api/sessions/123`, {
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.status).toBe(401);
    expect((await h.admin('/sessions/000000')).status).toBe(404);
  });

  it('slows down Bearer guesses: ten different wrong tokens from one address, then 429 for a minute, the right one included', async () => {
    const h2 = await startHarness();
    try {
      const call = (token?: string) =>
        fetch(
          `${h2.url}/admin/api/stats`,
          token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } },
        );
      // No token at all is no guess.
      for (let i = 0; i < 12; i++) expect((await call()).status).toBe(401);
      expect((await call(ADMIN_TOKEN)).status).toBe(200);
      // An old token sent again and again is one guess.
      for (let i = 0; i < 12; i++) expect((await call('old-token')).status).toBe(401);
      expect((await call(ADMIN_TOKEN)).status).toBe(200);
      // An agent signed in before the guesses.
      const signedIn = await fetch(`${h2.url}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
        redirect: 'manual',
      });
      const cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
      for (let i = 0; i < 9; i++) expect((await call(`guess-${i}`)).status).toBe(401);
      const blocked = await call(ADMIN_TOKEN);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await blocked.json()).toMatchObject({ code: 'BATON_ERR_TOO_MANY_ATTEMPTS' });
      // A sign-in cookie is no guess: that agent's page goes on working from the same address.
      expect((await fetch(`${h2.url}/admin/api/stats`, { headers: { cookie } })).status).toBe(200);
    } finally {
      await h2.close();
    }
  });

  it('behind a proxy (BATON_TRUST_PROXY=true), a client cannot pick its own address with an X-Forwarded-For of its own', async () => {
    const h2 = await startHarness({ BATON_TRUST_PROXY: 'true' });
    try {
      // The proxy appends the address it saw (203.0.113.7); what the client wrote comes first.
      const call = (token: string, forged: string) =>
        fetch(`${h2.url}/admin/api/stats`, {
          headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': `${forged}, 203.0.113.7` },
        });
      for (let i = 0; i < 10; i++) expect((await call(`guess-${i}`, `198.51.100.${i}`)).status).toBe(401);
      expect((await call(ADMIN_TOKEN, '198.51.100.99')).status).toBe(429);
      // Another client behind the same proxy is not locked out.
      const other = await fetch(`${h2.url}/admin/api/stats`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-forwarded-for': '203.0.113.8' },
      });
      expect(other.status).toBe(200);
    } finally {
      await h2.close();
    }
  });

  it("lists a session's outbound messages in the API's own shape (snake_case, ISO times), not the store's", async () => {
    const u = '15550007781';
    expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)]))).status).toBe(200);
    await h.settled(u, 1);
    await h.graph.waitFor((c) => c.body.to === `+${u}`);
    let outbound: Array<Record<string, unknown>> = [];
    await h.until(async () => {
      const r = await h.admin(`/sessions/${u}/outbound`);
      outbound = ((await r.json()) as { outbound: Array<Record<string, unknown>> }).outbound;
      return outbound[0]?.status === 'sent';
    });
    expect(outbound).toHaveLength(1);
    expect(outbound[0]).toMatchObject({
      kind: 'reply',
      flow: 'order',
      step: 'ask_name',
      version: 1,
      to: u,
      callback_data: 'baton:order:ask_name:1',
      status: 'sent',
      attempts: 1,
      claims: 1,
      wamid: expect.stringMatching(/^wamid\./),
      body: { type: 'text' },
    });
    expect(Date.parse(outbound[0]!.created_at as string)).toBeGreaterThan(0);
    for (const internal of ['callbackData', 'providerMessageId', 'createdAt', 'isPrompt', 'channel'])
      expect(outbound[0]).not.toHaveProperty(internal);
  });

  it('answers 409 listing channels when a user has sessions on several numbers', async () => {
    const u = '15550007777';
    expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)], '111'))).status).toBe(200);
    expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)], '222'))).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(u)).length === 2);
    const r = await h.admin(`/sessions/${u}`);
    expect(r.status).toBe(409);
    expect(await r.json()).toMatchObject({ channels: ['111', '222'] });
    expect((await h.admin(`/sessions/${u}?channel=222`)).status).toBe(200);
  });

  it('a user_id that came with two wa_ids (a number changed): each wa_id finds its own session, the user_id the one written to last', async () => {
    const shared = 'US.13491208655302741918';
    const body = (waId: string, id: string, ts: number): Record<string, unknown> =>
      envelopeWith({
        contacts: [{ profile: { name: 'Kim' }, wa_id: waId, user_id: shared }],
        messages: [{ from: waId, id, timestamp: String(ts), type: 'text', text: { body: 'hi' } }],
      });
    const [a, b] = ['15550008881', '15550008882'];
    expect((await h.post(body(a, 'wamid.SHARED.A', 1_750_000_000))).status).toBe(200);
    expect((await h.post(body(b, 'wamid.SHARED.B', 1_750_000_001))).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(shared)).length === 2);
    const one = await h.admin(`/sessions/${a}`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ wa_id: a });
    // The session the user wrote to last, where the user's messages go.
    const r = await h.admin(`/sessions/${shared}`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ wa_id: b });
    expect(await (await h.admin(`/sessions/${shared}?channel=${PHONE_ID}`)).json()).toMatchObject({
      wa_id: b,
    });
  });

  it('a user_id that keys a session on one number and names a wa_id session on another: 409 listing both numbers', async () => {
    const [u, bsuid] = ['15550008891', 'US.13491208655302749999'];
    // Number 111 knows the user by phone and user_id; number 222 by user_id alone.
    const onA = webhookBody({ phoneNumberId: '111', displayPhone: '15550000111' }, []);
    const value = (body: Record<string, unknown>): Record<string, unknown> =>
      (body as { entry: Array<{ changes: Array<{ value: Record<string, unknown> }> }> }).entry[0]!.changes[0]!
        .value;
    Object.assign(value(onA), {
      contacts: [{ profile: { name: 'Kim' }, wa_id: u, user_id: bsuid }],
      messages: [
        {
          from: u,
          from_user_id: bsuid,
          id: 'wamid.BSUID.A',
          timestamp: '1750000000',
          type: 'text',
          text: { body: 'hi' },
        },
      ],
    });
    const onB = webhookBody({ phoneNumberId: '222', displayPhone: '15550000222' }, []);
    Object.assign(value(onB), {
      contacts: [{ profile: { name: 'Kim' }, user_id: bsuid }],
      messages: [
        {
          from_user_id: bsuid,
          id: 'wamid.BSUID.B',
          timestamp: '1750000000',
          type: 'text',
          text: { body: 'hi' },
        },
      ],
    });
    expect((await h.post(onA)).status).toBe(200);
    expect((await h.post(onB)).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(bsuid)).length === 2);
    const r = await h.admin(`/sessions/${bsuid}`);
    expect(r.status).toBe(409);
    expect(await r.json()).toMatchObject({ channels: ['111', '222'] });
    expect(await (await h.admin(`/sessions/${bsuid}?channel=222`)).json()).toMatchObject({ channel: '222' });
    expect(await (await h.admin(`/sessions/${bsuid}?channel=111`)).json()).toMatchObject({
      channel: '111',
      wa_id: u,
    });
  });

  it('reports stats, counting this process’s worker by its heartbeat', async () => {
    const r = await h.admin('/stats');
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({
      queue_depth: expect.any(Number),
      oldest_pending_ms: expect.any(Number),
      locks_held: expect.any(Number),
      dead_letters: expect.any(Number),
      workers: 1,
      messages_per_s: expect.any(Number),
    });
  });

  it('counts messages stored in messages_per_s, not webhook posts', async () => {
    const h2 = await startHarness();
    try {
      const many = Array.from({ length: 120 }, (_, i) =>
        text(`1555001${String(i).padStart(4, '0')}`, 'hi', 1_750_000_000),
      );
      expect((await h2.post(webhook(many))).status).toBe(200);
      expect((await h2.post(webhook(many))).status).toBe(200); // duplicates: not counted again
      const stats = (await (await h2.admin('/stats')).json()) as { messages_per_s: number };
      expect(stats.messages_per_s).toBe(2); // 120 messages over the last minute
    } finally {
      await h2.close();
    }
  });

  it('lets an agent clear a stuck lease, after which the session is processed', async () => {
    const u = '15550004444';
    expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)]))).status).toBe(200);
    await h.settled(u, 1);
    // A worker that died holding the baton: the lease stays until its TTL, unless cleared.
    const key = { channel: '106540352242922', user: u };
    // (The live worker may still hold it for a moment, sending the name prompt.)
    // (`until` stops at anything but undefined/false: a refused grant, null, must mean "again".)
    await h.until(async () => (await h.baton.backend.acquireLease(key, 'dead-worker', 60_000)) ?? undefined);
    expect((await h.post(webhook([text(u, 'Kay', 1_750_000_001)]))).status).toBe(200);
    const first = await h.admin(`/sessions/${u}/lock`, { method: 'DELETE' });
    expect(await first.json()).toEqual({ released: true });
    const s = await h.settled(u, 2);
    expect(s.data).toEqual({ customer_name: 'Kay' });
    const again = await h.admin(`/sessions/${u}/lock`, { method: 'DELETE' });
    expect(await again.json()).toEqual({ released: false });
  });

  it('lists sessions by step, page by page, over HTTP', async () => {
    const users = ['15550002001', '15550002002', '15550002003'];
    for (const u of users)
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)], '777'))).status).toBe(200);
    await h.until(
      async () => (await h.baton.backend.listSessions({ channel: '777', limit: 10 })).sessions.length === 3,
    );
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/sessions?channel=777&step=ask_name&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await (await h.admin(q)).json()) as {
        sessions: Array<{ wa_id: string }>;
        next_cursor: string | null;
      };
      expect(page.sessions.length).toBeLessThanOrEqual(2);
      seen.push(...page.sessions.map((x) => x.wa_id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen.sort()).toEqual(users);
    const none = (await (await h.admin('/sessions?channel=777&needs_agent=true')).json()) as {
      sessions: unknown[];
    };
    expect(none.sessions).toEqual([]);
  });

  it('serves the flow map as Mermaid', async () => {
    const r = await h.admin('/flows/order/graph');
    // Labelled by input, as `baton flow graph` draws it.
    expect(await r.text()).toContain('confirm_order --> completed: Confirm');
  });
});

describe('every real Cloud API body in shared/fixtures', () => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
  const cases = files.flatMap((f) =>
    Object.entries(JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Record<string, unknown>).map(
      ([name, body]) => [`${f}:${name}`, body] as const,
    ),
  );

  it('has fixtures to read', () => {
    expect(cases.length).toBeGreaterThan(50);
  });

  it.each(cases)('%s is answered 200 and each of its messages is recorded', async (_name, body) => {
    // Give each message a fresh id so cases that share ids do not dedupe each other.
    // and each case a user of its own, so one case's timestamps cannot make another's late.
    const copy = JSON.parse(JSON.stringify(body)) as {
      entry?: Array<{
        changes?: Array<{
          value?: { messages?: Array<{ id: string; from: string }>; contacts?: Array<{ wa_id?: string }> };
        }>;
      }>;
    };
    const ids: Array<{ id: string; from: string }> = [];
    const user = `1777${String(Math.floor(Math.random() * 1e9)).padStart(9, '0')}`;
    for (const e of copy.entry ?? []) {
      for (const c of e.changes ?? []) {
        for (const contact of c.value?.contacts ?? []) if (contact.wa_id) contact.wa_id = user;
        for (const m of c.value?.messages ?? []) {
          m.id = `${m.id}.${Math.random().toString(36).slice(2)}`;
          if (m.from) m.from = user;
          ids.push(m);
        }
      }
    }
    const r = await h.post(copy);
    expect(r.status).toBe(200);
    for (const m of ids) {
      const t = await h.until(async () => {
        const sessions = await h.baton.backend.findSessions(m.from);
        for (const s of sessions) {
          const rec = (await h.baton.backend.transitions(s)).find((x) => x.message_ids.includes(m.id));
          if (rec) return rec;
        }
        return undefined;
      });
      const type = (JSON.stringify(body).match(/"type":\s*"(reaction|edit|revoke|system|unsupported)"/) ??
        [])[1];
      if (type) expect(t.kind).toBe('ignored');
    }
  });

  it('statuses update the outbound record they name, never backwards', async () => {
    const u = '15550006666';
    await h.post(webhook([text(u, 'hi', 1_750_000_000)]));
    const call = await h.graph.waitFor((c) => c.body.to === `+${u}`);
    const id = call.providerMessageId!;
    await h.until(async () => {
      const s = (await h.baton.backend.findSessions(u))[0];
      return s && (await h.baton.backend.outbound(s))[0]?.status === 'sent';
    });
    expect((await h.post(statusWebhook(id, 'read', u, 1_750_000_010))).status).toBe(200);
    expect((await h.post(statusWebhook(id, 'delivered', u, 1_750_000_005))).status).toBe(200);
    const s = (await h.baton.backend.findSessions(u))[0]!;
    expect((await h.baton.backend.outbound(s))[0]).toMatchObject({ status: 'read', providerMessageId: id });
  });

  it('a status reported before the send is answered applies once the send is recorded', async () => {
    const u = '15550006667';
    const id = 'wamid.early.1';
    // Graph delivers the message and reports it before it answers the send (WhatsApp may).
    h.graph.failNext(1, {
      status: 200,
      delayMs: 600,
      body: { messaging_product: 'whatsapp', contacts: [{ input: `+${u}`, wa_id: u }], messages: [{ id }] },
    });
    await h.post(webhook([text(u, 'hi', 1_750_000_000)]));
    await h.graph.waitForArrival((b) => b.to === `+${u}`);
    const failed = statusWebhook(id, 'failed', u, 1_750_000_001) as {
      entry: Array<{ changes: Array<{ value: { statuses: Array<Record<string, unknown>> } }> }>;
    };
    failed.entry[0]!.changes[0]!.value.statuses[0]!.errors = [
      { code: 131026, title: 'Message undeliverable', error_data: { details: 'Receiver is incapable' } },
    ];
    expect((await h.post(failed)).status).toBe(200);
    const record = await h.until(async () => {
      const s = (await h.baton.backend.findSessions(u))[0];
      const o = s && (await h.baton.backend.outbound(s))[0];
      return o?.providerMessageId === id && o;
    });
    expect(record).toMatchObject({ status: 'failed', lastError: '131026: Receiver is incapable' });
  });
});

describe('storage unavailable', () => {
  it('a store that answers but refuses writes (a full disk) makes /readyz answer 503', async () => {
    const h2 = await startHarness();
    try {
      // A real SQLITE_FULL: the database may not grow past its current size.
      const db = (
        h2.baton.backend as unknown as {
          store: { db: { pragma(s: string, o?: { simple: boolean }): unknown } };
        }
      ).store.db;
      const pages = Number(db.pragma('page_count', { simple: true }));
      db.pragma(`max_page_count = ${pages}`);
      const big = 'x'.repeat(200_000);
      const r = await h2.post(webhook([text('15550005556', big, 1_750_000_000)]));
      expect(r.status).toBe(503);
      const ready = await fetch(`${h2.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ok: false, checks: { sqlite: true, writes: false } });
      // Room again: the next webhook stored says the store takes writes, without waiting out
      // the 5 s hold (outside test QA33-F3: /readyz lagged 3-6 s behind the store).
      db.pragma('max_page_count = 1073741823');
      expect((await h2.post(webhook([text('15550005556', 'hi', 1_750_000_001)]))).status).toBe(200);
      const back = await fetch(`${h2.url}/readyz`);
      expect(await back.json()).toMatchObject({ ok: true, checks: { sqlite: true, writes: true } });
      expect(back.status).toBe(200);
    } finally {
      await h2.close();
    }
  });

  it('answers 503 so Meta retries', async () => {
    const h2 = await startHarness();
    try {
      await h2.baton.backend.close();
      const r = await h2.post(webhook([text('15550005555', 'hi', 1_750_000_000)]));
      expect(r.status).toBe(503);
      const ready = await fetch(`${h2.url}/readyz`);
      expect(ready.status).toBe(503);
    } finally {
      await h2.close();
    }
  });
});

/** Writes `raw` to a new connection to `port` on this machine; resolves with all it was answered once the server closed it. */
function untilClosed(port: string, raw: string): Promise<string> {
  return new Promise<string>((resolve) => {
    const s = connect(Number(port), '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got));
    s.write(raw);
  });
}
