/**
 * SPEC 1.8 (an agent can clear a stuck lease) after the holder died mid-send: the usual reason to
 * clear one. The next holder waits for a cleared holder's send in flight (see
 * lease-clear-send.test.ts), but only while that holder is alive: waiting out the send's whole
 * timeout for a dead one held the user's replies for about half a minute per clear (an outside
 * test: 31 s, and 49 s after three clears). The holder here never sent a heartbeat.
 */
import { describe, expect, it } from 'vitest';
import { RESET_CANCELLED_MAYBE_SENT } from '../../src/model/message.ts';
import { PHONE_ID } from '../support/payloads.ts';
import { harnessOn } from '../support/harness-on.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';
import { replyOfDeadHolder, sentOnceSoon } from './dead-holder.ts';

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
        // The agent is told so: clearing it is safe (outside test Q4).
        const lease = (await (await h.admin(`/sessions/${key.user}/lease`)).json()) as {
          lease: { holder: string; holder_live: boolean } | null;
        };
        expect(lease.lease).toMatchObject({ holder: 'dead-worker:4242', holder_live: false });

        expect(await backend.clearLease(key)).toBe(true);
        await sentOnceSoon(h, key, reply);
      },
      30_000,
    );

    it.skipIf(!available)(
      'a reset after the clear waits for no dead holder, and says its reply may have reached the user (QA134-F1)',
      async () => {
        const backend = h.baton.backend;
        const key = { channel: PHONE_ID, user: '15550830003' };
        const reply = await replyOfDeadHolder(backend, key, 'dead-worker:4244');
        expect(await backend.clearLease(key)).toBe(true);
        const started = Date.now();
        expect((await h.admin(`/sessions/${key.user}/reset`, { method: 'POST' })).status).toBe(200);
        expect(Date.now() - started).toBeLessThan(2_000);
        const out = (await (await h.admin(`/sessions/${key.user}/outbound`)).json()) as {
          outbound: Array<{ id: string; status: string; last_error?: string }>;
        };
        // Its claim is counted and no answer recorded: not "before it was sent".
        expect(out.outbound).toMatchObject([
          { id: reply.id, status: 'failed', last_error: RESET_CANCELLED_MAYBE_SENT },
        ]);
      },
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

describe.each(HARNESS_BACKENDS)(
  'clearing a live worker that never claimed a dead holder’s reply, on the %s backend',
  (_name, available, setup) => {
    // Its own harness: a running worker could take the session between the two clears.
    const h = harnessOn(available, setup, {}, { roles: { ingress: true, worker: false } });

    it.skipIf(!available)(
      'a clear that names a live worker which never claimed the reply: it goes out within moments, once',
      async () => {
        const backend = h.baton.backend;
        const key = { channel: PHONE_ID, user: '15550830002' };
        const reply = await replyOfDeadHolder(backend, key, 'dead-worker:4243');
        expect(await backend.clearLease(key)).toBe(true);
        // A live worker took the session up and was cleared too before it claimed anything (a
        // lock-clear storm): the mark names it, alive, and the claim is still the dead holder's.
        const live = 'qa-host:78:w1';
        await backend.heartbeat(live, 60_000);
        try {
          expect(await backend.acquireLease(key, live, 60_000)).not.toBeNull();
          expect(await backend.clearLease(key)).toBe(true);
          expect((await backend.leaseCleared(key))?.holder).toBe(live);
          expect((await backend.unsent(key))[0]).toMatchObject({ claims: 1, claimedBy: 'dead-worker:4243' });
          await sentOnceSoon(h, key, reply);
        } finally {
          await backend.removeWorker(live);
        }
      },
      40_000,
    );
  },
);
