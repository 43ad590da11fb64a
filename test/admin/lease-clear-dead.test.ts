/**
 * SPEC 1.8 (an agent can clear a stuck lease) after the holder died mid-send: the usual reason to
 * clear one. The next holder waits for a cleared holder's send in flight (see
 * lease-clear-send.test.ts), but only while that holder is alive: waiting out the send's whole
 * timeout for a dead one held the user's replies for about half a minute per clear (an outside
 * test: 31 s, and 49 s after three clears). The holder here never sent a heartbeat.
 */
import { describe, expect, it } from 'vitest';
import { PHONE_ID } from '../support/payloads.ts';
import { harnessOn } from '../support/harness-on.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';
import { replyOfDeadHolder } from './dead-holder.ts';

describe.each(HARNESS_BACKENDS)(
  'clearing a dead holder’s lease on the %s backend',
  (_name, available, setup) => {
    // No worker of its own until the clear: the test plays the holder that died.
    const h = harnessOn(available, setup, {}, { roles: { ingress: true, worker: false } });

    it.skipIf(!available)(
      'its reply goes out within moments of the clear, once',
      async () => {
        const backend = h.baton.backend;
        const key = { channel: PHONE_ID, user: '15550830001' };
        // A worker that took the session before this one, committed a claimed reply, and died.
        const reply = await replyOfDeadHolder(backend, key, 'dead-worker:4242');
        expect(await backend.holderAlive('dead-worker:4242')).toBe(false);

        expect(await backend.clearLease(key)).toBe(true);
        const cleared = Date.now();
        h.baton.engine.start(4);
        const sent = await h.graph.waitFor((c) => c.body.to === key.user, 10_000);
        expect(Date.now() - cleared).toBeLessThan(5_000);
        expect(sent.body.biz_opaque_callback_data).toBe(reply.callbackData);
        await new Promise((r) => setTimeout(r, 500));
        expect(h.graph.requests.filter((c) => c.body.to === key.user)).toHaveLength(1);
      },
      30_000,
    );

    it.skipIf(!available)(
      'a holder is alive while its worker is: the worker itself, or an agent change it runs',
      async () => {
        const backend = h.baton.backend;
        await backend.heartbeat('qa-host:77:w1', 10_000);
        expect(await backend.holderAlive('qa-host:77:w1')).toBe(true);
        expect(await backend.holderAlive('qa-host:77:w1:agent')).toBe(true);
        expect(await backend.holderAlive('qa-host:77:w')).toBe(false);
        expect(await backend.holderAlive('qa-host:77:w12')).toBe(false);
        await backend.removeWorker('qa-host:77:w1');
        expect(await backend.holderAlive('qa-host:77:w1:agent')).toBe(false);
      },
    );
  },
);
