/**
 * Outside test L2: with no crash anywhere, a 5 s Redis outage had 15 of 600 users prompted twice.
 * A worker's send went out just as Redis went away, so its record was refused; the lease ran out,
 * and the next holder found the reply unsent and sent it again. Now the worker keeps recording
 * the send in the background, and a holder in another process waits a little for the record of a
 * reply a live worker claimed. Real Redis (worker A reaches it through a proxy the test cuts) and
 * PostgreSQL; two engines, two backends, one session.
 */
import { expect, it } from 'vitest';
import type { OutboundRecord } from '../../src/model/session.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { REDIS_URL, describeServices } from '../support/services.ts';
import { testEngine } from '../support/engine.ts';
import { proxyOf } from '../support/tcp-proxy.ts';
import { eventually, newKey, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

const TTL = 1000;

async function twoWorkers(opts: { cutForMs: number }) {
  const { proxy, url: viaProxy } = await proxyOf(REDIS_URL);
  afterThisTest(() => proxy.close());
  const a = await makeBackend({ redisUrl: viaProxy });
  const b = await makeBackend({}, { prefix: a.prefix, schema: a.schema });
  const sends: Array<{ by: 'a' | 'b'; rec: OutboundRecord }> = [];
  const engineA = testEngine(a.backend, {
    lockTtlMs: TTL,
    workerId: 'host-a:1:aaaaaa',
    send: async (rec) => {
      sends.push({ by: 'a', rec });
      // Redis goes away for worker A just as the gateway accepts its reply.
      proxy.block();
      setTimeout(() => proxy.unblock(), opts.cutForMs).unref();
      return { providerMessageId: `wamid.a.${rec.id}` };
    },
  });
  const engineB: Engine = testEngine(b.backend, {
    lockTtlMs: TTL,
    workerId: 'host-b:2:bbbbbb',
    send: async (rec) => (sends.push({ by: 'b', rec }), { providerMessageId: `wamid.b.${rec.id}` }),
  });
  afterThisTest(async () => {
    await engineA.stop();
    await engineB.stop();
  });
  return { a: a.backend, b: b.backend, engineA, engineB, sends };
}

describeServices('distributed: a send whose record Redis refused', () => {
  useCleanup();

  it('is not sent again by the next holder while the worker that sent it is alive', async () => {
    const { b, engineA, engineB, sends } = await twoWorkers({ cutForMs: 1500 });
    // Worker A is alive: its heartbeat is on record (it beats as often as it renews a lease while it runs).
    await b.heartbeat(engineA.workerId, 15_000);
    const key = newKey();
    await b.ingest({ messages: [text(key, 'hi')], statuses: [] });
    await sleep(60); // past the buffer window

    await engineA.runSession(key);
    expect(sends.map((s) => s.by)).toEqual(['a']);
    // Redis (through B) still says the reply is unsent: A's record was refused.
    const [unsent] = await b.unsent(key);
    expect(unsent).toMatchObject({ id: sends[0]!.rec.id, claims: 1, claimedBy: engineA.workerId });

    // A's lease runs out while Redis is away from it; B takes the session and finds the reply.
    await sleep(TTL + 100);
    await engineB.runSession(key);
    // A's record landed once Redis was back, and B did not send the reply a second time.
    expect(sends.map((s) => s.by)).toEqual(['a']);
    await eventually(async () => (await b.unsent(key)).length === 0 || null, 5000, 'the record');
    const [out] = await b.outbound(key);
    expect(out).toMatchObject({ status: 'sent', providerMessageId: `wamid.a.${sends[0]!.rec.id}` });
    await sleep(2 * TTL);
    await engineB.runSession(key);
    expect(sends).toHaveLength(1);
  }, 30_000);

  it('is sent again at once when the worker that claimed it is gone (the one repeat SPEC 1.6 allows)', async () => {
    const { a, b, engineA, engineB, sends } = await twoWorkers({ cutForMs: 3000 });
    // No heartbeat on record for A: it looks crashed, and B does not wait for it.
    const key = newKey();
    await b.ingest({ messages: [text(key, 'hi')], statuses: [] });
    await sleep(60);
    await engineA.runSession(key);
    await sleep(TTL + 100);
    await engineB.runSession(key);
    expect(sends.map((s) => s.by)).toEqual(['a', 'b']);
    expect(await b.unsent(key)).toEqual([]);
    // (Redis back for A before the test ends: closing a backend cut from Redis takes seconds.)
    await eventually(
      () =>
        a.unsent(key).then(
          () => true,
          () => null,
        ),
      10_000,
      'Redis back for A',
    );
  }, 30_000);
});
