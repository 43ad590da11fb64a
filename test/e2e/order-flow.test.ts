import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import type { RecordedCall } from '../support/fake-graph.ts';
import { button, image, text, webhook } from '../support/payloads.ts';

let h: Harness;
let user = 0;
let waId: string;
const T0 = 1_750_000_000;

beforeAll(async () => {
  // Bursts are posted concurrently from this process: a window of 250 ms keeps them one batch
  // even when the machine is busy with other suites (SPEC's default is 500).
  h = await startHarness({ BATON_BUFFER_MS: '250' });
});
afterAll(async () => {
  await h.close();
});
beforeEach(() => {
  user += 1;
  waId = `1555000${String(user).padStart(4, '0')}`;
});

const sentTo = (to: string): RecordedCall[] => h.graph.sent.filter((c) => c.body.to === `+${to}`);
const callbacks = (to: string): string[] => sentTo(to).map((c) => c.body.biz_opaque_callback_data!);

async function send(...messages: ReturnType<typeof text>[]): Promise<void> {
  const r = await h.post(webhook(messages));
  expect(r.status).toBe(200);
}

/** Sends a message and waits for the reply it should produce (`sends` new calls to the user). */
async function step(msg: ReturnType<typeof text>, version: number, sends = 1): Promise<RecordedCall[]> {
  const before = sentTo(msg.from).length;
  await send(msg);
  await h.settled(msg.from, version);
  await h.until(() => sentTo(msg.from).length >= before + sends);
  return sentTo(msg.from).slice(before);
}

