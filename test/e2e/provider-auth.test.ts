/**
 * Every provider route is authenticated (issue 7, finding 1): a gateway whose secret is not
 * configured is off, a WASender webhook can never reach a Cloud API user's session, only JSON
 * bodies are read, and production refuses to start without the Meta app secret.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { parseCloudApiWebhookReport, signMetaBody } from '../../src/providers/index.ts';
import { APP_SECRET, startHarness, VERIFY_TOKEN, type Harness } from '../support/harness.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';

const WS_SECRET = 'wasender-secret';

function wasenderText(sessionId: string, user: string, body: string, ts: number, id: string): unknown {
  return {
    event: 'messages.received',
    timestamp: ts,
    sessionId,
    data: {
      messages: {
        key: { id, fromMe: false, remoteJid: `${user}@s.whatsapp.net`, cleanedSenderPn: user },
        messageBody: body,
        pushName: 'Mallory',
        messageTimestamp: ts,
        message: { conversation: body },
      },
    },
  };
}

function postWasender(url: string, body: unknown, secret?: string): Promise<Response> {
  return fetch(`${url}/webhooks/wasender`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(secret ? { 'x-webhook-signature': secret } : {}) },
    body: JSON.stringify(body),
  });
}

describe('a WASender route with no secret configured', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it('is off: 404, nothing stored, whatever the body claims', async () => {
    const user = '15550009001';
    for (const secret of [undefined, '', 'guess']) {
      const r = await postWasender(
        h.url,
        wasenderText(PHONE_ID, user, 'Mallory Hacker', 1_750_000_000, 'WS1'),
        secret,
      );
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ code: 'BATON_ERR_PROVIDER_OFF' });
    }
    expect(await h.baton.backend.findSessions(user)).toEqual([]);
    expect((await h.baton.backend.stats()).queueDepth).toBe(0);
  });
});

describe('unsigned webhooks from a web browser', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ WHATSAPP_APP_SECRET: '' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('are refused with 401, JSON or not: a cross-site form, or a page rebound to this machine', async () => {
    const user = '15550009002';
    const raw = JSON.stringify(webhook([text(user, 'hi', 1_750_000_000)]));
    const browser: Array<Record<string, string>> = [
      { origin: 'https://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
      { origin: 'null' },
    ];
    // JSON too: a page whose name is rebound to 127.0.0.1 is same-origin with this Baton, so its
    // `fetch` needs no CORS consent (DNS rebinding: the exact headers such a page sends).
    browser.push({ origin: 'http://attacker.example:4111', 'sec-fetch-site': 'same-origin' });
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json',
    ]) {
      for (const marks of browser) {
        const r = await fetch(`${h.url}/webhooks/whatsapp`, {
          method: 'POST',
          headers: { 'content-type': type, ...marks },
          body: raw,
        });
        expect(r.status).toBe(401);
        expect(await r.json()).toMatchObject({ code: 'BATON_ERR_BAD_SIGNATURE' });
      }
    }
    expect(await h.baton.backend.findSessions(user)).toEqual([]);
  });

  it('reads a JSON body whatever its label when no browser sent it (curl -d posts it as a form)', async () => {
    const raw = JSON.stringify(webhook([text('15550009003', 'hi', 1_750_000_000)]));
    const form = await fetch(`${h.url}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: raw,
    });
    expect(form.status).toBe(200);
    const bare = await fetch(`${h.url}/webhooks/whatsapp`, {
      method: 'POST',
      body: new Uint8Array(Buffer.from(JSON.stringify(webhook([text('15550009004', 'hi', 1_750_000_000)])))),
    });
    expect(bare.status).toBe(200);
    await h.settled('15550009003', 1);
    await h.settled('15550009004', 1);
    const notJson = await fetch(`${h.url}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hub.mode=subscribe',
    });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ code: 'BATON_ERR_BAD_JSON' });
  });
});

describe('a signed webhook labelled other than application/json', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is read: its signature, not its label, says who sent it', async () => {
    const user = '15550009005';
    const raw = Buffer.from(JSON.stringify(webhook([text(user, 'hi', 1_750_000_000)])));
    const signed = await fetch(`${h.url}/webhooks/whatsapp`, {
      method: 'POST',
      headers: {
        'content-type': 'text/plain',
        origin: 'https://evil.example',
        'x-hub-signature-256': signMetaBody(raw, APP_SECRET),
      },
      body: new Uint8Array(raw),
    });
    expect(signed.status).toBe(200);
    await h.settled(user, 1);
    const forged = await fetch(`${h.url}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'https://evil.example' },
      body: new Uint8Array(raw),
    });
    expect(forged.status).toBe(401);
  });

  it('is read after a UTF-8 byte-order mark, signed with the mark (outside test QA139-F3)', async () => {
    const user = '15550009006';
    const json = Buffer.from(JSON.stringify(webhook([text(user, 'hi', 1_750_000_000)])));
    const raw = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json]);
    const post = (body: Buffer, signedOver: Buffer): Promise<Response> =>
      fetch(`${h.url}/webhooks/whatsapp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-hub-signature-256': signMetaBody(signedOver, APP_SECRET),
        },
        body: new Uint8Array(body),
      });
    // The signature covers the bytes as they came: one over the JSON alone does not do.
    expect((await post(raw, json)).status).toBe(401);
    expect((await post(raw, raw)).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.session(user))?.current_step).toBe('ask_name');
  });
});

describe('a WASender webhook naming a Cloud API channel', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ WASENDER_WEBHOOK_SECRET: WS_SECRET, WASENDER_API_KEY: 'ws-key' });
  });
  afterAll(async () => {
    await h.close();
  });

  it("never reaches the Cloud API user's session: it lands on a WASender channel", async () => {
    const victim = '15550009003';
    const ts = 1_750_000_000;
    expect((await h.post(webhook([text(victim, 'hi', ts)]))).status).toBe(200);
    await h.settled(victim, 1);
    const before = await h.session(victim);
    expect(before).toMatchObject({ channel: PHONE_ID, current_step: 'ask_name', data: {} });

    // Mallory knows the WASender secret (or it leaked) and names the Cloud API phone_number_id.
    const r = await postWasender(
      h.url,
      wasenderText(PHONE_ID, victim, 'Mallory Hacker', ts + 1, 'WS-EVIL-1'),
      WS_SECRET,
    );
    expect(r.status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(victim)).length === 2);
    await h.until(async () => (await h.baton.backend.stats()).queueDepth === 0);

    const after = await h.session(victim);
    expect(after).toEqual(before);
    const sessions = await h.baton.backend.findSessions(victim);
    expect(sessions.map((s) => s.channel).sort()).toEqual([PHONE_ID, `wasender:${PHONE_ID}`]);
    // Nothing went to the victim through the Cloud API but the one name prompt.
    const cloudSends = h.graph.sent.filter((c) => c.route !== 'wasender' && c.body.to === `+${victim}`);
    expect(cloudSends).toHaveLength(1);
    expect(JSON.stringify(cloudSends)).not.toContain('Mallory');
  });

  it("a WASender key id is no redelivery of another user's message, nor of a Cloud API wamid", async () => {
    const ts = 1_750_000_100;
    const cloudUser = '15550009005';
    const [ana, ben] = ['15550009006', '15550009007'];
    const cloud = webhook([text(cloudUser, 'hi', ts)]) as {
      entry: { changes: { value: { messages: { id: string }[] } }[] }[];
    };
    const wamid = cloud.entry[0]!.changes[0]!.value.messages[0]!.id;
    expect((await h.post(cloud)).status).toBe(200);
    // Key ids are made by the senders' phones: two users' messages may share one, and a message
    // may carry what is a Cloud API wamid elsewhere.
    for (const [user, id] of [
      [ana, wamid],
      [ana, '3EB0SAME'],
      [ben, '3EB0SAME'],
    ] as const) {
      const r = await postWasender(h.url, wasenderText('ws-shop', user, 'hi', ts, id), WS_SECRET);
      expect(await r.json()).toMatchObject({ received: 1 });
    }
    // The same delivery again is a redelivery.
    const again = await postWasender(h.url, wasenderText('ws-shop', ben, 'hi', ts, '3EB0SAME'), WS_SECRET);
    expect(await again.json()).toMatchObject({ received: 0, duplicates: 1 });
    await h.settled(cloudUser, 1);
    for (const user of [ana, ben]) {
      await h.until(async () => (await h.baton.backend.findSessions(user))[0]?.version !== undefined);
    }
    await h.until(async () => (await h.baton.backend.stats()).queueDepth === 0);
    const anaLog = await h.baton.backend.transitions({ channel: 'wasender:ws-shop', user: ana });
    expect(anaLog.flatMap((t) => t.message_ids).sort()).toEqual([
      'wasender:ws-shop:15550009006:3EB0SAME',
      `wasender:ws-shop:15550009006:${wamid}`,
    ]);
    const benLog = await h.baton.backend.transitions({ channel: 'wasender:ws-shop', user: ben });
    expect(benLog.flatMap((t) => t.message_ids)).toEqual(['wasender:ws-shop:15550009007:3EB0SAME']);
  });

  it('a Cloud API webhook naming a WASender channel is not applied either', () => {
    const body = webhook([text('15550009004', 'hi', 1_750_000_000)]) as {
      entry: { changes: { value: { metadata: { phone_number_id: string } } }[] }[];
    };
    body.entry[0]!.changes[0]!.value.metadata.phone_number_id = 'wasender:ws-session-1';
    const report = parseCloudApiWebhookReport(body);
    expect(report.batch.messages).toHaveLength(0);
    expect(report.skipped[0]?.reason).toMatch(/WASender channel/);
  });
});

describe('WHATSAPP_APP_SECRET under NODE_ENV=production', () => {
  it('is required, naming the variable, unless BATON_ALLOW_UNSIGNED=true', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/^WHATSAPP_APP_SECRET: /);
    expect(loadConfig({ NODE_ENV: 'production', BATON_ALLOW_UNSIGNED: 'true' }).allowUnsigned).toBe(true);
    expect(loadConfig({ NODE_ENV: 'production', WHATSAPP_APP_SECRET: 's' }).whatsapp.appSecret).toBe('s');
    expect(() => loadConfig({ BATON_ALLOW_UNSIGNED: 'yes' })).toThrow(/^BATON_ALLOW_UNSIGNED: /);
    expect(loadConfig({}).whatsapp.appSecret).toBeUndefined();
  });

  it('reads NODE_ENV in any case and spacing', () => {
    for (const env of ['Production', 'PRODUCTION', 'production ']) {
      expect(() => loadConfig({ NODE_ENV: env })).toThrow(/^WHATSAPP_APP_SECRET: /);
    }
  });

  it('refuses a blank or space-padded secret, and a short ADMIN_TOKEN in production', () => {
    // The tokens too: a blank verify token let anyone pass the handshake with `hub.verify_token=%20`
    // (outside tester's S1), and a blank access or API key sent every reply with an empty bearer.
    for (const name of [
      'WHATSAPP_APP_SECRET',
      'WASENDER_WEBHOOK_SECRET',
      'ADMIN_TOKEN',
      'WHATSAPP_VERIFY_TOKEN',
      'WHATSAPP_ACCESS_TOKEN',
      'WASENDER_API_KEY',
    ]) {
      expect(() => loadConfig({ [name]: ' ' })).toThrow(new RegExp(`^${name}: is blank`));
      expect(() => loadConfig({ [name]: ' s3cret' })).toThrow(new RegExp(`^${name}: has spaces`));
    }
    const prod = { NODE_ENV: 'production', WHATSAPP_APP_SECRET: 's' };
    expect(() => loadConfig({ ...prod, ADMIN_TOKEN: 'x' })).toThrow(/^ADMIN_TOKEN: must be at least 16/);
    expect(loadConfig({ ...prod, ADMIN_TOKEN: 'x'.repeat(16) }).adminToken).toBe('x'.repeat(16));
    expect(loadConfig({ ADMIN_TOKEN: 'x' }).adminToken).toBe('x');
  });
});

describe('a deployment on WASender alone under NODE_ENV=production (outside test QA96-F6)', () => {
  const wasenderOnly = {
    NODE_ENV: 'production',
    WASENDER_WEBHOOK_SECRET: WS_SECRET,
    WASENDER_API_KEY: 'ws-key',
    ADMIN_TOKEN: 'a-production-admin-token-long-enough-0123456789',
  };

  it('starts with the Cloud API route off; a secret or BATON_ALLOW_UNSIGNED turns it on', () => {
    expect(loadConfig(wasenderOnly).whatsapp.enabled).toBe(false);
    expect(loadConfig({ ...wasenderOnly, WHATSAPP_APP_SECRET: 's' }).whatsapp.enabled).toBe(true);
    expect(loadConfig({ ...wasenderOnly, BATON_ALLOW_UNSIGNED: 'true' }).whatsapp.enabled).toBe(true);
    // Not in production: the route takes unsigned posts from this machine (see below).
    expect(loadConfig({ ...wasenderOnly, NODE_ENV: 'development' }).whatsapp.enabled).toBe(true);
    // Without WASender either, the secret is required, and the message says both ways out.
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(
      /WASENDER_WEBHOOK_SECRET and the Cloud API route stays off/,
    );
  });

  it('answers an unsigned Cloud API post 404, even from this machine, and takes WASender webhooks', async () => {
    const h = await startHarness({ ...wasenderOnly, WHATSAPP_APP_SECRET: '' });
    try {
      const user = '15550009020';
      const r = await h.post(webhook([text(user, 'hi', 1_750_000_000)]), { signature: null });
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ code: 'BATON_ERR_PROVIDER_OFF' });
      expect(await h.baton.backend.findSessions(user)).toEqual([]);
      const w = await postWasender(
        h.url,
        wasenderText('ws-session', user, 'hi', 1_750_000_000, 'WS20'),
        WS_SECRET,
      );
      expect(w.status).toBe(200);
      await h.until(async () => (await h.baton.backend.findSessions(user)).length === 1);
    } finally {
      await h.close();
    }
  });
});

describe('a Cloud API route with no app secret configured', () => {
  const unsignedFrom = async (
    h: Harness,
    remoteAddress: string,
    user: string,
    headers: Record<string, string> = {},
  ): Promise<number> =>
    (
      await h.baton.server.inject({
        method: 'POST',
        url: '/webhooks/whatsapp',
        remoteAddress,
        headers: { 'content-type': 'application/json', ...headers },
        payload: JSON.stringify(webhook([text(user, 'hi', 1_750_000_000)])),
      })
    ).statusCode;

  it('reads a signed webhook whatever its Content-Type says, or if it has none (outside test X4)', async () => {
    const h = await startHarness();
    try {
      for (const [i, type] of [undefined, '', 'garbage', ';;;', 'text/plain', 'application/json'].entries()) {
        const body = JSON.stringify(webhook([text(`1555000960${i}`, 'hi', 1_750_000_000)]));
        const r = await h.baton.server.inject({
          method: 'POST',
          url: '/webhooks/whatsapp',
          headers: {
            'x-hub-signature-256': signMetaBody(body, APP_SECRET),
            ...(type === undefined ? {} : { 'content-type': type }),
          },
          payload: body,
        });
        expect(r.statusCode, JSON.stringify(type)).toBe(200);
        expect(r.json()).toEqual({ received: 1, duplicates: 0 });
      }
      // The handshake echoes the challenge as text that is never sniffed as markup.
      const v = await h.baton.server.inject({
        method: 'GET',
        url: `/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=%3Cb%3E1`,
      });
      expect(v.statusCode).toBe(200);
      expect(v.headers['x-content-type-options']).toBe('nosniff');
      expect(v.body).toBe('<b>1');
    } finally {
      await h.close();
    }
  });

  it('takes unsigned webhooks from this machine only; from anywhere with BATON_ALLOW_UNSIGNED=true', async () => {
    const h = await startHarness({ WHATSAPP_APP_SECRET: '' });
    try {
      expect(await unsignedFrom(h, '127.0.0.1', '15550009101')).toBe(200);
      expect(await unsignedFrom(h, '::1', '15550009102')).toBe(200);
      expect(await unsignedFrom(h, '::ffff:127.0.0.1', '15550009103')).toBe(200);
      for (const [i, address] of ['203.0.113.5', '10.0.0.7', '::ffff:192.168.1.9', '2001:db8::1'].entries()) {
        const user = `1555000920${i}`;
        expect(await unsignedFrom(h, address, user), address).toBe(401);
        expect(await h.baton.backend.findSessions(user)).toEqual([]);
      }
      // Relayed by a proxy on this machine (every client's connection looks local), or a remote
      // client claiming to be local: not from this machine.
      const relayed: Array<Record<string, string>> = [
        { 'x-forwarded-for': '203.0.113.9' },
        { forwarded: 'for=203.0.113.9' },
        { 'x-real-ip': '203.0.113.9' },
        { 'x-forwarded-for': '127.0.0.1' },
        // A tunnel's or CDN's own headers (outside test X2).
        { via: '1.1 tunnel' },
        { 'cf-connecting-ip': '203.0.113.9' },
        { 'true-client-ip': '203.0.113.9' },
        { 'fastly-client-ip': '203.0.113.9' },
        { 'x-forwarded-proto': 'https' },
        // Any of those families (outside test QA76-F7).
        { 'x-forwarded-server': 'proxy.example' },
        { 'x-forwarded-port': '443' },
        { 'x-envoy-external-address': '203.0.113.9' },
        // Other platforms' own (outside test QA78-F4).
        { 'x-cluster-client-ip': '203.0.113.9' },
        { 'fly-client-ip': '203.0.113.9' },
        { 'cloudfront-viewer-address': '203.0.113.9:443' },
        { 'cf-ray': '8a1b2c3d4e5f-LHR' },
      ];
      for (const [i, headers] of relayed.entries()) {
        expect(await unsignedFrom(h, '127.0.0.1', `1555000940${i}`, headers), JSON.stringify(headers)).toBe(
          401,
        );
      }
      // A proxy that adds no header (nginx's default proxy_pass) passes the name it was reached
      // by, or its upstream's, as Host (outside test QA64-F2); a loopback name is this machine.
      for (const [i, host] of [
        'baton.example.com',
        'baton_backend',
        '192.0.2.2:3000',
        'myhost:3000',
      ].entries()) {
        expect(await unsignedFrom(h, '127.0.0.1', `1555000970${i}`, { host }), host).toBe(401);
        expect(await h.baton.backend.findSessions(`1555000970${i}`)).toEqual([]);
      }
      for (const [i, host] of [
        'localhost:3000',
        'LOCALHOST',
        '127.0.0.1:3000',
        '[::1]:3000',
        'app.localhost',
      ].entries()) {
        expect(await unsignedFrom(h, '127.0.0.1', `1555000980${i}`, { host }), host).toBe(200);
      }
      // nginx speaks HTTP/1.0 to its upstream by default, naming it in Host: over a real socket.
      const body = JSON.stringify(webhook([text('15550009901', 'hi', 1_750_000_000)]));
      const { port } = new URL(h.url);
      const viaSocket = async (version: string): Promise<string> => {
        const socket = connect(Number(port), '127.0.0.1');
        socket.write(
          `POST /webhooks/whatsapp HTTP/${version}\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        let answer = '';
        for await (const chunk of socket) answer += String(chunk);
        return answer.split('\r\n', 1)[0]!;
      };
      expect(await viaSocket('1.0')).toMatch(/^HTTP\/1\.[01] 401 /);
      expect(await h.baton.backend.findSessions('15550009901')).toEqual([]);
      expect(await viaSocket('1.1')).toMatch(/^HTTP\/1\.1 200 /);
      // A second Host, or a request line in a proxy's absolute form (outside test QA76-F7).
      const raw = async (line: string, extra: string, user: string): Promise<string> => {
        const b = JSON.stringify(webhook([text(user, 'hi', 1_750_000_000)]));
        const socket = connect(Number(port), '127.0.0.1');
        socket.write(
          `${line}\r\nHost: localhost\r\n${extra}Connection: close\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`,
        );
        let answer = '';
        for await (const chunk of socket) answer += String(chunk);
        return answer.split('\r\n', 1)[0]!;
      };
      expect(await raw('POST /webhooks/whatsapp HTTP/1.1', 'Host: evil.example\r\n', '15550009902')).toMatch(
        / 401 /,
      );
      expect(await raw('POST http://evil.example/webhooks/whatsapp HTTP/1.1', '', '15550009903')).toMatch(
        / 401 /,
      );
      expect(await h.baton.backend.findSessions('15550009902')).toEqual([]);
      expect(await h.baton.backend.findSessions('15550009903')).toEqual([]);
    } finally {
      await h.close();
    }
    // A proxy trusted by position: a direct client's own X-Forwarded-For does not make it local.
    const trusting = await startHarness({ WHATSAPP_APP_SECRET: '', BATON_TRUST_PROXY: 'true' });
    try {
      expect(
        await unsignedFrom(trusting, '192.0.2.2', '15550009501', { 'x-forwarded-for': '127.0.0.1' }),
      ).toBe(401);
      expect(await unsignedFrom(trusting, '127.0.0.1', '15550009502')).toBe(200);
    } finally {
      await trusting.close();
    }
    const open = await startHarness({ WHATSAPP_APP_SECRET: '', BATON_ALLOW_UNSIGNED: 'true' });
    try {
      expect(await unsignedFrom(open, '203.0.113.5', '15550009301')).toBe(200);
    } finally {
      await open.close();
    }
  });
});
