/**
 * Two agents at once: one resets a session while the other clears its lease. The clear takes
 * the reset's own baton away after the reset loaded the session, so the store refuses the
 * reset's commit (the fence did its job). The agent who reset must not get the store's
 * internal refusal (`BATON_ERR_FENCED`, a fencing token): the reset starts over on the session
 * as it now is and is applied once; if the baton keeps being taken away, the answer is the
 * documented, retryable `409 BATON_ERR_SESSION_BUSY`, and nothing was changed.
 */
import { describe, expect, it } from 'vitest';
import type { SessionView } from '../../src/model/session.ts';
import { harnessOn } from '../support/harness-on.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)(
  'an agent resets while another clears the lease (%s)',
  (_name, available, setup) => {
    const ts = 1_750_000_000;

    const h = harnessOn(available, setup);

    /** The other agent's "Clear lease", just before each of the next `times` admin commits. */
    function clearBeforeAdminCommits(times: number): { cleared: () => number } {
      const backend = h.baton.backend;
      const commit = backend.commit.bind(backend);
      let cleared = 0;
      backend.commit = async (lease, batch) => {
        if (cleared < times && lease.holder.endsWith(':admin')) {
          cleared += 1;
          expect(await backend.clearLease(lease)).toBe(true);
        }
        return commit(lease, batch);
      };
      return { cleared: () => cleared };
    }

    async function atAskProduct(user: string): Promise<SessionView> {
      expect(await h.post(webhook([text(user, 'hi', ts)])).then((r) => r.status)).toBe(200);
      await h.settled(user, 1);
      expect(await h.post(webhook([text(user, 'Jane', ts + 1)])).then((r) => r.status)).toBe(200);
      return h.settled(user, 2);
    }

    it.skipIf(!available)('the reset starts over and is applied once', async () => {
      const user = '15550818001';
      await atAskProduct(user);
      const race = clearBeforeAdminCommits(1);
      const r = await h.admin(`/sessions/${user}/reset?channel=${PHONE_ID}`, { method: 'POST' });
      expect(race.cleared()).toBe(1);
      expect(r.status).toBe(200);
      const s = (await r.json()) as SessionView;
      expect(s.current_step).toBeNull();
      expect(s.metadata.version).toBe(3);
      const kinds = (await h.transitions(user)).map((t) => [t.version, t.kind]);
      expect(kinds).toEqual([
        [1, 'advance'],
        [2, 'advance'],
        [3, 'admin_reset'],
      ]);
    });

    it.skipIf(!available)(
      'a baton taken away every time: 409 BATON_ERR_SESSION_BUSY (retryable), nothing changed',
      async () => {
        const user = '15550818002';
        await atAskProduct(user);
        clearBeforeAdminCommits(Number.POSITIVE_INFINITY);
        const r = await h.admin(`/sessions/${user}/reset?channel=${PHONE_ID}`, { method: 'POST' });
        expect(r.status).toBe(409);
        const body = (await r.json()) as { code: string; error: string };
        expect(body.code).toBe('BATON_ERR_SESSION_BUSY');
        expect(body.error).toContain('nothing was changed');
        expect(body.error).not.toContain('fencing token');
        expect((await h.session(user))!.metadata.version).toBe(2);
        expect((await h.transitions(user)).map((t) => t.kind)).toEqual(['advance', 'advance']);
      },
    );
  },
);
