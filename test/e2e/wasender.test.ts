import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';

const SECRET = 'wasender-secret';
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ WASENDER_WEBHOOK_SECRET: SECRET, WASENDER_API_KEY: 'ws-key' });
});
afterAll(async () => {
  await h.close();
});

let n = 0;
function received(user: string, body: string, ts: number): Record<string, unknown> {
  n += 1;
  return {
    event: 'messages.received',
    timestamp: ts,
    sessionId: 'ws-session-1',
    data: {
      messages: {
        key: { id: `3EB0WS${n}`, fromMe: false, remoteJid: `${user}@s.whatsapp.net`, cleanedSenderPn: user },
        messageBody: body,
        pushName: 'Ana',
        messageTimestamp: ts,
        message: { conversation: body },
      },
    },
  };
}

/** A message `user` wrote in the group `group`. */
function inGroup(user: string, group: string, body: string, ts: number): Record<string, unknown> {
  const m = received(user, body, ts) as { data: { messages: { key: Record<string, unknown> } } };
  m.data.messages.key = {
    ...m.data.messages.key,
    remoteJid: group,
    participant: `${user}@s.whatsapp.net`,
    cleanedParticipantPn: user,
    cleanedSenderPn: undefined,
  };
  return m;
}

describe('POST /webhooks/wasender', () => {
  const send = (body: unknown, secret: string | null = SECRET) =>
    fetch(`${h.url}/webhooks/wasender`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(secret ? { 'x-webhook-signature': secret } : {}) },
      body: JSON.stringify(body),
    });

  it('refuses a missing or wrong secret with 401 and a bad envelope with 400', async () => {
    expect((await send(received('15550123', 'hi', 1_750_000_000), null)).status).toBe(401);
    expect((await send(received('15550123', 'hi', 1_750_000_000), 'nope')).status).toBe(401);
    expect((await send({ nope: true })).status).toBe(400);
  });

  it('runs the order flow over WASender, choices answered by number, replies through its API', async () => {
    const u = '15550124';
    const ts = 1_750_000_000;
    for (const [i, text] of ['hi', 'Ana Lima', '2', 'Rua 1', '1'].entries()) {
      expect((await send(received(u, text, ts + i))).status).toBe(200);
      await h.until(async () => (await h.baton.backend.findSessions(u))[0]?.version === i + 1);
    }
    const s = (await h.baton.backend.findSessions(u))[0]!;
    expect(s).toMatchObject({
      channel: 'wasender:ws-session-1',
      step: 'completed',
      data: { customer_name: 'Ana Lima', product_id: 'sku_551a', shipping_address: 'Rua 1' },
    });
    const sends = await h.graph.waitForSent(5);
    const mine = sends.filter((c) => c.route === 'wasender');
    expect(mine.length).toBeGreaterThanOrEqual(5);
    expect(mine[0]!.headers.authorization).toBe('Bearer ws-key');
    expect(mine[1]!.body.text).toContain('1. Trail Shoe');
  });

  // SPEC 4: the conversation shows outbound as sent. WASender has no buttons: it was shown buttons
  // the user never saw, beside their typed "2" (outside test QA129-F3).
  it('shows a WASender user the numbered text they were sent, not buttons', async () => {
    const r = await h.admin('/sessions/15550124/messages?channel=wasender:ws-session-1');
    expect(r.status).toBe(200);
    const { messages: items } = (await r.json()) as {
      messages: { direction: string; type: string; text?: string }[];
    };
    const choice = items.find((i) => i.direction === 'out' && i.text?.startsWith('Thanks, Ana Lima'));
    expect(choice).toMatchObject({ type: 'text' });
    expect(choice!.text).toContain('\n\n1. Trail Shoe\n2. Rain Jacket\n3. Day Pack');
    expect(items.filter((i) => i.type === 'buttons')).toEqual([]);
  });

  it('a group message never reaches its sender\u2019s private conversation (outside test QA35-F1)', async () => {
    const u = '15550125';
    const group = '120363040000000777@g.us';
    const ts = 1_750_000_100;
    expect((await send(received(u, 'hi', ts))).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(u))[0]?.version === 1);
    // The user says something in a group, then their private answer, stamped before it, arrives.
    expect((await send(inGroup(u, group, 'lunch at 1?', ts + 20))).status).toBe(200);
    await h.until(async () => {
      const chat = (await h.baton.backend.findSessions(group))[0];
      return chat !== undefined && (await h.baton.backend.transitions(chat)).length === 1;
    });
    expect((await send(received(u, 'Ana Lima', ts + 5))).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(u))[0]?.version === 2);
    const mine = (await h.baton.backend.findSessions(u))[0]!;
    expect(mine).toMatchObject({ step: 'choose_product', data: { customer_name: 'Ana Lima' } });
    expect((await h.baton.backend.transitions(mine)).map((r) => r.kind)).toEqual(['advance', 'advance']);
    // The group's message: kept in the group's own session, as no input, and answered by nobody.
    const chat = (await h.baton.backend.findSessions(group))[0]!;
    expect(chat).toMatchObject({ channel: 'wasender:ws-session-1', user: group, version: 0 });
    expect((await h.baton.backend.transitions(chat)).map((r) => r.kind)).toEqual(['ignored']);
    expect(h.graph.requests.filter((c) => JSON.stringify(c.body).includes(group))).toEqual([]);
  });

  // An agent took a group's session and handed it back to the bot, whose prompt then went to every
  // member of the group (outside test QA129-F1). No act answers a shared chat.
  it('refuses an agent\u2019s take, message and hand-back, and an event, on a group\u2019s session', async () => {
    const group = '120363040000000888@g.us';
    expect((await send(inGroup('15550126', group, 'hello all', 1_750_000_200))).status).toBe(200);
    await h.until(async () => (await h.baton.backend.findSessions(group)).length === 1);
    const at = (path: string) =>
      `/sessions/${encodeURIComponent(group)}${path}?channel=wasender:ws-session-1`;
    const call = async (method: string, path: string, body: unknown) => {
      const r = await h.admin(at(path), {
        method,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as { code?: string; error?: string } };
    };
    const take = await call('POST', '/agent', { agent: 'Ana' });
    expect(take).toMatchObject({ status: 409, body: { code: 'BATON_ERR_SHARED_CHAT' } });
    expect(take.body.error).toContain(`${group} is a group`);
    for (const [method, path, body] of [
      ['POST', '/agent/messages', { text: 'hi all', agent: 'Ana' }],
      ['DELETE', '/agent', { step: 'ask_name' }],
      ['POST', '/events', { name: 'anything' }],
    ] as const)
      expect(await call(method, path, body)).toMatchObject({
        status: 409,
        body: { code: 'BATON_ERR_SHARED_CHAT' },
      });
    const chat = (await h.baton.backend.findSessions(group))[0]!;
    expect(chat).toMatchObject({ version: 0, needsAgent: false });
    expect(h.graph.requests.filter((c) => JSON.stringify(c.body).includes(group))).toEqual([]);
  });

  // A reply stored for a group (an earlier Baton let an agent hand its session back) is failed at
  // the send, and its dead letter is not replayed to the group (outside test QA132-F4).
  it('never sends a reply stored for a group, nor replays it', async () => {
    const group = '120363040000000999@g.us';
    const key = { channel: 'wasender:ws-session-1', user: group };
    await h.baton.backend.ingest({
      messages: [
        {
          id: 'g-1',
          provider: 'wasender',
          ...key,
          timestamp: 1_750_000_300,
          content: { type: 'text', body: 'hi' },
        },
      ],
      statuses: [],
    });
    let letters: { id: string; ref: string; user: string }[] = [];
    await h.until(async () => {
      const r = (await (await h.admin('/dead-letters')).json()) as { dead_letters: typeof letters };
      letters = r.dead_letters.filter((l) => l.user === group);
      return letters.length === 1;
    });
    const replay = await h.admin(`/dead-letters/${encodeURIComponent(letters[0]!.id)}/replay?confirm=true`, {
      method: 'POST',
    });
    expect(replay.status).toBe(409);
    expect(((await replay.json()) as { code: string }).code).toBe('BATON_ERR_SHARED_CHAT');
    expect(h.graph.requests.filter((c) => JSON.stringify(c.body).includes(group))).toEqual([]);
  });
});
