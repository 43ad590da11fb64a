/**
 * A deploy renames a step whose effect is running (outside test QA65-F1, through the engine): the
 * old worker is stopped while the author's API is still answering, lets that call finish and
 * stores its result; the new version's worker moves the session to the renamed step, which runs
 * the same effect, and applies that result. The author's API (a real HTTP server) is called once,
 * with one Idempotency-Key, and the user gets the step's prompt once and the result once.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { defineFlow, effect, type Flow } from '../../src/flow/define.ts';
import { testEngine } from '../support/engine.ts';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** The author's pricing API: answers after `delayMs`, and remembers each call's Idempotency-Key. */
async function pricingApi(delayMs: number): Promise<{ url: string; keys: string[] }> {
  const keys: string[] = [];
  const server: Server = createServer((req, res) => {
    keys.push(String(req.headers['idempotency-key']));
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ total: 12 }));
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/price`, keys };
}

function pizza(version: 1 | 2, url: string): Flow {
  const price = effect({
    attempts: 1,
    timeoutMs: 5000,
    run: async (_input: { size: string }, { effectId, signal }) => {
      const res = await fetch(url, { method: 'POST', headers: { 'idempotency-key': effectId }, signal });
      return (await res.json()) as { total: number };
    },
  });
  if (version === 1)
    return defineFlow({
      id: 'pizza',
      version: 1,
      effects: { price },
      start: 'pricing',
      steps: {
        pricing: {
          say: 'Working out your price…',
          to: ['confirm'],
          effect: {
            use: 'price',
            input: () => ({ size: 'L' }),
            onResult: (r, c) => c.goto('confirm', { total: r.total }),
            onFailure: (_f, c) => c.handoff('pricing failed'),
          },
        },
        confirm: {
          say: (d) => `That is ${String(d.total)}.`,
          accepts: 'any',
          to: ['pricing'],
          on: (_i, c) => c.restart('pricing'),
        },
      },
    });
  // Version 2 renamed `pricing` to `quoting`; the step runs the same effect.
  return defineFlow({
    id: 'pizza',
    version: 2,
    effects: { price },
    moved: { pricing: 'quoting' },
    start: 'quoting',
    steps: {
      quoting: {
        say: 'Pricing your pizza…',
        to: ['confirm'],
        effect: {
          use: 'price',
          input: () => ({ size: 'L' }),
          onResult: (r, c) => c.goto('confirm', { total: r.total }),
          onFailure: (_f, c) => c.handoff('pricing failed'),
        },
      },
      confirm: {
        say: (d) => `That is ${String(d.total)}.`,
        accepts: 'any',
        to: ['quoting'],
        on: (_i, c) => c.restart('quoting'),
      },
    },
  });
}

it('a step renamed while its effect runs: one call to the API, one prompt, the result applied', async () => {
  const api = await pricingApi(800);
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
  await backend.init();
  closers.push(() => backend.close());
  const sent: string[] = [];
  const send = async (m: { id: string; body: unknown }): Promise<{ providerMessageId: string }> => {
    sent.push(JSON.stringify(m.body));
    return { providerMessageId: `wamid.${m.id}` };
  };
  const key = { channel: '106540352242922', user: '15550001111' };

  const v1 = testEngine(backend, { flows: [pizza(1, api.url)], send });
  await backend.ingest({
    messages: [
      { id: 'w1', provider: 'cloud-api', ...key, timestamp: 1, content: { type: 'text', body: 'hi' } },
    ],
    statuses: [],
  });
  const turn = v1.runSession(key);
  // The call is on its way: the deploy stops the old worker, which lets it finish.
  for (let i = 0; i < 100 && api.keys.length === 0; i += 1) await new Promise((r) => setTimeout(r, 20));
  expect(api.keys).toHaveLength(1);
  await v1.stop();
  await turn;
  expect((await backend.load(key))?.step).toBe('pricing');

  const v2 = testEngine(backend, { flows: [pizza(2, api.url)], send });
  closers.push(() => v2.stop());
  await v2.runSession(key);
  expect(await backend.load(key)).toMatchObject({ flowVersion: 2, step: 'confirm', data: { total: 12 } });
  expect(api.keys).toHaveLength(1);
  expect(sent.map((b) => (JSON.parse(b) as { text?: string }).text)).toEqual([
    'Working out your price…',
    'That is 12.',
  ]);
  const records = (await backend.transitions(key)).map((r) => [r.kind, r.from_step, r.to_step]);
  expect(records.slice(-2)).toEqual([
    ['advance', 'pricing', 'quoting'],
    ['advance', 'quoting', 'confirm'],
  ]);
});
