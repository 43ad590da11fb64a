/**
 * The simulator against a real embedded Baton: signed webhooks in, rendered replies out, status
 * webhooks back, and the chat commands (/replay, /burst, /user, /image, /location, /react).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Baton } from '../../src/app.ts';
import { startEmbeddedTarget } from '../support/embedded-target.ts';
import { startFakeGraphApi, type FakeGraphApi } from '../../src/simulate/fake-graph.ts';
import { SIM_CHANNEL } from '../../src/simulate/inbound.ts';
import { ConversationScript, runScript } from '../../src/simulate/script.ts';
import { Simulator, type BotReply } from '../../src/simulate/simulator.ts';

const SECRET = 'sim-test-secret';
let graph: FakeGraphApi;
let target: Awaited<ReturnType<typeof startEmbeddedTarget>>;
let baton: Baton;
let url: string;
let firstUser = 15550200001;

beforeAll(async () => {
  graph = await startFakeGraphApi();
  target = await startEmbeddedTarget(SECRET, graph.url, { BATON_BUFFER_MS: '300' }, { concurrency: 4 });
  ({ baton, url } = target);
});

afterAll(async () => {
  await target?.stop();
  await graph?.close();
});

/** A simulator whose users are new to Baton, and the replies it sees. */
let sim: Simulator;
let replies: BotReply[];
beforeEach(() => {
  firstUser += 100;
  sim = new Simulator({ url, graph, secret: SECRET, firstUser: String(firstUser) });
  const mine: BotReply[] = [];
  replies = mine;
  sim.onReply((r) => mine.push(r));
  return () => sim.close();
});

