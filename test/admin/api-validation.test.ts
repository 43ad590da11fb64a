/**
 * Every admin route and the webhook handshake, through Fastify's inject() and through a real
 * listening server: 401 without the token, 400 `{error, code}` with a registered code for every
 * bad query parameter, id or body, never 500.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.ts';
import { ADMIN_TOKEN, startHarness, VERIFY_TOKEN, type Harness } from '../support/harness.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';

let h: Harness;
const USER = '15550301001';

beforeAll(async () => {
  h = await startHarness();
  expect((await h.post(webhook([text(USER, 'hi', 1_750_000_000)]))).status).toBe(200);
  await h.settled(USER, 1);
});
afterAll(async () => {
  await h.close();
});

interface Answer {
  status: number;
  body: string;
}

type Transport = 'inject' | 'http';

async function call(
  via: Transport,
  method: string,
  path: string,
  opts: { token?: string | null; body?: string; contentType?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  if (via === 'inject') {
    const r = await h.baton.server.inject({
      method: method as 'GET',
      url: path,
      headers,
      ...(opts.body !== undefined ? { payload: opts.body } : {}),
    });
    return { status: r.statusCode, body: r.body };
  }
  const r = await fetch(`${h.url}${path}`, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  return { status: r.status, body: await r.text() };
}

/** Every admin route, with a valid id where it takes one. */
const ROUTES: Array<[string, string, string?]> = [
  ['GET', '/admin/api/sessions'],
  ['GET', `/admin/api/sessions/${USER}`],
  ['GET', `/admin/api/sessions/${USER}/transitions`],
  ['GET', `/admin/api/sessions/${USER}/outbound`],
  ['GET', `/admin/api/sessions/${USER}/messages`],
  ['GET', `/admin/api/sessions/${USER}/lease`],
  ['DELETE', `/admin/api/sessions/${USER}/lock`],
  ['POST', `/admin/api/sessions/${USER}/reset`],
  ['GET', '/admin/api/stats'],
  ['GET', '/admin/api/dead-letters'],
  ['POST', '/admin/api/dead-letters/nope/replay'],
  ['GET', '/admin/api/flows'],
  ['GET', '/admin/api/flows/order/graph'],
  ['GET', '/admin/api/flows/order/map'],
  ['GET', '/admin/api/inbox'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{"agent":"Ana"}'],
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, '{"text":"hello"}'],
  ['DELETE', `/admin/api/sessions/${USER}/agent`, '{"step":"ask_name"}'],
];

