/**
 * Poison batches (issue 7, finding 2): flow code that throws in `say`, or an `on` forced to be
 * async and rejecting, must not spin a worker, kill the process or block the session. The batch
 * is tried again, then dead-lettered with its error; the user gets one error notice; intake keeps
 * answering; a restart never runs the batch again; no promise rejection goes unhandled.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { defineFlow, type Outcome } from '../../src/flow/define.ts';
import type { DeadLetter } from '../../src/model/session.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

let sayCalls = 0;
const poison = defineFlow({
  id: 'poison',
  start: 'ask',
  steps: {
    ask: {
      say: 'Say something',
      accepts: 'text',
      to: ['explode', 'later', 'ask'],
      on: (input, c) => {
        if (input.type === 'text' && input.text === 'explode') return c.goto('explode');
        if (input.type === 'text' && input.text === 'async') {
          // What an author gets by forcing an async handler past the type checker.
          const forced = (async (): Promise<Outcome<string>> => {
            await Promise.resolve();
            throw new Error('the shop API is down');
          }) as unknown as () => Outcome<'later'>;
          return forced();
        }
        return c.goto('ask');
      },
    },
    explode: {
      say: () => {
        sayCalls += 1;
        throw new TypeError("Cannot read properties of undefined (reading 'name')");
      },
      accepts: 'text',
      to: ['ask'],
      on: (_i, c) => c.goto('ask'),
    },
    later: { say: 'Later', accepts: 'any', to: ['ask'], on: (_i, c) => c.goto('ask') },
  },
});

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

let h: Harness;
beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  h = await startHarness({}, { flows: [poison] });
});
afterAll(async () => {
  await h.close();
  process.off('unhandledRejection', onUnhandled);
});
beforeEach(() => {
  sayCalls = 0;
});
afterEach(() => {
  expect(unhandled).toEqual([]);
});

async function letters(): Promise<DeadLetter[]> {
  const r = await h.admin('/dead-letters');
  return ((await r.json()) as { dead_letters: DeadLetter[] }).dead_letters;
}

describe('a poison message', () => {
  it('a `say` that throws: tried 3 times, dead-lettered with its error, one notice, the session goes on', async () => {
    const u = '15550007001';
    const ts = 1_750_000_000;
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    const poisonMsg = text(u, 'explode', ts + 1);
    expect((await h.post(webhook([poisonMsg]))).status).toBe(200);
    const letter = await h.until(async () => (await letters()).find((l) => l.ref === poisonMsg.id));
    expect(letter.kind).toBe('inbound');
    expect(letter.reason).toMatch(/BATON_ERR_FLOW_HANDLER after 3 attempts/);
    // Named by the step whose `say` threw, and the step the batch began at.
    expect(letter.reason).toMatch(
      /flow poison, step explode: say: TypeError: Cannot read properties.* \(the batch began at ask\)/,
    );
    expect(sayCalls).toBe(3);

    // State unchanged, one error notice answering that message, nothing else.
    const s = await h.settled(u, 1);
    expect(s).toMatchObject({ current_step: 'ask', metadata: { version: 1 } });
    const notice = await h.graph.waitFor(
      (c) => c.body.biz_opaque_callback_data === `baton:poison:ask:1:${poisonMsg.id}`,
    );
    expect(JSON.stringify(notice.body.text)).toMatch(/went wrong/);
    expect(h.graph.sent.filter((c) => c.body.to === `+${u}`)).toHaveLength(2);

    // Intake kept answering, and the session goes on with the next message.
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    expect((await h.post(webhook([text(u, 'fine', ts + 2)]))).status).toBe(200);
    await h.settled(u, 2);

    // A restart does not run the dead-lettered batch again.
    await h.restart();
    expect((await h.post(webhook([text(u, 'still fine', ts + 3)]))).status).toBe(200);
    await h.settled(u, 3);
    expect(sayCalls).toBe(3);
    expect((await letters()).filter((l) => l.ref === poisonMsg.id)).toHaveLength(1);
    expect(h.graph.sent.filter((c) => c.body.biz_opaque_callback_data?.endsWith(poisonMsg.id))).toHaveLength(
      1,
    );

    // Replayed now, it is older than what the user wrote since: recorded late, and the agent is told.
    const url = `/dead-letters/${encodeURIComponent(letter.id)}/replay`;
    expect((await h.admin(url, { method: 'POST' })).status).toBe(409);
    const replay = await h.admin(`${url}?confirm=true`, { method: 'POST' });
    expect(await replay.json()).toEqual({
      replayed: true,
      warning: expect.stringContaining('recorded as late'),
    });
    await h.until(async () =>
      (await h.transitions(u)).some((t) => t.kind === 'late' && t.message_ids.includes(poisonMsg.id)),
    );
  });

  it('an async handler that rejects: a clear flow error at once, never a silent retry or an unhandled rejection', async () => {
    const u = '15550007002';
    const ts = 1_750_000_000;
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    const m = text(u, 'async', ts + 1);
    expect((await h.post(webhook([m]))).status).toBe(200);
    const letter = await h.until(async () => (await letters()).find((l) => l.ref === m.id));
    expect(letter.reason).toMatch(/BATON_ERR_FLOW_HANDLER after 1 attempt: .*returned a Promise/);
    const s = await h.settled(u, 1);
    expect(s).toMatchObject({ current_step: 'ask', metadata: { version: 1, retry_count: 0 } });
    // Let the rejected promise settle: the afterEach hook checks nobody missed it.
    await new Promise((r) => setTimeout(r, 50));
    const toUser = h.graph.sent
      .filter((c) => c.body.to === `+${u}`)
      .map((c) => c.body.biz_opaque_callback_data);
    expect(toUser).toEqual(['baton:poison:ask:1', `baton:poison:ask:1:${m.id}`]);
  });
});
