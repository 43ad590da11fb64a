/**
 * The agent's side of a hand-off (SPEC section 4) on both backends, end to end: a real Baton
 * (embedded SQLite, or Redis + PostgreSQL), real HTTP, a fake Graph API. An escalated session
 * is in the inbox; an agent takes it (the bot stays silent), writes to the user (the text
 * reaches Graph through the outbox, retried on 5xx, recorded as `agent_message`), and hands it
 * back at a step (its prompt is sent once, the bot resumes).
 */
import { describe, expect, it } from 'vitest';
import type { SessionView, TransitionRecord } from '../../src/model/session.ts';
import { ADMIN_TOKEN } from '../support/harness.ts';
import { harnessOn } from '../support/harness-on.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

interface InboxItem extends SessionView {
  waiting_since: string;
  waiting_ms: number;
  agent: string | null;
  last_message: { direction: string; type: string; text?: string } | null;
}

interface Item {
  direction: 'in' | 'out';
  id: string;
  at: string;
  type: string;
  text?: string;
  payload?: unknown;
  status?: string;
  kind?: string;
}

const cases = HARNESS_BACKENDS;

describe.each(cases)('agent hand-off on the %s backend', (name, available, setup) => {
  const h = harnessOn(available, setup, { BATON_MAX_RETRIES: '0' });
  const ts = 1_750_000_000;
  const json = async <T>(r: Response | Promise<Response>): Promise<T> => (await (await r).json()) as T;
  const send = (path: string, method: string, body: unknown): Promise<Response> =>
    h.admin(path, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const sentTo = (user: string) => h.graph.sent.filter((c) => c.body.to === `+${user}`);
  const lastRecord = async (user: string): Promise<TransitionRecord | undefined> =>
    (await h.transitions(user)).at(-1);

  /** A session escalated at choose_product (max retries 0: the first wrong input hands off). */
  async function escalated(user: string): Promise<SessionView> {
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(webhook([text(user, 'Jane', ts + 1)]))).status).toBe(200);
    await h.settled(user, 2);
    expect((await h.post(webhook([text(user, 'which one?', ts + 2)]))).status).toBe(200);
    const s = await h.settled(user, 3);
    expect(s.metadata.needs_agent).toBe(true);
    return s;
  }

  it.skipIf(!available)(
    'takes, writes and hands back; the bot stays silent meanwhile, then resumes',
    async () => {
      if (name === 'distributed') expect(h.baton.backend.kind).toBe('distributed');
      const user = '15550401001';
      const before = await escalated(user);
      expect(before.current_step).toBe('choose_product');
      const handoffNotice = await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && /team/i.test(JSON.stringify(c.body)),
      );
      expect(handoffNotice.body.biz_opaque_callback_data).toBe(`baton:order:choose_product:3`);

      // In the inbox, not taken yet.
      const inbox = await json<{ sessions: InboxItem[] }>(h.admin('/inbox'));
      const mine = inbox.sessions.find((s) => s.wa_id === user);
      expect(mine).toMatchObject({
        current_step: 'choose_product',
        agent: null,
        last_message: { direction: 'in', type: 'text', text: 'which one?' },
      });
      expect(Date.parse(mine!.waiting_since)).toBeGreaterThan(0);
      // Too many invalid answers, said so (outside test QA7-F2: no reason was shown).
      expect(mine!.metadata.handoff_reason).toMatch(/^(1 invalid answer|\d+ invalid answers) in a row$/);

      // Take: needs_agent stays true, version unchanged, no record, nothing sent.
      const sentBefore = sentTo(user).length;
      const taken = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' });
      expect(taken.status).toBe(200);
      expect(await taken.json()).toMatchObject({
        agent: 'Ana', // SPEC 4: {"agent": "<name from the body>"}
        current_step: 'choose_product',
        metadata: { version: 3, needs_agent: true, agent: 'Ana' },
      });
      expect(
        (await json<{ sessions: InboxItem[] }>(h.admin('/inbox'))).sessions.find((s) => s.wa_id === user)
          ?.agent,
      ).toBe('Ana');
      // Bob cannot take it from Ana unknowingly; explicitly (the dashboard's form sends "true"), he can.
      const bob = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bob' });
      expect(bob.status).toBe(409);
      expect(await bob.json()).toMatchObject({
        code: 'BATON_ERR_TAKEN_BY_OTHER',
        error: expect.stringContaining('send "take_over": true'),
      });
      expect(
        (await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bob', take_over: 'true' })).status,
      ).toBe(200);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana', take_over: true })).status).toBe(
        200,
      );

      // The user writes: recorded as held, answered by nobody.
      expect((await h.post(webhook([text(user, 'hello?? anyone', ts + 3)]))).status).toBe(200);
      await h.until(async () => (await lastRecord(user))?.kind === 'held');

      // The agent writes; the first attempt gets a 500 from Graph and is retried.
      h.graph.failNext(1, { status: 500 });
      const wrote = await send(`/sessions/${user}/agent/messages`, 'POST', {
        text: 'Hi Jane, Ana here <b>&</b>',
      });
      expect(wrote.status).toBe(200);
      const answer = await json<{
        session: SessionView;
        message: { id: string; status: string; callback_data: string; error?: string };
      }>(wrote);
      expect(answer.session.metadata.version).toBe(3);
      expect(answer.message.status).toBe('sent');
      // It got through: the 500 before is no error of it now (outside test QA2-1), in the answer
      // and in the conversation; the outbox record keeps it as its last error.
      expect(answer.message).not.toHaveProperty('error');
      const talk = await json<{ messages: Array<{ id: string; error?: string }> }>(
        h.admin(`/sessions/${user}/messages`),
      );
      expect(talk.messages.find((m) => m.id === answer.message.id)).not.toHaveProperty('error');
      const out = await json<{ outbound: Array<{ id: string; last_error?: string }> }>(
        h.admin(`/sessions/${user}/outbound`),
      );
      expect(out.outbound.find((o) => o.id === answer.message.id)?.last_error).toMatch(/500/);
      const agentSend = await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && JSON.stringify(c.body).includes('Ana here'),
      );
      expect(agentSend.body.text).toMatchObject({ body: 'Hi Jane, Ana here <b>&</b>' });
      expect(agentSend.body.biz_opaque_callback_data).toMatch(/^baton:order:choose_product:3:agent-\d+$/);
      expect(answer.message.callback_data).toBe(agentSend.body.biz_opaque_callback_data);
      // Only the agent's text went out since the take (the held message got no answer).
      expect(
        sentTo(user)
          .slice(sentBefore)
          .map((c) => c.body.biz_opaque_callback_data),
      ).toEqual([agentSend.body.biz_opaque_callback_data]);
      const rec = await lastRecord(user);
      expect(rec).toMatchObject({
        kind: 'agent_message',
        version: 3,
        from_step: 'choose_product',
        to_step: 'choose_product',
      });
      expect(rec!.worker).toBe('agent:Ana');

      // The conversation: the user's side as sent, Baton's side as sent with statuses, oldest first.
      const conv = await json<{ messages: Item[]; next_cursor: string | null }>(
        h.admin(`/sessions/${user}/messages`),
      );
      const ins = conv.messages.filter((m) => m.direction === 'in').map((m) => m.text);
      expect(ins).toEqual(['hi', 'Jane', 'which one?', 'hello?? anyone']);
      const outs = conv.messages.filter((m) => m.direction === 'out');
      expect(outs.at(-1)).toMatchObject({
        type: 'text',
        text: 'Hi Jane, Ana here <b>&</b>',
        status: 'sent',
        kind: 'agent',
      });
      expect(outs[1]).toMatchObject({ type: 'buttons', kind: 'prompt', status: 'sent' });
      const times = conv.messages.map((m) => Date.parse(m.at));
      expect([...times].sort((a, b) => a - b)).toEqual(times);
      // Paged two at a time, the same list.
      const paged: Item[] = [];
      let cursor: string | null = null;
      do {
        const page: { messages: Item[]; next_cursor: string | null } = await json(
          h.admin(`/sessions/${user}/messages?limit=2${cursor ? `&cursor=${cursor}` : ''}`),
        );
        expect(page.messages.length).toBeLessThanOrEqual(2);
        paged.push(...page.messages);
        cursor = page.next_cursor;
      } while (cursor);
      expect(paged).toEqual(conv.messages);

      // Unknown step: 400; the session is unchanged.
      const bad = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'nowhere' });
      expect(bad.status).toBe(400);
      // It names the steps there are (outside test QA65-F11).
      expect(await bad.json()).toMatchObject({
        code: 'BATON_ERR_UNKNOWN_STEP',
        error: expect.stringMatching(/has no step "nowhere" \(its steps: ask_name, choose_product, .*\)$/),
      });

      // A step built on data the session lacks (no product was chosen): 409, unchanged.
      const early = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'collect_shipping_address' });
      expect(early.status).toBe(409);
      // It names the steps open now (outside test QA7-F3: "an earlier step" left it to a guess).
      expect(await early.json()).toMatchObject({
        code: 'BATON_ERR_STEP_NEEDS_DATA',
        error: expect.stringMatching(/needs product_id, .* at a step open now: ask_name, choose_product$/),
      });
      // A blank value is no value: the step's prompt would quote it (outside test QA63-F7).
      // Nor is one that shows nothing: a zero-width space, a byte-order mark (QA102-F3).
      for (const customer_name of ['', '   ', '\u200b', ' \ufeff\u2060 ']) {
        const blank = await send(`/sessions/${user}/agent`, 'DELETE', {
          step: 'collect_shipping_address',
          data: { customer_name, product_id: 'sku_550e' },
        });
        expect(blank.status).toBe(409);
        expect(await blank.json()).toMatchObject({
          code: 'BATON_ERR_STEP_NEEDS_DATA',
          error: expect.stringContaining('needs customer_name'),
        });
      }
      // Data the flow's schema refuses, or a body that is not flat values: 400, unchanged.
      for (const data of [{ product_id: 7 }, { product_id: { id: 'x' } }, { 'bad key': 'x' }]) {
        const refused = await send(`/sessions/${user}/agent`, 'DELETE', {
          step: 'collect_shipping_address',
          data,
        });
        expect(refused.status).toBe(400);
        // A list or an object is refused saying what a value may be, not zod's "Invalid input".
        const error = ((await refused.json()) as { error: string }).error;
        if (typeof data.product_id === 'object')
          expect(error).toContain('must be a string, a number, a boolean or null');
        // A key that is no identifier, said in words rather than zod's "Invalid key in record".
        if ('bad key' in data) expect(error).toMatch(/data\.bad key is not an identifier/);
      }
      // A name JavaScript reserves, refused by name rather than dropped (outside test Q10).
      for (const key of ['__proto__', 'constructor', 'prototype']) {
        const reserved = await send(`/sessions/${user}/agent`, 'DELETE', {
          step: 'choose_product',
          data: JSON.parse(`{"${key}":"x"}`) as Record<string, string>,
        });
        expect(reserved.status).toBe(400);
        expect(JSON.stringify(await reserved.json())).toContain('reserves');
      }
      expect((await lastRecord(user))?.kind).not.toBe('handback');

      // Hand back at choose_product: version + 1, needs_agent and retries cleared, data kept.
      const back = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'choose_product' });
      expect(back.status).toBe(200);
      const handed = (await back.json()) as SessionView;
      expect(handed).toMatchObject({
        current_step: 'choose_product',
        data: { customer_name: 'Jane' },
        metadata: { version: 4, needs_agent: false, retry_count: 0 },
      });
      expect(handed.metadata.agent).toBeUndefined();
      expect(await lastRecord(user)).toMatchObject({
        kind: 'handback',
        version: 4,
        from_step: 'choose_product',
        to_step: 'choose_product',
      });
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:4');
      expect(
        (await json<{ sessions: InboxItem[] }>(h.admin('/inbox'))).sessions.some((s) => s.wa_id === user),
      ).toBe(false);

      // The bot resumes: the product advances to collect_shipping_address.
      expect((await h.post(webhook([button(user, 'sku_550e', 'Trail Shoe', ts + 4)]))).status).toBe(200);
      const resumed = await h.settled(user, 5);
      expect(resumed).toMatchObject({
        current_step: 'collect_shipping_address',
        data: { customer_name: 'Jane', product_id: 'sku_550e' },
      });
      await h.graph.waitFor(
        (c) => c.body.biz_opaque_callback_data === 'baton:order:collect_shipping_address:5',
      );
      // The handback's prompt went out exactly once.
      expect(
        sentTo(user).filter((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:4'),
      ).toHaveLength(1);
      // The dashboard's pages read the same backend.
      const login = await fetch(`${h.url}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `token=${encodeURIComponent(ADMIN_TOKEN)}`,
        redirect: 'manual',
      });
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      const sessionPage = await (
        await fetch(`${h.url}/admin/session?wa_id=${user}`, { headers: { cookie } })
      ).text();
      expect(sessionPage).toMatch(/id="state-step"[^>]*>collect_shipping_address</);
      expect(sessionPage).toContain('Hi Jane, Ana here &lt;b&gt;&amp;&lt;/b&gt;');
      expect(sessionPage).toContain('data-kind="handback"');
      const map = await fetch(`${h.url}/admin/flows/order?step=collect_shipping_address`, {
        headers: { cookie },
      });
      expect(map.status).toBe(200);
      expect(await map.text()).toContain(`>${user}</a>`);
      // No two outbound messages to the user carry the same callback data.
      const tags = sentTo(user).map((c) => c.body.biz_opaque_callback_data);
      expect(new Set(tags).size).toBe(tags.length);
    },
  );

  it.skipIf(!available)(
    'an agent who names themself writes to or hands back a session a colleague has only when they confirm (outside test QA2-4)',
    async () => {
      const user = '15550401031';
      await escalated(user);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bob' })).status).toBe(200);
      const sentBefore = sentTo(user).length;
      const refused = await send(`/sessions/${user}/agent/messages`, 'POST', {
        text: 'Ana here',
        agent: 'Ana',
      });
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ code: 'BATON_ERR_TAKEN_BY_OTHER', holder: 'Bob' });
      const back = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name', agent: 'Zed' });
      expect(back.status).toBe(409);
      expect(await back.json()).toMatchObject({ code: 'BATON_ERR_TAKEN_BY_OTHER', holder: 'Bob' });
      expect(sentTo(user).length).toBe(sentBefore);
      expect((await lastRecord(user))?.kind).toBe('escalated');

      // The holder, or nobody named (the holder writes), or a colleague who confirms.
      expect(
        (await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Bob here', agent: 'Bob' })).status,
      ).toBe(200);
      expect((await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Still Bob' })).status).toBe(
        200,
      );
      const anyway = await send(`/sessions/${user}/agent/messages`, 'POST', {
        text: 'Ana here',
        agent: 'Ana',
        confirm: true,
      });
      expect(anyway.status).toBe(200);
      expect(
        (await h.transitions(user)).filter((r) => r.kind === 'agent_message').map((r) => r.worker),
      ).toEqual(['agent:Bob', 'agent:Bob', 'agent:Ana']);
      const handed = await send(`/sessions/${user}/agent`, 'DELETE', {
        step: 'ask_name',
        agent: 'Zed',
        confirm: 'true',
      });
      expect(handed.status).toBe(200);
      expect(await lastRecord(user)).toMatchObject({ kind: 'handback', worker: 'agent:Zed' });
    },
  );

  it.skipIf(!available)(
    'an agent who writes to a session nobody took takes it: a colleague writing too is asked first (outside test QA63-F3)',
    async () => {
      const user = '15550401032';
      await escalated(user);
      const ana = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here', agent: 'Ana' });
      expect(ana.status).toBe(200);
      expect((await h.session(user))!.metadata).toMatchObject({ needs_agent: true, agent: 'Ana' });
      expect(
        (await json<{ sessions: InboxItem[] }>(h.admin('/inbox'))).sessions.find((s) => s.wa_id === user)
          ?.agent,
      ).toBe('Ana');
      const bob = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Bob here', agent: 'Bob' });
      expect(bob.status).toBe(409);
      expect(await bob.json()).toMatchObject({ code: 'BATON_ERR_TAKEN_BY_OTHER', holder: 'Ana' });
      expect(sentTo(user).filter((c) => JSON.stringify(c.body).includes('Bob here'))).toEqual([]);
      // Nor does Bob reset Ana's conversation unknowingly (outside test QA63-F4); knowingly, he can.
      const reset = await send(`/sessions/${user}/reset`, 'POST', { agent: 'Bob' });
      expect(reset.status).toBe(409);
      expect(await reset.json()).toMatchObject({ code: 'BATON_ERR_TAKEN_BY_OTHER', holder: 'Ana' });
      expect((await h.session(user))!.metadata).toMatchObject({ needs_agent: true, agent: 'Ana' });
      const anyway = await send(`/sessions/${user}/reset`, 'POST', { agent: 'Bob', confirm: true });
      expect(anyway.status).toBe(200);
      expect(await lastRecord(user)).toMatchObject({ kind: 'admin_reset', worker: 'agent:Bob' });
    },
  );

  it.skipIf(!available)(
    "an agent's message Meta refuses (the 24-hour window closed) is answered failed, saying why (outside test D12)",
    async () => {
      const user = '15550401019';
      await escalated(user);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' })).status).toBe(200);
      h.graph.failNext(1, { status: 400, graphCode: 131047, to: user });
      const wrote = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here' });
      expect(wrote.status).toBe(200);
      const answer = await json<{ message: { status: string; error?: string } }>(wrote);
      expect(answer.message).toMatchObject({ status: 'failed', error: expect.stringContaining('131047') });
    },
  );

  it.skipIf(!available)(
    "an agent's message to a throttled gateway: the request answers at once, pending, and a worker sends it",
    async () => {
      const user = '15550401009';
      await escalated(user);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Ana' })).status).toBe(200);
      // Throttled, asked to come back in 2 s: the request does not wait that out.
      h.graph.failNext(1, { status: 429, retryAfter: 2 });
      const started = Date.now();
      const wrote = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here' });
      expect(wrote.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(1500);
      const answer = await json<{ message: { status: string } }>(wrote);
      expect(answer.message.status).toBe('pending');
      // A worker sends it once the session comes back.
      const call = await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && JSON.stringify(c.body).includes('Ana here'),
        10_000,
      );
      expect(call.body.biz_opaque_callback_data).toMatch(/:agent-\d+$/);
    },
  );

  it.skipIf(!available)(
    'two agents taking a session over at once from the agent they saw: one gets it, the other a 409',
    async () => {
      const user = '15550500901';
      await escalated(user);
      expect((await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bob' })).status).toBe(200);
      // Ana and Cy both see Bob holding it and press "Take over from them" together.
      const [ana, cy] = await Promise.all(
        ['Ana', 'Cy'].map((agent) =>
          send(`/sessions/${user}/agent`, 'POST', { agent, take_over: 'true', version: '3', from: 'Bob' }),
        ),
      );
      const statuses = [ana!.status, cy!.status].sort();
      expect(statuses).toEqual([200, 409]);
      const loser = ana!.status === 409 ? ana! : cy!;
      const body = (await loser.json()) as { code: string; error: string };
      expect(body.code).toBe('BATON_ERR_TAKEN_BY_OTHER');
      expect(body.error).toContain('not Bob as you saw');
      const winner = ana!.status === 200 ? 'Ana' : 'Cy';
      expect((await h.session(user))!.metadata.agent).toBe(winner);
      // Seeing nobody holding it ('') when someone does is refused the same way.
      const late = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Dee', take_over: true, from: '' });
      expect(late.status).toBe(409);
    },
  );

  it.skipIf(!available)('refuses to write to or hand back a session the bot is serving (409)', async () => {
    const user = '15550401002';
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    await h.settled(user, 1);
    const w = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'hello' });
    expect(w.status).toBe(409);
    expect(await w.json()).toMatchObject({ code: 'BATON_ERR_NOT_WITH_AGENT' });
    const b = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
    expect(b.status).toBe(409);
    expect((await h.session(user))?.metadata.version).toBe(1);
    for (const [path, method, body] of [
      ['/sessions/15550409999/agent', 'POST', { agent: 'Ana' }],
      ['/sessions/15550409999/agent/messages', 'POST', { text: 'x' }],
      ['/sessions/15550409999/agent', 'DELETE', { step: 'ask_name' }],
      ['/sessions/15550409999/messages', 'GET', undefined],
    ] as const) {
      const r = await h.admin(path, {
        method,
        ...(body ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
      });
      expect(r.status).toBe(404);
    }
  });

  it.skipIf(!available)(
    'an agent taking a session the bot is serving escalates it (one record, nothing sent)',
    async () => {
      const user = '15550401003';
      expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
      await h.settled(user, 1);
      // Settled is stored; wait for the name prompt to be sent too before counting.
      await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:order:ask_name:1',
      );
      const sends = sentTo(user).length;
      const r = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bo' });
      expect(await r.json()).toMatchObject({
        current_step: 'ask_name',
        metadata: { version: 2, needs_agent: true, agent: 'Bo' },
      });
      expect(await lastRecord(user)).toMatchObject({ kind: 'escalated', version: 2, worker: 'agent:Bo' });
      // The user's name is held, not applied.
      expect((await h.post(webhook([text(user, 'Jo', ts + 1)]))).status).toBe(200);
      await h.until(async () => (await lastRecord(user))?.kind === 'held');
      expect(sentTo(user).length).toBe(sends);
      expect((await h.session(user))?.data).toEqual({});
      // Handed back at ask_name: its prompt once, then the bot takes the name.
      await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:ask_name:3');
      expect((await h.post(webhook([text(user, 'Jo', ts + 2)]))).status).toBe(200);
      expect(await h.settled(user, 4)).toMatchObject({
        current_step: 'choose_product',
        data: { customer_name: 'Jo' },
      });
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:4');
      expect(
        h.graph.sent.filter((c) => c.body.to === `+${user}` && c.phoneNumberId === PHONE_ID).length,
      ).toBe(sends + 2);
    },
  );

  it.skipIf(!available)(
    'names who wrote and who handed back; a take from a stale view is refused (409), nothing changes',
    async () => {
      const user = '15550401004';
      await escalated(user);
      const taken = await json<SessionView>(send(`/sessions/${user}/agent`, 'POST', { agent: 'Alice' }));
      // Alice has it: Bruno writes and hands back, confirming that he means to.
      expect(
        (
          await send(`/sessions/${user}/agent/messages`, 'POST', {
            text: 'Hi',
            agent: 'Bruno',
            confirm: true,
          })
        ).status,
      ).toBe(200);
      expect(await lastRecord(user)).toMatchObject({ kind: 'agent_message', worker: 'agent:Bruno' });
      // Bruno hands it back; Bea's page still shows the version Alice took it at.
      const back = await send(`/sessions/${user}/agent`, 'DELETE', {
        step: 'choose_product',
        agent: 'Bruno',
        confirm: true,
      });
      expect(back.status).toBe(200);
      const handedBack = await lastRecord(user);
      expect(handedBack).toMatchObject({ kind: 'handback', worker: 'agent:Bruno' });
      const stale = await send(`/sessions/${user}/agent`, 'POST', {
        agent: 'Bea',
        take_over: true,
        version: taken.metadata.version,
      });
      expect(stale.status).toBe(409);
      expect(await stale.json()).toMatchObject({ code: 'BATON_ERR_VERSION_CONFLICT' });
      // No version is no version 0: a bad request, not a conflict (outside test QA42-F9).
      for (const version of [null, '', [], 'abc', 1.5]) {
        const bad = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bea', version });
        expect(bad.status).toBe(400);
      }
      expect(await lastRecord(user)).toEqual(handedBack);
      expect((await h.session(user))?.metadata.needs_agent).toBe(false);
      // The version she sees now is taken, as a form sends it.
      const now = (await h.session(user))!.metadata.version;
      const fresh = await send(`/sessions/${user}/agent`, 'POST', { agent: 'Bea', version: String(now) });
      expect(fresh.status).toBe(200);
      // A name is one line.
      const twoLines = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'x', agent: 'a\nb' });
      expect(twoLines.status).toBe(400);
      // And reads as written: no control or text-direction characters (outside test QA63-F6).
      for (const agent of ['Ana\u202Eevil', 'Ana\u0007', 'Ana\u2067x']) {
        const odd = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'x', agent });
        expect(odd.status).toBe(400);
        expect(JSON.stringify(await odd.json())).toContain('control or text-direction characters');
      }
      // A name with accents is a name (refused here only because Bea has the session).
      const accented = await send(`/sessions/${user}/agent/messages`, 'POST', {
        text: 'x',
        agent: 'José Núñez',
      });
      expect(await accented.json()).toMatchObject({ code: 'BATON_ERR_TAKEN_BY_OTHER' });
      // A name that shows nothing is none (outside test QA102-F1)...
      for (const agent of ['\u200b', ' \u200b\ufeff ', '\u00ad']) {
        const none = await send(`/sessions/${user}/agent/messages`, 'POST', { text: 'x', agent });
        expect(none.status).toBe(400);
        expect(JSON.stringify(await none.json())).toContain('must name the agent');
      }
      // ...and one pasted with a zero-width space is the agent it shows: Bea, who has the session.
      const pasted = await send(`/sessions/${user}/agent/messages`, 'POST', {
        text: 'x',
        agent: 'Bea\u200b',
      });
      expect(pasted.status).toBe(200);
      const inbox = await json<{ sessions: Array<{ wa_id: string }> }>(h.admin('/inbox?agent=%E2%80%8BBea'));
      expect(inbox.sessions.map((x) => x.wa_id)).toContain(user);
    },
  );

  it.skipIf(!available)(
    'replaying an agent message that failed warns that newer ones went out before it',
    async () => {
      const user = '15550401005';
      await escalated(user);
      await send(`/sessions/${user}/agent`, 'POST', { agent: 'Alice' });
      h.graph.failNext(1, { status: 400, graphCode: 131026, message: 'Message undeliverable' });
      const x = await json<{ message: { id: string; status: string } }>(
        send(`/sessions/${user}/agent/messages`, 'POST', { text: 'X first' }),
      );
      expect(x.message.status).toBe('failed');
      const y = await json<{ message: { status: string } }>(
        send(`/sessions/${user}/agent/messages`, 'POST', { text: 'Y second' }),
      );
      expect(y.message.status).toBe('sent');
      const letters = await json<{ dead_letters: Array<{ id: string; ref: string }> }>(
        h.admin('/dead-letters'),
      );
      const letter = letters.dead_letters.find((d) => d.ref === x.message.id)!;
      const url = `/dead-letters/${encodeURIComponent(letter.id)}/replay`;
      expect((await h.admin(url, { method: 'POST' })).status).toBe(409);
      const replay = await json<{ replayed: boolean; warning?: string }>(
        h.admin(`${url}?confirm=true`, { method: 'POST' }),
      );
      expect(replay).toMatchObject({ replayed: true, warning: expect.stringContaining('1 newer message') });
    },
  );
  it.skipIf(!available)("filters the inbox by who took each session, and counts each agent's", async () => {
    const [a, b, c] = ['15550401201', '15550401202', '15550401203'];
    for (const u of [a, b, c]) await escalated(u);
    expect((await send(`/sessions/${a}/agent`, 'POST', { agent: 'Filter Ana' })).status).toBe(200);
    expect((await send(`/sessions/${b}/agent`, 'POST', { agent: 'Filter Bo' })).status).toBe(200);
    type Page = {
      sessions: InboxItem[];
      total: number;
      agents: { agent: string; sessions: number }[];
      unassigned: number;
    };
    const ids = (p: Page) => p.sessions.map((s) => s.wa_id).filter((w) => [a, b, c].includes(w));

    const ana = await json<Page>(h.admin(`/inbox?agent=${encodeURIComponent('Filter Ana')}`));
    expect(ids(ana)).toEqual([a]);
    expect(ana.total).toBe(1);
    expect(ana.agents).toEqual(
      expect.arrayContaining([
        { agent: 'Filter Ana', sessions: 1 },
        { agent: 'Filter Bo', sessions: 1 },
      ]),
    );
    const nobody = await json<Page>(h.admin('/inbox?unassigned=true'));
    expect(ids(nobody)).toEqual([c]);
    expect(nobody.sessions.every((s) => s.agent === null)).toBe(true);
    expect(nobody.total).toBe(nobody.unassigned);
    const everyone = await json<Page>(h.admin('/inbox'));
    expect(ids(everyone).sort()).toEqual([a, b, c]);

    const both = await h.admin('/inbox?agent=x&unassigned=true');
    expect(both.status).toBe(400);
    expect(await both.json()).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });

    // The console: the filter row with counts; the rows and the links keep the filter.
    const cookie = await h.dashboardCookie();
    const page = await (
      await fetch(`${h.url}/admin/inbox?agent=${encodeURIComponent('Filter Bo')}`, { headers: { cookie } })
    ).text();
    expect(page).toMatch(/id="inbox-filters"/);
    expect(page).toMatch(/<strong id="inbox-agent-\d+" aria-current="page">Filter Bo \(1\)<\/strong>/);
    expect(page).toContain(`data-wa-id="${b}"`);
    expect(page).not.toContain(`data-wa-id="${a}"`);
    expect(page).not.toContain(`data-wa-id="${c}"`);
  });
});