/** Bad requests per route: [method, path, body?, what is wrong]. */
const BAD: Array<[string, string, string | undefined, string]> = [
  ['GET', '/admin/api/sessions?limit=1.5', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=0', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=-1', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=abc', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=501', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=1e3', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=', undefined, 'limit'],
  ['GET', '/admin/api/sessions?limit=2&limit=3', undefined, 'limit'],
  ['GET', '/admin/api/sessions?cursor=garbage', undefined, 'cursor'],
  ['GET', `/admin/api/sessions?cursor=${Buffer.from('[1,2]').toString('base64url')}`, undefined, 'cursor'],
  ['GET', `/admin/api/sessions?cursor=${Buffer.from('{"a":1}').toString('base64url')}`, undefined, 'cursor'],
  ['GET', '/admin/api/sessions?cursor=%E2%98%83', undefined, 'cursor'],
  ['GET', '/admin/api/sessions?needs_agent=maybe', undefined, 'needs_agent'],
  ['GET', '/admin/api/sessions?step=', undefined, 'step'],
  ['GET', '/admin/api/sessions?channel=a%20b', undefined, 'channel'],
  ['GET', '/admin/api/sessions?colour=red', undefined, 'colour'],
  ['GET', `/admin/api/sessions/${'9'.repeat(129)}`, undefined, 'waId'],
  ['GET', '/admin/api/sessions/a%20b', undefined, 'waId'],
  ['GET', '/admin/api/sessions/a%00b', undefined, 'waId'],
  ['GET', '/admin/api/sessions?step=%00', undefined, 'step'],
  [
    'GET',
    `/admin/api/sessions?cursor=${Buffer.from('["\\u0000","x"]').toString('base64url')}`,
    undefined,
    'cursor',
  ],
  ['GET', '/admin/api/sessions/a%EF%BF%BDb', undefined, 'waId'],
  ['GET', `/admin/api/sessions/${USER}?channel=1&channel=2`, undefined, 'channel'],
  ['GET', `/admin/api/sessions/${USER}?x=1`, undefined, 'x'],
  ['GET', `/admin/api/sessions/${USER}/transitions?channel=`, undefined, 'channel'],
  ['GET', `/admin/api/sessions/${USER}/transitions?cursor=garbage`, undefined, 'cursor'],
  ['GET', `/admin/api/sessions/${USER}/transitions?limit=0`, undefined, 'limit'],
  ['GET', `/admin/api/sessions/${USER}/outbound?limit=5`, undefined, 'limit'],
  ['GET', `/admin/api/sessions/${USER}/messages?limit=1.5`, undefined, 'limit'],
  ['GET', `/admin/api/sessions/${USER}/messages?cursor=garbage`, undefined, 'cursor'],
  [
    'GET',
    `/admin/api/sessions/${USER}/messages?cursor=${Buffer.from('["a","b","c"]').toString('base64url')}`,
    undefined,
    'cursor',
  ],
  ['GET', `/admin/api/sessions/${USER}/lease?channel=a&channel=b`, undefined, 'channel'],
  ['DELETE', '/admin/api/sessions/a%20b/lock', undefined, 'waId'],
  ['DELETE', `/admin/api/sessions/${USER}/lock`, '{"force":true}', 'body'],
  ['POST', `/admin/api/sessions/${USER}/reset`, '{"hard":true}', 'body'],
  ['POST', `/admin/api/sessions/${USER}/reset`, '[]', 'body'],
  ['POST', `/admin/api/sessions/${USER}/reset`, '{"unterminated', 'json'],
  ['GET', '/admin/api/stats?verbose=1', undefined, 'verbose'],
  ['GET', '/admin/api/dead-letters?limit=1.5', undefined, 'limit'],
  ['GET', '/admin/api/dead-letters?limit=100000', undefined, 'limit'],
  ['POST', `/admin/api/dead-letters/${'x'.repeat(601)}/replay`, undefined, 'id'],
  ['POST', '/admin/api/dead-letters/abc/replay', '{"now":true}', 'body'],
  ['GET', '/admin/api/flows?all=1', undefined, 'all'],
  ['GET', `/admin/api/flows/${'f'.repeat(201)}/graph`, undefined, 'id'],
  ['GET', '/admin/api/flows/order/map?x=1', undefined, 'x'],
  ['GET', '/admin/api/inbox?limit=1.5', undefined, 'limit'],
  ['GET', '/admin/api/inbox?needs_agent=true', undefined, 'needs_agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, undefined, 'body'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{}', 'agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{"agent":""}', 'agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{"agent":"   "}', 'agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{"agent":42}', 'agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, `{"agent":"${'a'.repeat(101)}"}`, 'agent'],
  ['POST', `/admin/api/sessions/${USER}/agent`, '{"agent":"Ana","role":"boss"}', 'role'],
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, '{}', 'text'],
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, '{"text":"  "}', 'text'],
  // Zero-width spaces and a joiner alone: an invisible message (outside test Q9).
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, '{"text":"\\u200b \\u200b\\u2060"}', 'text'],
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, '{"text":["a"]}', 'text'],
  ['POST', `/admin/api/sessions/${USER}/agent/messages`, `{"text":"${'a'.repeat(4097)}"}`, 'text'],
  ['DELETE', `/admin/api/sessions/${USER}/agent`, undefined, 'body'],
  ['DELETE', `/admin/api/sessions/${USER}/agent`, '{"step":""}', 'step'],
  ['DELETE', `/admin/api/sessions/${USER}/agent`, '{"step":7}', 'step'],
];

