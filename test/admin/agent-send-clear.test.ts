/**
 * SPEC 1.6 and 1.8 when the holder is an ingress's admin API (distributed mode): an agent's
 * message is on its way to a slow Graph when another agent clears the lease, and a worker then
 * takes the session up. The worker waits for the ingress to record the send, as it waits for a
 * live worker: an ingress beats as a baton holder while an agent's change runs, and is not
 * counted among the workers. The message had reached the user twice with no crash (outside test
 * QA133-F1). Real Redis and PostgreSQL, two Baton instances (an ingress and a worker), a fake
 * Graph that answers slowly.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, type Baton } from '../../src/app.ts';
import { takeSession } from '../support/agent-calls.ts';
import { harnessOn } from '../support/harness-on.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const [, available, setup] = HARNESS_BACKENDS.find(([name]) => name === 'distributed')!;

describe('an agent’s message in flight from an ingress when the lease is cleared (distributed)', () => {
  const h = harnessOn(
    available,
    setup,
    { BATON_LOCK_TTL_MS: '3000' },
    { roles: { ingress: true, worker: false } },
  );
  let worker: Baton | undefined;
  beforeAll(async () => {
    if (!available) return;
    worker = await createBaton(h.baton.config, {
      roles: { ingress: false, worker: true },
      logger: pino({ level: 'silent' }),
      engine: { sendBackoffMs: 10 },
    });
    await worker.start();
  });
  afterAll(async () => {
    await worker?.stop();
  });
  const call = (path: string, method: string, body: unknown): Promise<Response> =>
    h.admin(path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it.skipIf(!available)(
    'a worker waits for the ingress to record it: the user gets it once',
    async () => {
      const user = '15550702001';
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      await h.settled(user, 1);
      expect((await takeSession(h, user)).status).toBe(200);

      h.graph.failNext(1, {
        status: 200,
        delayMs: 3000,
        to: user,
        body: { messaging_product: 'whatsapp', messages: [{ id: 'wamid.agent-slow' }] },
      });
      const wrote = call(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here' });
      await h.graph.waitForArrival((b) => b.to === `+${user}` && JSON.stringify(b).includes('Ana here'));
      // The ingress holds the baton while its send is at the Graph, and is alive.
      const held = (await (await h.admin(`/sessions/${user}/lease?channel=${PHONE_ID}`)).json()) as {
        lease: { holder: string; holder_live: boolean } | null;
      };
      expect(held.lease).toMatchObject({ holder: `${h.baton.engine.workerId}:agent`, holder_live: true });
      expect((await h.baton.backend.stats()).workers).toBe(1);
      // Another agent clears the lease; the user writes, and the worker takes the session up.
      expect(await (await h.admin(`/sessions/${user}/lock`, { method: 'DELETE' })).json()).toEqual({
        released: true,
      });
      expect((await h.post(webhook([text(user, 'hello?', 1_750_000_010)]))).status).toBe(200);

      expect((await wrote).status).toBe(200);
      type Out = { outbound: Array<{ status: string; wamid?: string }> };
      await h.until(async () => {
        const out = (await (await h.admin(`/sessions/${user}/outbound`)).json()) as Out;
        return out.outbound.at(-1)?.status === 'sent';
      });
      const out = (await (await h.admin(`/sessions/${user}/outbound`)).json()) as Out;
      expect(out.outbound.at(-1)).toMatchObject({ status: 'sent', wamid: 'wamid.agent-slow' });
      // The worker has had the session for seconds by now: give a second send every chance.
      await new Promise((r) => setTimeout(r, 1500));
      const copies = h.graph.requests.filter(
        (c) => c.body.to === `+${user}` && JSON.stringify(c.body).includes('Ana here'),
      );
      expect(copies).toHaveLength(1);
      // Its changes done, the ingress no longer says it holds batons.
      await h.until(async () => !(await h.baton.backend.holderAlive(`${h.baton.engine.workerId}:agent`)));
    },
    40_000,
  );

  it.skipIf(!available)(
    "the ingress's stop does not wait out a worker's hung send for an agent's message, nor uses its claim (QA136-F3, F4)",
    async () => {
      const user = '15550702002';
      const key = { channel: PHONE_ID, user };
      // The worker's name prompt hangs at the Graph; an agent clears the lease and takes the session.
      h.graph.failNext(1, { status: 200, delayMs: 120_000, to: user });
      expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
      await h.graph.waitForArrival((b) => b.to === `+${user}`);
      expect(await (await h.admin(`/sessions/${user}/lock`, { method: 'DELETE' })).json()).toEqual({
        released: true,
      });
      expect((await takeSession(h, user)).status).toBe(200);
      // The agent's message waits behind the prompt the live worker is still sending.
      const wrote = call(`/sessions/${user}/agent/messages`, 'POST', { text: 'Ana here' });
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      await h.baton.stop();
      // The stop's grace (5 s), not the worker's send timeout (30 s).
      expect(Date.now() - started).toBeLessThan(15_000);
      expect((await wrote).status).toBe(200);
      // Nothing was attempted during the stop: the prompt's claim is the worker's alone, and the
      // agent's message waits for the next holder.
      expect(h.graph.requests.filter((c) => c.body.to === `+${user}`)).toHaveLength(0);
      const out = await worker!.backend.outbound(key);
      expect(out.find((o) => o.body.type === 'text' && o.body.text === 'Ana here')).toMatchObject({
        status: 'pending',
      });
      expect(out.find((o) => o.isPrompt && o.step === 'ask_name')).toMatchObject({ claims: 1 });
    },
    60_000,
  );
});