async function until<T>(fn: () => T | undefined, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`condition not met; replies: ${JSON.stringify(replies.map((r) => r.rendered.lines))}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
const quiet = (ms = 700): Promise<void> => new Promise((r) => setTimeout(r, ms));
const key = (user: string): { channel: string; user: string } => ({
  channel: SIM_CHANNEL.phoneNumberId,
  user,
});

describe('Simulator', () => {
  it('plays a script through an order and answers every send with sent, delivered and read', async () => {
    const result = await runScript(sim, {
      steps: [
        { send: 'hi', expect: ['what is your name'] },
        {
          send: 'Jane',
          expect: [
            {
              text: 'which product',
              choices: ['Trail Shoe', 'Rain Jacket', 'Day Pack'],
              kind: 'interactive:button',
            },
          ],
        },
        { send: '1', expect: ['ship'] },
        {
          send: '5 Elm St',
          expect: [{ match: 'Trail Shoe for Jane, shipped to 5 Elm St', choices: ['Confirm', 'Cancel'] }],
        },
        { send: '/pick cancel', expect: ['cancelled'] },
      ],
    });
    expect(result).toEqual({ ok: true, stepsPassed: 5, failures: [] });
    await sim.drain();
    expect(sim.statusFailures).toBe(0);
    const [session] = await baton.backend.findSessions(sim.currentUser);
    expect(session).toMatchObject({
      step: 'cancelled',
      data: { customer_name: 'Jane', product_id: 'sku_550e', shipping_address: '5 Elm St' },
    });
    const sent = await baton.backend.outbound(key(sim.currentUser));
    expect(sent).toHaveLength(5);
    expect(sent.map((m) => m.status)).toEqual(['read', 'read', 'read', 'read', 'read']);
    expect(sent.map((m) => m.providerMessageId).sort()).toEqual(replies.map((r) => r.wamid).sort());
  });

  it('reports a script whose replies do not come, and unexpected extra replies', async () => {
    const missing = await runScript(sim, {
      timeoutMs: 1500,
      settleMs: 100,
      steps: [{ send: 'hi', expect: ['name', 'a second reply'] }],
    });
    expect(missing.ok).toBe(false);
    expect(missing.failures).toEqual(['step 1 ("hi"): reply 2 of 2 never came ("a second reply")']);
    const wrong = await runScript(sim, {
      timeoutMs: 1500,
      steps: [{ send: 'Jane', expect: [{ choices: ['Trail Shoe'] }] }],
    });
    expect(wrong.failures[0]).toMatch(
      /expected choices \["Trail Shoe"\], got \["Trail Shoe","Rain Jacket","Day Pack"\]/,
    );
    const extra = await runScript(sim, { settleMs: 1000, steps: [{ send: 'reset', expect: [] }] });
    expect(extra.failures[0]).toMatch(
      /^step 1 \("reset"\): unexpected reply: Hi! Let us get your order started/,
    );
    // A step's own wait overrides the script's (outside test QA35-F8: only the script's was read).
    const own = await runScript(sim, {
      timeoutMs: 1,
      settleMs: 0,
      steps: [{ send: 'reset', expect: [], timeoutMs: 1500, settleMs: 1000 }],
    });
    expect(own.failures[0]).toMatch(/^step 1 \("reset"\): unexpected reply: Hi!/);
    expect(ConversationScript.safeParse({ steps: [{ send: 'x', timeoutMs: 20_000 }] }).success).toBe(true);
  });

  it('/replay delivers the same webhook again: acknowledged, and answered once', async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    expect(await sim.handleLine('/replay')).toEqual({ info: [], posted: [200] });
    await quiet();
    expect(replies).toHaveLength(1);
  });

  it('/burst sends two texts at once: one name, one product prompt', async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    const res = await sim.handleLine('/burst Jane | Smith');
    expect(res.posted).toEqual([200, 200]);
    await until(() => replies.length === 2);
    await quiet();
    expect(replies).toHaveLength(2);
    expect(replies[1]!.rendered.lines[0]).toBe('Thanks, Jane Smith. Which product would you like?');
  });

  it('/user switches users; each has a session of its own and its own menu', async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    expect((await sim.handleLine('/user 2')).info).toEqual([`now talking as user 2 (${firstUser + 1})`]);
    await sim.handleLine('hello');
    await until(() => replies.length === 2);
    expect(replies.map((r) => [r.label, r.user])).toEqual([
      ['1', String(firstUser)],
      ['2', String(firstUser + 1)],
    ]);
    // No menu yet for user 2: a number is a text (the name).
    await sim.handleLine('2');
    await until(() => replies.length === 3);
    expect(replies[2]!.rendered.lines[0]).toBe('Thanks, 2. Which product would you like?');
  });

  it('a number picks from the menu just sent; at a later text prompt it is the answer', async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    await sim.handleLine('Ann');
    await until(() => replies.length === 2);
    expect((await sim.handleLine('2')).posted).toEqual([200]); // Rain Jacket, from the product menu
    await until(() => replies.length === 3);
    await sim.handleLine('3'); // the address prompt is a text: "3" is an address, not a tap
    await until(() => replies.length === 4);
    const s = await baton.backend.load(key(sim.currentUser));
    expect(s?.data).toMatchObject({ product_id: 'sku_551a', shipping_address: '3' });
  });

  it("/pick <id> of an earlier message's button taps that message's: a stale tap (outside test QA41-F4)", async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    await sim.handleLine('Ann');
    await until(() => replies.length === 2);
    await sim.handleLine('1');
    await until(() => replies.length === 3);
    await sim.handleLine('5 Elm St');
    await until(() => replies.length === 4); // the confirm buttons: the latest menu
    expect((await sim.handleLine('/pick sku_777b')).posted).toEqual([200]);
    await until(() => replies.length === 5);
    expect(replies[4]!.rendered.lines[0]).toMatch(/moved on/);
    const s = await baton.backend.load(key(sim.currentUser));
    expect(s).toMatchObject({ step: 'confirm_order', data: { product_id: 'sku_550e' } });
    const [, tap] = (await baton.backend.transitions(key(sim.currentUser))).slice(-2);
    expect(tap).toMatchObject({ kind: 'stale_input' });
    // An id no message offered is still refused, naming what the latest menu has.
    expect(await sim.handleLine('/pick nope')).toMatchObject({ posted: [] });
    // After the notice, a number still taps the confirm menu, not a text (outside test QA58-F3:
    // it went as text, a retry of the confirm step).
    await sim.handleLine('1');
    await until(() => replies.length === 6);
    expect(await baton.backend.load(key(sim.currentUser))).toMatchObject({ step: 'completed' });
  });

  it('/image and /location are no text: the name prompt again; /react is ignored', async () => {
    await sim.handleLine('hi');
    await until(() => replies.length === 1);
    expect((await sim.handleLine('/image https://example.com/cat.jpg a cat')).posted).toEqual([200]);
    await until(() => replies.length === 2);
    expect((await sim.handleLine('/location 52.52,13.40 Berlin')).posted).toEqual([200]);
    await until(() => replies.length === 3);
    expect(replies.map((r) => r.rendered.lines[0])).toEqual(
      Array(3).fill('Hi! Let us get your order started. What is your name?'),
    );
    expect((await sim.handleLine('/react 👍')).posted).toEqual([200]);
    await quiet();
    expect(replies).toHaveLength(3);
    const kinds = (await baton.backend.transitions(key(sim.currentUser))).map((t) => t.kind);
    expect(kinds.slice(-3)).toEqual(['retry', 'retry', 'ignored']);
  });

  it('shows usage problems without sending, and a refused signature as the status', async () => {
    expect(await sim.handleLine('/location north')).toEqual({
      info: ['usage: /location <lat>,<long> [name]'],
      posted: [],
    });
    expect(await sim.handleLine('/pick 1')).toEqual({
      info: ['no buttons or rows to pick from yet'],
      posted: [],
    });
    // By id, a tap goes out before any menu (a simulator attached mid-conversation).
    expect((await sim.handleLine('/pick sku_550e')).posted).toEqual([200]);
    expect((await sim.handleLine('/bogus')).info[0]).toMatch(/unknown command/);
    const forged = new Simulator({ url, graph, secret: 'wrong-secret', firstUser: String(firstUser + 50) });
    expect(await forged.handleLine('hi')).toEqual({
      info: ['webhook answered 401: Baton checks signatures; pass --secret <its WHATSAPP_APP_SECRET>'],
      posted: [401],
    });
    forged.close();
  });
});
