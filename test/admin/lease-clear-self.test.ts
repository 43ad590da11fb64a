/**
 * SPEC 1.6 and 1.8 under a storm of lease clears (an outside soak: 5,893 clears while workers
 * were SIGKILLed): a reply claimed by a holder that died stays claimed, and the clear mark names
 * the holder cleared last. When that is this very process (a clear of one of its own earlier
 * turns), it knows whether a send of its own is in flight: none, once that turn has ended. The
 * reply went out only after the whole send timeout (31 s) while this process waited for itself.
 */
import { describe, expect, it } from 'vitest';
import { PHONE_ID } from '../support/payloads.ts';
import { harnessOn } from '../support/harness-on.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';
import { replyOfDeadHolder, sentOnceSoon } from './dead-holder.ts';

describe.each(HARNESS_BACKENDS)(
  'a lease cleared from this process, on the %s backend',
  (_name, available, setup) => {
    // No worker of its own until the clears: the test plays the holders before it.
    const h = harnessOn(available, setup, {}, { roles: { ingress: true, worker: false } });

    it.skipIf(!available)(
      'a reply a dead holder claimed goes out within moments, once: this process waits for no send of its own',
      async () => {
        const backend = h.baton.backend;
        const key = { channel: PHONE_ID, user: '15550830101' };
        // A worker that took the session before this one, committed a claimed reply, and died.
        const reply = await replyOfDeadHolder(backend, key, 'dead-worker:4343');
        expect(await backend.clearLease(key)).toBe(true);

        // This process took the session up, and the storm cleared that turn's lease too: the mark
        // now names this process, which is alive.
        const self = h.baton.engine.workerId;
        expect(await backend.acquireLease(key, self, 60_000)).not.toBeNull();
        expect(await backend.clearLease(key)).toBe(true);
        expect((await backend.leaseCleared(key))?.holder).toBe(self);
        await sentOnceSoon(h, key, reply);
      },
      40_000,
    );
  },
);
