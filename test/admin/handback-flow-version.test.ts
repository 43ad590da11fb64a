/**
 * An agent's hand-back through a process whose flow is older than the one that wrote the session
 * (an admin API not yet upgraded, during a rolling deploy) is refused over HTTP with 409
 * `BATON_ERR_FLOW_NOT_SERVED_HERE`, and changes nothing: stamped with the old version, the session
 * was run by old workers and its data migrated a second time by the new flow (outside test
 * QA68-F3). Through a process that serves the session's version, the same hand-back goes through.
 * Through a newer version whose `migrate` throws: 500 naming the flow's code that threw, not the
 * error's words (they may quote the user's data), and nothing changes (outside test QA71-H1).
 * Both backends, real HTTP, the same stores across restarts.
 */
import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import type { Flow } from '../../src/flow/define.ts';
import { escalatedAndTaken } from '../support/agent-calls.ts';
import { harnessOn } from '../support/harness-on.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

/** The reference bot's flow as its next version: the same steps, one version up. */
const orderV2: Flow = { ...orderFlow, version: orderFlow.version + 1 };

/** A version after that whose upgrade of stored data throws (a bug in the flow's `migrate`). */
const orderV3: Flow = {
  ...orderFlow,
  version: orderFlow.version + 2,
  migrate: () => {
    throw new Error('cannot read "Ada Lovelace"');
  },
};

describe.each(HARNESS_BACKENDS)('a hand-back on the %s backend', (_name, available, setup) => {
  const h = harnessOn(available, setup, { BATON_MAX_RETRIES: '0' }, { flows: [orderV2] });
  const ts = 1_750_000_000;
  const send = (path: string, method: string, body?: unknown): Promise<Response> =>
    h.admin(path, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it.skipIf(!available)(
    'through a process serving an older version of the flow: 409, the session untouched; through one serving its version: handed back',
    async () => {
      const user = '15550418001';
      // Version 2 of the flow escalates the session (max retries 0) and an agent takes it.
      await escalatedAndTaken(h, user, ts);
      const before = await h.session(user);
      const records = (await h.transitions(user)).length;

      // A process still on version 1 serves the admin API.
      await h.restart({}, { flows: [orderFlow] });
      const refused = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
      expect(refused.status).toBe(409);
      const body = (await refused.json()) as { code: string; error: string };
      expect(body.code).toBe('BATON_ERR_FLOW_NOT_SERVED_HERE');
      expect(body.error).toContain(`version ${orderV2.version} of flow order`);
      expect(await h.session(user)).toEqual(before);
      expect(await h.transitions(user)).toHaveLength(records);

      // Version 2 again: the same hand-back goes through, stamped with version 2.
      await h.restart({}, { flows: [orderV2] });
      expect((await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' })).status).toBe(200);
      const back = await h.settled(user, 4);
      expect(back.current_step).toBe('ask_name');
      expect(back.metadata.needs_agent).toBe(false);
      expect((await h.transitions(user)).at(-1)).toMatchObject({ kind: 'handback', version: 4 });
    },
  );

  it.skipIf(!available)(
    "through a newer version whose migrate throws: 500 naming the migrate, not the error's words; the session untouched",
    async () => {
      const user = '15550418002';
      await h.restart({}, { flows: [orderV2] });
      await escalatedAndTaken(h, user, ts);
      const before = await h.session(user);
      const records = (await h.transitions(user)).length;

      await h.restart({}, { flows: [orderV3] });
      const refused = await send(`/sessions/${user}/agent`, 'DELETE', { step: 'ask_name' });
      expect(refused.status).toBe(500);
      const body = (await refused.json()) as { code: string; error: string; flow: string };
      expect(body).toMatchObject({ code: 'BATON_ERR_FLOW_HANDLER', flow: 'order' });
      expect(body.error).toContain(`in migrate from version ${orderV2.version}`);
      expect(body.error).not.toContain('Ada');
      expect(await h.session(user)).toEqual(before);
      expect(await h.transitions(user)).toHaveLength(records);
    },
  );
});