describe.each<Transport>(['inject', 'http'])('admin API over %s', (via) => {
  it.each(ROUTES)('%s %s answers 401 without the token and with a wrong one', async (method, path, body) => {
    for (const token of [null, 'wrong', `${ADMIN_TOKEN}x`, '']) {
      const r = await call(via, method, path, { token, ...(body !== undefined ? { body } : {}) });
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body)).toEqual({ error: expect.any(String), code: 'BATON_ERR_UNAUTHORIZED' });
    }
  });

  it('reads the Bearer scheme in any case, and nothing but Bearer', async () => {
    for (const [authorization, status] of [
      [`bearer ${ADMIN_TOKEN}`, 200],
      [`BEARER ${ADMIN_TOKEN}`, 200],
      [`Bearer  ${ADMIN_TOKEN} `, 200],
      [`Basic ${ADMIN_TOKEN}`, 401],
      [`Bearer ${ADMIN_TOKEN.toUpperCase()}x`, 401],
      [`Bearer${ADMIN_TOKEN}`, 401],
    ] as const) {
      const r =
        via === 'inject'
          ? (
              await h.baton.server.inject({
                method: 'GET',
                url: '/admin/api/stats',
                headers: { authorization },
              })
            ).statusCode
          : (await fetch(`${h.url}/admin/api/stats`, { headers: { authorization } })).status;
      expect(r, authorization).toBe(status);
    }
  });

  it('says why a limit is refused: out of range is not "not a whole number" (outside test QA32-F4)', async () => {
    const error = async (limit: string): Promise<string> =>
      (JSON.parse((await call(via, 'GET', `/admin/api/sessions?limit=${limit}`)).body) as { error: string })
        .error;
    expect(await error('-1')).toContain('limit must be a whole number from 1 to 500');
    expect(await error('1000000000')).toContain('limit must be a whole number from 1 to 500');
    expect(await error('0')).toContain('limit must be at least 1');
    expect(await error('501')).toContain('limit must be at most 500');
    expect(await error('1.5')).toMatch(/limit must be a whole number(?! from)/);
  });

  it('says in words what a body must be, not zod\'s "expected object, received null" (outside test QA81-F4)', async () => {
    const error = async (method: string, path: string, body?: string): Promise<string> =>
      (
        JSON.parse((await call(via, method, path, body === undefined ? {} : { body })).body) as {
          error: string;
        }
      ).error;
    const messages = `/admin/api/sessions/${USER}/agent/messages`;
    for (const body of [undefined, 'null', '[]', '"hello"', '7']) {
      expect(await error('POST', messages, body)).toBe('body: must be a JSON object');
      expect(await error('DELETE', `/admin/api/sessions/${USER}/agent`, body)).toBe(
        'body: must be a JSON object',
      );
    }
    expect(await error('POST', messages, '{}')).toBe('body: text is required (a string)');
    expect(await error('POST', messages, '{"text":1}')).toBe('body: text must be a string');
    expect(await error('DELETE', `/admin/api/sessions/${USER}/agent`, '{}')).toBe(
      'body: step is required (a string)',
    );
    // A call that takes no body says so; a body that may be left out says that.
    expect(await error('DELETE', `/admin/api/sessions/${USER}/lock`, '[]')).toBe(
      'body: must be empty or {}: this call takes no body',
    );
    expect(await error('POST', `/admin/api/sessions/${USER}/reset`, '"x"')).toBe(
      'body: must be a JSON object',
    );
    expect(await error('POST', `/admin/api/sessions/${USER}/reset`, '{"agent":7}')).toBe(
      'body: agent must be a string',
    );
  });

  it.each(BAD)('%s %s (body %s) answers 400 naming %s', async (method, path, body, what) => {
    const r = await call(via, method, path, body !== undefined ? { body } : {});
    expect(r.status).toBe(400);
    const json = JSON.parse(r.body) as { error: string; code: keyof typeof ERROR_CODES };
    expect(json.error).toEqual(expect.any(String));
    expect(Object.keys(ERROR_CODES)).toContain(json.code);
    expect(ERROR_CODES[json.code].status).toBe(400);
    if (what !== 'body' && what !== 'json') expect(json.error).toContain(what);
    if (what === 'json') expect(json.code).toBe('BATON_ERR_BAD_JSON');
    else expect(json.code).toBe('BATON_ERR_BAD_REQUEST');
  });

  it('a path segment over the router limit gets a short 400, not its whole path quoted back (outside test QA117-F2)', async () => {
    const r = await call(via, 'GET', `/admin/api/sessions/${'9'.repeat(10_000)}`);
    expect(r.status).toBe(400);
    const json = JSON.parse(r.body) as { error: string; code: string };
    expect(json.code).toBe('BATON_ERR_BAD_REQUEST');
    expect(json.error).toMatch(/max param length/);
    expect(json.error.length).toBeLessThanOrEqual(300);
    expect(r.body.length).toBeLessThan(500);
  });

  it.each([
    ['application/x-www-form-urlencoded', 'text=hello'],
    ['text/plain', 'x'],
    ['application/octet-stream', '{"text":"hi"}'],
  ])('answers 415 with a code for a %s body, and takes an empty one as none', async (contentType, body) => {
    const r = await call(via, 'POST', `/admin/api/sessions/${USER}/agent/messages`, { body, contentType });
    expect(r.status).toBe(415);
    expect(JSON.parse(r.body)).toEqual({
      error: 'Admin API bodies must be application/json',
      code: 'BATON_ERR_UNSUPPORTED_MEDIA_TYPE',
    });
    const empty = await call(via, 'DELETE', `/admin/api/sessions/${USER}/lock?channel=${PHONE_ID}`, {
      body: '',
      contentType,
    });
    expect(empty.status).toBe(200);
  });

  it('answers 404 with a code for an unknown route, session, flow or dead letter', async () => {
    for (const path of [
      '/admin/api/nope',
      '/admin/api/sessions/15550309999',
      '/admin/api/flows/nope/graph',
      '/admin/api/flows/nope/map',
    ]) {
      const r = await call(via, 'GET', path);
      expect(r.status).toBe(404);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    }
    const r = await call(via, 'POST', '/admin/api/dead-letters/nope/replay');
    expect(r.status).toBe(404);
  });

  it('still answers good requests', async () => {
    const r = await call(
      via,
      'GET',
      `/admin/api/sessions?limit=1&step=ask_name&needs_agent=false&channel=${PHONE_ID}`,
    );
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ sessions: [{ wa_id: USER }] });
    expect((await call(via, 'GET', `/admin/api/sessions/${USER}?channel=${PHONE_ID}`)).status).toBe(200);
    expect((await call(via, 'GET', '/admin/api/dead-letters?limit=500')).status).toBe(200);
  });

  describe('GET /webhooks/whatsapp (handshake)', () => {
    const ok = { 'hub.mode': 'subscribe', 'hub.verify_token': VERIFY_TOKEN, 'hub.challenge': '42' };
    const qs = (extra: string): string => `/webhooks/whatsapp?${new URLSearchParams(ok).toString()}${extra}`;

    it('403, not 400 or 500, when hub.challenge is given twice or is too long (SPEC 3: "otherwise 403")', async () => {
      const twice = await call(via, 'GET', qs(`&hub.challenge=43`), { token: null });
      expect(twice.status).toBe(403);
      expect(JSON.parse(twice.body)).toMatchObject({ code: 'BATON_ERR_VERIFY_TOKEN' });
      const long = await call(via, 'GET', qs('').replace('=42', `=${'9'.repeat(513)}`), { token: null });
      expect(long.status).toBe(403);
      // Said as what it is, not as a token that does not match (outside test QA76-F8).
      expect(JSON.parse(long.body)).toMatchObject({
        code: 'BATON_ERR_VERIFY_TOKEN',
        error: expect.stringContaining('hub.challenge must be given once, at most 512 characters'),
      });
      const longest = await call(via, 'GET', qs('').replace('=42', `=${'9'.repeat(512)}`), { token: null });
      expect(longest).toEqual({ status: 200, body: '9'.repeat(512) });
    });

    it.each(['hub.mode', 'hub.verify_token'])(
      '403 when %s is given twice (it matches nothing)',
      async (p) => {
        const twice = await call(via, 'GET', qs(`&${p}=${p === 'hub.mode' ? 'subscribe' : VERIFY_TOKEN}`), {
          token: null,
        });
        expect(twice.status).toBe(403);
        const long = await call(via, 'GET', qs('').replace(VERIFY_TOKEN, 'x'.repeat(5000)), { token: null });
        expect(long.status).toBe(403);
      },
    );

    it('still answers the challenge and refuses a wrong token with 403', async () => {
      const good = await call(via, 'GET', qs(''), { token: null });
      expect(good).toEqual({ status: 200, body: '42' });
      const bad = await call(via, 'GET', qs('').replace(VERIFY_TOKEN, 'nope'), { token: null });
      expect(bad.status).toBe(403);
      expect(JSON.parse(bad.body)).toMatchObject({
        code: 'BATON_ERR_VERIFY_TOKEN',
        error: expect.any(String),
      });
    });
  });
});

