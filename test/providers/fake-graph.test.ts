import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

const message = (to: string) => ({ messaging_product: 'whatsapp', to, type: 'text', text: { body: 'hi' } });

describe('fake Graph API', () => {
  let fake: FakeGraph;

  beforeAll(async () => {
    fake = await startFakeGraph();
  });
  afterEach(() => fake.reset());
  afterAll(() => fake.close());

  it('answers like Graph and numbers message ids', async () => {
    const res = await post(`${fake.url}/v21.0/PNID/messages`, message('+15550001111'));
    expect(res.status).toBe(200);
    const json = (await res.json()) as { contacts: unknown[]; messages: Array<{ id: string }> };
    expect(json.contacts).toEqual([{ input: '+15550001111', wa_id: '15550001111' }]);
    expect(json.messages[0]?.id).toMatch(/^wamid\.fake\.\d+$/);
    expect(fake.sent[0]).toMatchObject({ route: 'graph', phoneNumberId: 'PNID', status: 200, ok: true });
    expect(fake.sent[0]?.at).toBeTypeOf('number');
  });

  it('accepts the route without a version prefix and answers 404 elsewhere', async () => {
    expect((await post(`${fake.url}/PNID/messages`, message('1'))).status).toBe(200);
    expect((await post(`${fake.url}/PNID/media`, message('1'))).status).toBe(404);
    expect((await fetch(`${fake.url}/PNID/messages`)).status).toBe(404);
  });

  it('refuses a body without messaging_product or recipient, with Graph code 100', async () => {
    const res = await post(`${fake.url}/PNID/messages`, { to: '1' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(100);
    expect(fake.sent).toHaveLength(0);
    expect(fake.requests).toHaveLength(1);
  });

  it('plays scripted failures in order, then succeeds', async () => {
    fake.failNext(2, { status: 400, graphCode: 130429 });
    fake.failNext(1, { status: 429, retryAfter: 3 });
    const a = await post(`${fake.url}/P/messages`, message('1'));
    const b = await post(`${fake.url}/P/messages`, message('1'));
    const c = await post(`${fake.url}/P/messages`, message('1'));
    const d = await post(`${fake.url}/P/messages`, message('1'));
    expect([a.status, b.status, c.status, d.status]).toEqual([400, 400, 429, 200]);
    expect(((await a.json()) as { error: { code: number } }).error.code).toBe(130429);
    expect(c.headers.get('retry-after')).toBe('3');
    expect(fake.requests.map((r) => r.ok)).toEqual([false, false, false, true]);
    expect(fake.sent).toHaveLength(1);
  });

  it('waitFor resolves for a past send at once and for a future one when it lands', async () => {
    await post(`${fake.url}/P/messages`, message('past'));
    await expect(fake.waitFor((c) => c.body.to === 'past', 100)).resolves.toMatchObject({
      body: { to: 'past' },
    });
    const future = fake.waitFor((c) => c.body.to === 'future', 2_000);
    await post(`${fake.url}/P/messages`, message('future'));
    await expect(future).resolves.toMatchObject({ body: { to: 'future' } });
  });

  it('waitFor ignores failed attempts; waitForRequest sees them', async () => {
    fake.failNext(1, { status: 500 });
    const accepted = fake.waitFor((c) => c.body.to === 'x', 2_000);
    const any = fake.waitForRequest((c) => c.body.to === 'x', 2_000);
    await post(`${fake.url}/P/messages`, message('x'));
    await expect(any).resolves.toMatchObject({ status: 500, ok: false });
    await post(`${fake.url}/P/messages`, message('x'));
    await expect(accepted).resolves.toMatchObject({ status: 200, ok: true });
  });

  it('waitFor rejects after its timeout with a useful message', async () => {
    await expect(fake.waitFor(() => false, 20)).rejects.toThrow(/no accepted send matched within 20 ms/);
  });

  it('waitForSent resolves once enough sends landed', async () => {
    const three = fake.waitForSent(3, 2_000);
    for (const to of ['a', 'b', 'c']) await post(`${fake.url}/P/messages`, message(to));
    expect((await three).map((c) => c.body.to)).toEqual(['a', 'b', 'c']);
  });

  it('serves the WASender route', async () => {
    const res = await post(`${fake.url}/api/send-message`, { to: '+1555', text: 'hi' });
    const json = (await res.json()) as { success: boolean; data: { msgId: number; jid: string } };
    expect(json.success).toBe(true);
    expect(json.data.jid).toBe('+1555');
    expect(fake.sent[0]).toMatchObject({ route: 'wasender', providerMessageId: String(json.data.msgId) });
  });

  it('checks the bearer token when configured', async () => {
    const strict = await startFakeGraph({ accessToken: 'tok' });
    try {
      expect((await post(`${strict.url}/P/messages`, message('1'))).status).toBe(401);
      expect(
        (await post(`${strict.url}/P/messages`, message('1'), { authorization: 'Bearer tok' })).status,
      ).toBe(200);
    } finally {
      await strict.close();
    }
  });
});

describe('fake Graph API: scripted successes', () => {
  it('counts a scripted 2xx (a slow success) as sent, with its message id', async () => {
    const fake = await startFakeGraph();
    try {
      fake.failNext(1, { status: 200, delayMs: 10, body: { messages: [{ id: 'wamid.slow' }] } });
      const res = await post(`${fake.url}/P/messages`, message('1'));
      expect(((await res.json()) as { messages: Array<{ id: string }> }).messages[0]?.id).toBe('wamid.slow');
      expect(fake.sent).toMatchObject([{ status: 200, ok: true, providerMessageId: 'wamid.slow' }]);
    } finally {
      await fake.close();
    }
  });
});