describe('the order flow, end to end', () => {
  it('walks a user from first message to a confirmed order', async () => {
    const [namePrompt] = await step(text(waId, 'hi', T0), 1);
    expect(namePrompt!.body.type).toBe('text');
    expect(namePrompt!.body.biz_opaque_callback_data).toBe('baton:order:ask_name:1');
    expect(namePrompt!.body.messaging_product).toBe('whatsapp');
    expect(namePrompt!.headers.authorization).toBe('Bearer test-access-token');

    const [productPrompt] = await step(text(waId, '  Jane Smith ', T0 + 1), 2);
    expect(productPrompt!.body.interactive?.action?.buttons?.map((b) => b.reply.id)).toEqual([
      'sku_550e',
      'sku_551a',
      'sku_777b',
    ]);

    const [addressPrompt] = await step(
      button(waId, 'sku_551a', 'Rain Jacket', T0 + 2, productPrompt!.providerMessageId),
      3,
    );
    expect(addressPrompt!.body.biz_opaque_callback_data).toBe('baton:order:collect_shipping_address:3');

    const [confirmPrompt] = await step(text(waId, '1 Main St, Springfield', T0 + 3), 4);
    expect(confirmPrompt!.body.interactive?.action?.buttons?.map((b) => b.reply.id)).toEqual([
      'confirm',
      'cancel',
    ]);

    await step(button(waId, 'confirm', 'Confirm', T0 + 4, confirmPrompt!.providerMessageId), 5);

    const s = await h.session(waId);
    expect(s).toMatchObject({
      wa_id: waId,
      channel: '106540352242922',
      flow: 'order',
      current_step: 'completed',
      data: {
        customer_name: 'Jane Smith',
        product_id: 'sku_551a',
        shipping_address: '1 Main St, Springfield',
      },
      metadata: { version: 5, retry_count: 0, needs_agent: false, last_interaction: '2025-06-15T15:06:44Z' },
    });
    expect(Object.keys(s!.data).sort()).toEqual(['customer_name', 'product_id', 'shipping_address']);
    const t = await h.transitions(waId);
    expect(t.map((r) => [r.version, r.from_step, r.to_step, r.kind])).toEqual([
      [1, null, 'ask_name', 'advance'],
      [2, 'ask_name', 'choose_product', 'advance'],
      [3, 'choose_product', 'collect_shipping_address', 'advance'],
      [4, 'collect_shipping_address', 'confirm_order', 'advance'],
      [5, 'confirm_order', 'completed', 'advance'],
    ]);
    for (const r of t) {
      expect(r.worker).toEqual(expect.any(String));
      expect(r.fencing_token).toBeGreaterThan(0);
    }
    const cbs = callbacks(waId);
    expect(new Set(cbs).size).toBe(cbs.length);
    expect(cbs).toEqual([
      'baton:order:ask_name:1',
      'baton:order:choose_product:2',
      'baton:order:collect_shipping_address:3',
      'baton:order:confirm_order:4',
      'baton:order:completed:5',
    ]);
  });

  it('joins a burst "Jane", "Smith" into one name and sends one product prompt', async () => {
    await step(text(waId, 'hello', T0), 1);
    const before = sentTo(waId).length;
    // Two webhooks at once, as WhatsApp delivers a quick double message.
    await Promise.all([send(text(waId, 'Smith', T0 + 2)), send(text(waId, 'Jane', T0 + 1))]);
    const s = await h.settled(waId, 2);
    expect(s.data).toEqual({ customer_name: 'Jane Smith' });
    expect(s.current_step).toBe('choose_product');
    await h.until(() => sentTo(waId).length > before);
    // Give a wrongly split batch every chance to show a second prompt.
    await h.settled(waId, 2);
    expect(
      sentTo(waId)
        .slice(before)
        .map((c) => c.body.biz_opaque_callback_data),
    ).toEqual(['baton:order:choose_product:2']);
    const t = await h.transitions(waId);
    expect(t.at(-1)!.message_ids).toHaveLength(2);
  });

  it('handles a shuffled, duplicated burst of a whole order: completed, every field set, no prompt twice', async () => {
    await step(text(waId, 'hi', T0), 1);
    const before = sentTo(waId).length;
    const burst = [
      text(waId, 'Ana Lima', T0 + 10),
      button(waId, 'sku_777b', 'Day Pack', T0 + 11),
      text(waId, '22 Rua Augusta, Lisboa', T0 + 12),
      button(waId, 'confirm', 'Confirm', T0 + 13),
    ];
    const deliveries = [burst[3]!, burst[1]!, burst[0]!, burst[3]!, burst[2]!, burst[1]!];
    const statuses = await Promise.all(deliveries.map((m) => h.post(webhook([m])).then((r) => r.status)));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    const s = await h.settled(waId, 5);
    expect(s.current_step).toBe('completed');
    expect(s.data).toEqual({
      customer_name: 'Ana Lima',
      product_id: 'sku_777b',
      shipping_address: '22 Rua Augusta, Lisboa',
    });
    await h.until(() => sentTo(waId).length > before);
    await h.settled(waId, 5);
    expect(
      sentTo(waId)
        .slice(before)
        .map((c) => c.body.biz_opaque_callback_data),
    ).toEqual(['baton:order:completed:5']);
    const t = await h.transitions(waId);
    expect(t.filter((r) => r.kind === 'advance')).toHaveLength(5);
    expect(t.flatMap((r) => r.message_ids).sort()).toEqual(
      [burst[0]!.id, ...burst.slice(1).map((m) => m.id)].concat(t[0]!.message_ids).sort(),
    );
    const cbs = callbacks(waId);
    expect(new Set(cbs).size).toBe(cbs.length);
  });

  it('answers a stale product button politely and leaves state and version unchanged', async () => {
    await step(text(waId, 'hi', T0), 1);
    const [productPrompt] = await step(text(waId, 'Bo', T0 + 1), 2);
    await step(button(waId, 'sku_550e', 'Trail Shoe', T0 + 2, productPrompt!.providerMessageId), 3);
    const old = button(waId, 'sku_777b', 'Day Pack', T0 + 3, productPrompt!.providerMessageId);
    const [notice] = await step(old, 3);
    expect(notice!.body.type).toBe('text');
    expect(notice!.body.biz_opaque_callback_data).toBe(`baton:order:collect_shipping_address:3:${old.id}`);
    const s = await h.session(waId);
    expect(s).toMatchObject({ current_step: 'collect_shipping_address', data: { product_id: 'sku_550e' } });
    expect(s!.metadata.version).toBe(3);
    expect((await h.transitions(waId)).at(-1)).toMatchObject({
      kind: 'stale_input',
      version: 3,
      message_ids: [old.id],
    });
  });

  it('treats a button of the current step from an earlier visit as stale', async () => {
    await step(text(waId, 'hi', T0), 1);
    const [firstPrompt] = await step(text(waId, 'Cy', T0 + 1), 2);
    await step(text(waId, 'reset', T0 + 2), 3); // back to ask_name: a new visit follows
    await step(text(waId, 'Cy', T0 + 3), 4);
    const old = button(waId, 'sku_550e', 'Trail Shoe', T0 + 4, firstPrompt!.providerMessageId);
    await step(old, 4);
    expect((await h.session(waId))!.current_step).toBe('choose_product');
    expect((await h.transitions(waId)).at(-1)!.kind).toBe('stale_input');
  });

  it('ignores a context.id that names no prompt: the id alone decides', async () => {
    await step(text(waId, 'hi', T0), 1);
    await step(text(waId, 'Di', T0 + 1), 2);
    await step(button(waId, 'sku_550e', 'Trail Shoe', T0 + 2, 'wamid.NOT_OURS'), 3);
    expect((await h.session(waId))!.current_step).toBe('collect_shipping_address');
  });

  it('restarts on a reset keyword at any step', async () => {
    await step(text(waId, 'hi', T0), 1);
    await step(text(waId, 'Ed', T0 + 1), 2);
    const [prompt] = await step(text(waId, '  Start Over ', T0 + 2), 3);
    expect(prompt!.body.biz_opaque_callback_data).toBe('baton:order:ask_name:3');
    const s = await h.session(waId);
    expect(s).toMatchObject({ current_step: 'ask_name', data: {}, metadata: { version: 3, retry_count: 0 } });
    expect((await h.transitions(waId)).at(-1)).toMatchObject({
      kind: 'reset',
      from_step: 'choose_product',
      to_step: 'ask_name',
    });
  });

  it('records a late message and does not apply it', async () => {
    await step(text(waId, 'hi', T0 + 100), 1);
    await step(text(waId, 'Flo', T0 + 101), 2);
    const late = text(waId, 'an old name', T0 + 50);
    await send(late);
    await h.until(async () => (await h.transitions(waId)).some((r) => r.kind === 'late'));
    const s = await h.session(waId);
    expect(s).toMatchObject({ current_step: 'choose_product', data: { customer_name: 'Flo' } });
    expect(s!.metadata.version).toBe(2);
    expect((await h.transitions(waId)).at(-1)).toMatchObject({
      kind: 'late',
      version: 2,
      message_ids: [late.id],
    });
  });

  it('does not treat an equal timestamp as late', async () => {
    await step(text(waId, 'hi', T0), 1);
    await step(text(waId, 'Gus', T0), 2);
    expect((await h.session(waId))!.data).toEqual({ customer_name: 'Gus' });
  });

  it('retries invalid input, then escalates to an agent and holds everything after', async () => {
    await step(text(waId, 'hi', T0), 1);
    await step(text(waId, 'Hal', T0 + 1), 2);
    for (let i = 1; i <= 3; i += 1) {
      const [again] = await step(image(waId, T0 + 1 + i), 2 + i);
      expect(again!.body.biz_opaque_callback_data).toBe(`baton:order:choose_product:${2 + i}`);
      expect((await h.session(waId))!.metadata.retry_count).toBe(i);
    }
    const [handoff] = await step(text(waId, 'what?', T0 + 5), 6);
    expect(handoff!.body.type).toBe('text');
    const s = await h.session(waId);
    expect(s!.metadata.needs_agent).toBe(true);
    expect((await h.transitions(waId)).at(-1)!.kind).toBe('escalated');
    const before = sentTo(waId).length;
    await send(text(waId, 'reset', T0 + 6));
    await h.until(async () => (await h.transitions(waId)).at(-1)!.kind === 'held');
    expect((await h.session(waId))!.metadata.version).toBe(6);
    expect(sentTo(waId).length).toBe(before);

    const reset = await h.admin(`/sessions/${waId}/reset`, { method: 'POST' });
    expect(reset.status).toBe(200);
    expect(await h.session(waId)).toMatchObject({
      current_step: null,
      data: {},
      metadata: { version: 7, needs_agent: false, retry_count: 0 },
    });
    expect(sentTo(waId).length).toBe(before);
    const [namePrompt] = await step(text(waId, 'hello again', T0 + 7), 8);
    expect(namePrompt!.body.biz_opaque_callback_data).toBe('baton:order:ask_name:8');
  });

  it('starts an expired session afresh', async () => {
    await step(text(waId, 'hi', T0), 1);
    await step(text(waId, 'Ivy', T0 + 1), 2);
    await step(text(waId, 'hello', T0 + 1 + 86_401), 4);
    const s = await h.session(waId);
    expect(s).toMatchObject({ current_step: 'ask_name', data: {} });
    expect((await h.transitions(waId)).slice(-2).map((r) => [r.kind, r.from_step, r.to_step])).toEqual([
      ['expired', 'choose_product', null],
      ['advance', null, 'ask_name'],
    ]);
  });

  it('has no second effect for a redelivered wamid', async () => {
    const m = text(waId, 'hi', T0);
    await step(m, 1);
    const r = await h.post(webhook([m]));
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ received: 0, duplicates: 1 });
    await h.settled(waId, 1);
    expect((await h.transitions(waId)).length).toBe(1);
    expect(sentTo(waId)).toHaveLength(1);
  });

  it('retries a reply after 429 and Graph throttling codes, then sends it once', async () => {
    h.graph.failNext(1, { status: 429, retryAfter: 0 });
    h.graph.failNext(1, { status: 400, graphCode: 130429 });
    await step(text(waId, 'hi', T0), 1);
    expect(sentTo(waId)).toHaveLength(1);
    const attempts = h.graph.requests.filter((c) => c.body.to === `+${waId}`);
    expect(attempts.map((c) => c.status)).toEqual([429, 400, 200]);
  });

  it('dead-letters a reply the Graph API refuses for good, with the Graph error', async () => {
    h.graph.failNext(1, { status: 400, graphCode: 131047 });
    await send(text(waId, 'hi', T0));
    await h.settled(waId, 1);
    await h.until(async () => {
      const r = await h.admin('/dead-letters');
      const { dead_letters } = (await r.json()) as { dead_letters: Array<{ user: string; reason: string }> };
      return dead_letters.find((d) => d.user === waId);
    });
    const r = await h.admin('/dead-letters');
    const { dead_letters } = (await r.json()) as {
      dead_letters: Array<{ id: string; user: string; reason: string }>;
    };
    const letter = dead_letters.find((d) => d.user === waId)!;
    expect(letter.reason).toContain('131047');
    expect(sentTo(waId)).toHaveLength(0);

    // Once the cause is fixed, an agent replays it: the reply goes out, once.
    const replay = await h.admin(`/dead-letters/${encodeURIComponent(letter.id)}/replay`, { method: 'POST' });
    expect(await replay.json()).toEqual({ replayed: true });
    await h.graph.waitFor((c) => c.body.to === `+${waId}`);
    expect(sentTo(waId).map((c) => c.body.biz_opaque_callback_data)).toEqual(['baton:order:ask_name:1']);
    const again = await h.admin(`/dead-letters/${encodeURIComponent(letter.id)}/replay`, { method: 'POST' });
    expect(again.status).toBe(404);
  });

  it('a replay of a reply the session has moved on from is said first, and goes out when confirmed', async () => {
    h.graph.failNext(1, { status: 400, graphCode: 131047 });
    await send(text(waId, 'hi', T0));
    const letter = await h.until(async () => {
      const { dead_letters } = (await (await h.admin('/dead-letters')).json()) as {
        dead_letters: Array<{ id: string; user: string }>;
      };
      return dead_letters.find((d) => d.user === waId);
    });
    await send(text(waId, 'Jane', T0 + 1));
    await h.settled(waId, 2);
    // Said first: the prompt of a step the user has left would ask an old question (SPEC 1.6).
    const url = `/dead-letters/${encodeURIComponent(letter.id)}/replay`;
    const asked = await h.admin(url, { method: 'POST' });
    expect(asked.status).toBe(409);
    expect(await asked.json()).toMatchObject({
      code: 'BATON_ERR_REPLAY_UNCONFIRMED',
      warning: expect.stringContaining('moved on since this reply was committed (version 1, now 2)'),
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(
      h.graph.sent.filter((c) => c.body.to === `+${waId}`).map((c) => c.body.biz_opaque_callback_data),
    ).toEqual(['baton:order:choose_product:2']);
    // Confirmed, it goes out, and says so again.
    const replay = await h.admin(`${url}?confirm=true`, { method: 'POST' });
    expect(await replay.json()).toEqual({
      replayed: true,
      warning: expect.stringContaining('moved on since this reply was committed (version 1, now 2)'),
    });
    await h.graph.waitFor(
      (c) => c.body.biz_opaque_callback_data === 'baton:order:ask_name:1' && c.body.to === `+${waId}`,
    );
  });

  it('dead-letters a replayed reply again when it is refused again, so it can be replayed again', async () => {
    type Letter = { id: string; user: string; replayed_at?: string };
    const open = async (): Promise<Letter | undefined> => {
      const { dead_letters } = (await (await h.admin('/dead-letters')).json()) as { dead_letters: Letter[] };
      return dead_letters.find((d) => d.user === waId && d.replayed_at === undefined);
    };
    h.graph.failNext(1, { status: 400, graphCode: 131047, to: waId });
    await send(text(waId, 'hi', T0));
    const first = await h.until(open);
    // Replayed before the cause is fixed: refused the same way, at the same attempt.
    h.graph.failNext(1, { status: 400, graphCode: 131047, to: waId });
    await h.admin(`/dead-letters/${encodeURIComponent(first.id)}/replay`, { method: 'POST' });
    const second = await h.until(open);
    expect(second.id).not.toBe(first.id);
    expect(sentTo(waId)).toHaveLength(0);
    expect(
      (await h.admin(`/dead-letters/${encodeURIComponent(second.id)}/replay`, { method: 'POST' })).status,
    ).toBe(200);
    await h.graph.waitFor((c) => c.body.to === `+${waId}` && c.status === 200);
    expect(sentTo(waId)).toHaveLength(1);
  });
});
