/**
 * A rolling deploy with old and new workers side by side (outside test QA65-F2's remainder): a
 * session written by a newer version of its flow, or of a flow an older worker does not serve, is
 * left untouched by that worker for one that serves it, instead of being handed to an agent at
 * once. Only when no such worker takes it in time (a rollback, or a flow left out of BATON_FLOWS)
 * is it handed over as it stands. Real Redis and PostgreSQL; two workers' engines on one prefix
 * and schema.
 */
import pino from 'pino';
import { expect, it } from 'vitest';
import { z } from 'zod';
import type { Backend } from '../../src/backends/types.ts';
import { defineFlow, effect, type Flow } from '../../src/flow/define.ts';
import { effectIdFor } from '../../src/flow/transition.ts';
import type { SessionKey } from '../../src/model/message.ts';
import type { OutboundRecord } from '../../src/model/session.ts';
import { testEngine } from '../support/engine.ts';
import { describeServices } from '../support/services.ts';
import { newKey, outbound, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

interface LogLine {
  level: number;
  msg: string;
}

function signup(version: number): Flow {
  return defineFlow({
    id: 'signup',
    version,
    data: z.object({ first: z.string().optional() }),
    start: 'ask_first',
    steps: {
      ask_first: {
        say: 'First name?',
        accepts: 'text',
        to: ['done'],
        on: (i, c) => (i.type === 'text' ? c.goto('done', { first: i.text }) : c.retry()),
      },
      done: { say: 'Done', accepts: 'any', to: ['ask_first'], on: (_i, c) => c.restart('ask_first') },
    },
  });
}

const billing = defineFlow({
  id: 'billing',
  version: 1,
  start: 'ask_invoice',
  steps: {
    ask_invoice: { say: 'Invoice number?', accepts: 'text', to: ['done'], on: (_i, c) => c.goto('done') },
    done: { say: 'Thanks', accepts: 'any', to: ['ask_invoice'], on: (_i, c) => c.restart('ask_invoice') },
  },
}) as Flow;

/** A lookup flow at `version`, counting its lookups as `by`'s in `calls`. */
function lookup(version: number, calls: Record<string, number>, by: string): Flow {
  return defineFlow({
    id: 'fx',
    version,
    effects: {
      look: effect({
        run: async (_input: { q: number }) => {
          calls[by] = (calls[by] ?? 0) + 1;
          return { ok: true };
        },
      }),
    },
    start: 'ask',
    steps: {
      ask: {
        say: 'Order number?',
        to: ['looking'],
        on: (i, c) => (i.type === 'text' ? c.goto('looking') : c.retry()),
      },
      looking: {
        say: 'Looking it up',
        to: ['found'],
        effect: {
          use: 'look',
          input: () => ({ q: 1 }),
          onResult: (_r, c) => c.goto('found'),
          onFailure: (_f, c) => c.goto('found'),
        },
      },
      found: { say: 'Found it', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
    },
  });
}

describeServices('distributed: sessions an older worker cannot serve', () => {
  useCleanup();

  /** Two workers on one store: `newer` serves `newerFlows`, `older` serves `olderFlows`. */
  async function deployment(newerFlows: Flow[], olderFlows: Flow[], unservedWaitMs?: number) {
    const a = await makeBackend({ bufferMs: 0 });
    const b = await makeBackend({ bufferMs: 0 }, { prefix: a.prefix, schema: a.schema });
    const warned: LogLine[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => warned.push(JSON.parse(l) as LogLine) });
    const newer = testEngine(a.backend, { flows: newerFlows });
    const older = testEngine(b.backend, {
      flows: olderFlows,
      logger,
      ...(unservedWaitMs === undefined ? {} : { unservedWaitMs }),
    });
    afterThisTest(async () => {
      await newer.stop();
      await older.stop();
    });
    return { store: a.backend, newer, older, warned };
  }

  async function say(store: Backend, key: SessionKey, body: string, ts: number): Promise<void> {
    await store.ingest({ messages: [text(key, body, ts)], statuses: [] });
  }

  /**
   * A deployment (version 3 newer, version 2 older) with one session the newer worker started
   * ("hi") and the user's answer ("Ana") waiting; `t0` the first message's timestamp.
   */
  async function answeredByNewer(unservedWaitMs: number) {
    const d = await deployment([signup(3)], [signup(2)], unservedWaitMs);
    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    await say(d.store, key, 'hi', t0);
    await d.newer.runSession(key);
    await say(d.store, key, 'Ana', t0 + 1);
    return { ...d, key, t0 };
  }

  it('leaves a session written by a newer version of its flow for a worker of that version', async () => {
    const { store, newer, older, warned } = await deployment([signup(3)], [signup(2)]);
    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    await say(store, key, 'hi', t0);
    await newer.runSession(key);
    const before = await store.load(key);
    expect(before).toMatchObject({ flow: 'signup', flowVersion: 3, step: 'ask_first', needsAgent: false });

    await say(store, key, 'Ana', t0 + 1);
    await older.runSession(key);
    // Untouched: no version written, nothing consumed, nobody told a colleague will take over.
    expect(await store.load(key)).toEqual(before);
    expect((await store.pending(key, 10)).map((m) => m.content)).toEqual([{ type: 'text', body: 'Ana' }]);
    expect(warned.map((l) => l.msg)).toEqual([
      'a session written by version 3 of flow signup (this process serves version 2) is left for a worker of that version; if none runs for 30 s, it is handed to an agent',
    ]);

    // The baton is free again and the session due shortly: the newer worker applies the message.
    await sleep(250);
    await newer.runSession(key);
    expect(await store.load(key)).toMatchObject({
      flowVersion: 3,
      step: 'done',
      needsAgent: false,
      data: { first: 'Ana' },
    });
    const kinds = (await store.transitions(key)).map((r) => r.kind);
    expect(kinds).not.toContain('escalated');
    expect(kinds).not.toContain('held');
    const prompts = (await store.outbound(key)).map((o) => o.body).map((p) => JSON.stringify(p));
    expect(prompts.filter((p) => p.includes('take it from here'))).toEqual([]);
  });

  it('leaves a session of a flow it does not serve for a worker that serves it', async () => {
    const { store, newer, older } = await deployment([signup(1), billing], [signup(1)]);
    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    // The newer deploy serves billing; this session was routed to it (written as billing's).
    await say(store, key, 'hi', t0);
    await newer.runSession(key);
    const lease = (await store.acquireLease(key, 'router', 5000))!;
    const s = (await store.load(key))!;
    await store.commit(lease, {
      expectedVersion: s.version,
      snapshot: {
        ...s,
        version: s.version + 1,
        flow: 'billing',
        flowVersion: 1,
        step: 'ask_invoice',
        data: {},
      },
      records: [],
      outbound: [],
      consumed: [],
      deadLetters: [],
    });
    await store.releaseLease(lease);
    const before = await store.load(key);

    await say(store, key, 'INV-7', t0 + 1);
    await older.runSession(key);
    expect(await store.load(key)).toEqual(before);
    await sleep(250);
    await newer.runSession(key);
    expect(await store.load(key)).toMatchObject({ flow: 'billing', step: 'done', needsAgent: false });
  });

  it('waits anew each time a worker of the newer version served the session meanwhile (outside test QA68-F1)', async () => {
    // A user who writes every moment, during a rolling deploy: the newer worker serves each
    // message, the older one meets the session now and then. Past the wait since it first left
    // it, it must not hand over a session that is being served.
    const waitMs = 300;
    const { store, newer, older, key, t0 } = await answeredByNewer(waitMs);
    await older.runSession(key); // left
    await sleep(250);
    await newer.runSession(key); // served: at done
    await sleep(waitMs);
    await say(store, key, 'again', t0 + 2);
    await older.runSession(key); // the session moved on since: left again, not handed over
    expect(await store.load(key)).toMatchObject({ step: 'done', needsAgent: false, flowVersion: 3 });
    await sleep(250);
    await newer.runSession(key);
    expect(await store.load(key)).toMatchObject({ step: 'ask_first', needsAgent: false });
    expect((await store.transitions(key)).map((r) => r.kind)).not.toContain('escalated');
  });

  it('sends the reply a newer worker committed and could not send, and runs none of its effects (outside test QA109)', async () => {
    // A newer worker committed its prompt and its lookup, then died before sending or running
    // either. An older worker that meets the session next applies no message: it sends the prompt
    // (a send runs no flow code), but the lookup runs the newer flow's code and is left for a worker
    // of it. Left whole, the prompt waited until a newer worker took the session: up to 32 s on a
    // loaded machine (QA109).
    const a = await makeBackend({ bufferMs: 0 });
    const b = await makeBackend({ bufferMs: 0 }, { prefix: a.prefix, schema: a.schema });
    const sent: { by: string; text: string }[] = [];
    const calls = { newer: 0, older: 0 };
    const sender = (by: 'newer' | 'older') => async (m: { id: string; body: unknown }) => {
      sent.push({ by, text: JSON.stringify(m.body) });
      return { providerMessageId: `wamid.${m.id}` };
    };
    const newer = testEngine(a.backend, { flows: [lookup(3, calls, 'newer')], send: sender('newer') });
    const older = testEngine(b.backend, { flows: [lookup(2, calls, 'older')], send: sender('older') });
    afterThisTest(async () => {
      await newer.stop();
      await older.stop();
    });
    const store = a.backend;
    const key = newKey();
    await say(store, key, 'hi', Math.floor(Date.now() / 1000) - 60);
    await newer.runSession(key);
    const asked = (await store.load(key))!;
    expect(asked).toMatchObject({ flowVersion: 3, step: 'ask' });
    sent.length = 0;

    // The newer worker's commit for the user's order number, and its death.
    const lease = (await store.acquireLease(key, 'newer-died', 5000))!;
    const version = asked.version + 1;
    const effectId = effectIdFor(asked, version);
    const seq = asked.outboundSeq;
    const prompt: OutboundRecord = {
      ...outbound(key, version, 0, seq + 1),
      flow: 'fx',
      step: 'looking',
      body: { type: 'text', text: 'Looking it up' },
      callbackData: `baton:fx:looking:${version}`,
      createdAt: Date.now(),
      claimedBy: 'newer-died',
    };
    const look: OutboundRecord = {
      ...outbound(key, version, 1, seq + 2, false),
      flow: 'fx',
      step: 'looking',
      body: { type: 'text', text: '' },
      callbackData: `baton:fx:looking:${version}:effect`,
      createdAt: Date.now(),
      claims: 0,
      effect: { id: effectId, name: 'look', input: { q: 1 }, data: {} },
    };
    await store.commit(lease, {
      expectedVersion: asked.version,
      snapshot: {
        ...asked,
        version,
        step: 'looking',
        outboundSeq: seq + 2,
        awaiting: { id: effectId, name: 'look', step: 'looking', version },
      },
      records: [],
      outbound: [prompt, look],
      consumed: [],
      deadLetters: [],
    });
    await store.releaseLease(lease);
    const before = await store.load(key);

    await older.runSession(key);
    expect(sent).toEqual([{ by: 'older', text: JSON.stringify(prompt.body) }]);
    expect(calls).toEqual({ newer: 0, older: 0 });
    expect((await store.unsent(key)).map((o) => o.effect?.name)).toEqual(['look']);
    expect(await store.load(key)).toEqual(before);

    // A worker of the newer version runs the lookup with its own code; the prompt is not sent again.
    await sleep(250);
    await newer.runSession(key);
    expect(calls).toEqual({ newer: 1, older: 0 });
    expect(await store.load(key)).toMatchObject({ flowVersion: 3, step: 'found', needsAgent: false });
    expect(sent.filter((m) => m.text.includes('Looking it up'))).toHaveLength(1);
    expect(sent.map((m) => m.by)).toEqual(['older', 'newer']);
  });

  it('never hands the session over while a worker of the newer version runs (outside test QA109-F1)', async () => {
    // The newer version's only worker restarted, and came back busy: it has not served this
    // session since (it sent a reply it owed, which changes no version). Its heartbeat says it
    // runs version 3, so the older worker goes on leaving the session, past its wait; once no
    // worker of version 3 runs, the wait counts, and the session is handed over.
    const waitMs = 600;
    const { store, newer, older } = await deployment([signup(3)], [signup(2)], waitMs);
    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    await say(store, key, 'hi', t0);
    await newer.runSession(key);
    // A worker of version 3 that is alive and takes no session: its heartbeat alone.
    const busy = testEngine(store, { flows: [signup(3)] });
    afterThisTest(() => busy.stop());
    busy.start(0);
    await say(store, key, 'Ana', t0 + 1);
    older.start(2);
    await sleep(4 * waitMs);
    expect(await store.load(key)).toMatchObject({ flowVersion: 3, step: 'ask_first', needsAgent: false });
    expect((await store.pending(key, 10)).map((m) => m.content)).toEqual([{ type: 'text', body: 'Ana' }]);

    await busy.stop();
    const from = Date.now();
    let after = await store.load(key);
    while (after?.needsAgent !== true && Date.now() - from < 10_000) {
      await sleep(50);
      after = await store.load(key);
    }
    expect(after).toMatchObject({ flowVersion: 3, step: 'ask_first', needsAgent: true });
    expect(Date.now() - from).toBeGreaterThanOrEqual(waitMs);
  });

  it('counts the wait from the last moment a worker of the newer version was alive (outside test QA111-F1)', async () => {
    // A crash loop: the only newer worker came back, held the session a few seconds (its lookup)
    // and died again, so the older worker never left the session while it lived. The wait counts
    // from that worker's end, not from the older worker's first leaving.
    const waitMs = 4000;
    const { store, older, key } = await answeredByNewer(waitMs);
    const firstLeft = Date.now();
    await older.runSession(key); // left: no worker of version 3 runs
    const comeback = testEngine(store, { flows: [signup(3)] });
    afterThisTest(() => comeback.stop());
    await sleep(500);
    comeback.start(0);
    await sleep(2000);
    await comeback.stop(); // served until now
    const gone = Date.now();
    await sleep(Math.max(0, firstLeft + waitMs + 500 - Date.now()));
    // Past the wait since the first leaving, within it since the newer worker's end: left again.
    expect(Date.now() - gone).toBeLessThan(waitMs);
    await older.runSession(key);
    expect(await store.load(key)).toMatchObject({ flowVersion: 3, needsAgent: false });
    await sleep(Math.max(0, gone + waitMs + 200 - Date.now()));
    await older.runSession(key); // none ran for the whole wait: handed over
    expect(await store.load(key)).toMatchObject({ flowVersion: 3, step: 'ask_first', needsAgent: true });
  });

  it('hands the session to an agent when no worker of the newer version takes it in time', async () => {
    // A rollback: every worker runs version 2. The session comes back on its own (the release
    // made it due again) and is handed over once the wait is over, its data and version kept.
    const waitMs = 1000;
    const { store, newer, older, warned } = await deployment([signup(3)], [signup(2)], waitMs);
    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    await say(store, key, 'hi', t0);
    await newer.runSession(key);
    await newer.stop();

    const from = Date.now();
    await say(store, key, 'Ana', t0 + 1);
    older.start(2);
    let after = await store.load(key);
    while (after?.needsAgent !== true && Date.now() - from < 10_000) {
      await sleep(50);
      after = await store.load(key);
    }
    expect(after).toMatchObject({
      flowVersion: 3,
      step: 'ask_first',
      needsAgent: true,
      handoffReason: 'written by version 3 of flow signup; this process serves version 2',
    });
    expect(Date.now() - from).toBeGreaterThanOrEqual(waitMs);
    // Left several times in between (due again every 200 ms), told once.
    expect(warned.map((l) => l.msg)).toEqual([
      'a session written by version 3 of flow signup (this process serves version 2) is left for a worker of that version; if none runs for 1 s, it is handed to an agent',
      "a session written by version 3 of flow signup, newer than this process's version 2, was handed to an agent: run the newest flow (in distributed mode, on every worker)",
    ]);
  });
});