describe('admin API answers', () => {
  it('find a session by its number written as a phone number, as the Find box does (outside test D11)', async () => {
    const user = '15550731001';
    expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
    await h.settled(user, 1);
    for (const typed of ['+15550731001', '+1 555-073-1001', '+1 (555) 073 1001']) {
      const r = await h.admin(`/sessions/${encodeURIComponent(typed)}`);
      expect(r.status, typed).toBe(200);
      expect(((await r.json()) as { wa_id: string }).wa_id).toBe(user);
    }
    // Not a phone number: taken as it is (and not found).
    expect((await h.admin('/sessions/1555-073-1001')).status).toBe(404);
  });

  it('a sender whose wa_id a gateway wrote as +E164 is stored by its digits, so the API names it (outside test QA83-F1)', async () => {
    const user = '15550731002';
    expect((await h.post(webhook([text(`+${user}`, 'hi', 1_750_000_000)]))).status).toBe(200);
    const s = await h.settled(user, 1);
    expect(s.wa_id).toBe(user);
    for (const named of [user, `+${user}`]) {
      const r = await h.admin(`/sessions/${encodeURIComponent(named)}/reset`, { method: 'POST' });
      expect(r.status, named).toBe(200);
    }
    // Its replies go to +E164, with one plus.
    await h.graph.waitFor((c) => String(c.body.to).endsWith(user));
    const to = h.graph.sent.filter((c) => String(c.body.to).endsWith(user)).map((c) => c.body.to);
    expect(to).toEqual([`+${user}`]);
  });

  it('are kept by no cache and never sniffed, errors included (outside test X5)', async () => {
    for (const path of ['/sessions?limit=1', '/stats', '/sessions/15550000000', '/no-such-route']) {
      const r = await h.admin(path);
      expect(r.headers.get('cache-control'), path).toBe('no-store');
      expect(r.headers.get('x-content-type-options'), path).toBe('nosniff');
    }
  });
});
