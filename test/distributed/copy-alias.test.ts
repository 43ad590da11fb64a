/**
 * SPEC 1.7 after Redis let the session go: a copy of a prompt sent by a holder killed before
 * recording it is known by the id its status webhook taught (outbound-update-7.lua, ARGV[11]).
 * The alias reaches PostgreSQL with the record's state, and a button on that copy still names
 * the prompt once the idle session has expired from Redis.
 */
import { expect, it } from 'vitest';
import { describeServices, pgQuery } from '../support/services.ts';
import { eventually, newKey, nextBatch, outbound, status, text, uid } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

describeServices('distributed backend: a copy of a reply sent and never recorded', () => {
  useCleanup();

  it('is known from PostgreSQL once Redis no longer keeps the session', async () => {
    const { backend, schema } = await makeBackend({ idleTtlSec: 1 });
    const key = newKey();
    const m = text(key, 'hi');
    await backend.ingest({ messages: [m], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    const prompt = { ...outbound(key, 1, 0), callbackData: 'baton:order:ask_name:1' };
    await backend.commit(lease, nextBatch(lease, 0, [m.id], { outbound: [prompt] }));
    const [lost, resent] = [`wamid.${uid()}`, `wamid.${uid()}`];
    await backend.updateOutbound(prompt.id, { status: 'sent', attempts: 2, providerMessageId: resent });
    await backend.releaseLease(lease);
    await backend.ingest({
      messages: [],
      statuses: [status(key, lost, 'delivered', { bizOpaqueCallbackData: prompt.callbackData })],
    });

    await eventually(async () => {
      const rows = await pgQuery<{ aliases: string[] | null }>(
        schema,
        "SELECT record -> 'aliases' AS aliases FROM outbound WHERE id = $1",
        [prompt.id],
      );
      return rows[0]?.aliases?.[0] === lost ? true : null;
    });
    // Idle: gone from Redis (PostgreSQL keeps it).
    await new Promise((r) => setTimeout(r, 2500));
    const refs = await backend.resolvePrompts(key, [lost, resent, `wamid.${uid()}`]);
    expect(new Map(refs)).toEqual(
      new Map([
        [lost, { step: 'ask_name', version: 1 }],
        [resent, { step: 'ask_name', version: 1 }],
      ]),
    );
    // And the state read back from PostgreSQL keeps the alias and the send recorded.
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent', providerMessageId: resent });
  }, 30_000);
});
