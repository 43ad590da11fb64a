/**
 * Where Redis keeps nothing across a restart (the intake log on), a reply goes only once the
 * state change that made it is in PostgreSQL: a commit made while PostgreSQL is away is applied
 * in Redis, and its reply waits, as for a refusing gateway, until PostgreSQL has the copy.
 * Before, the reply went at once; Redis then restarted empty undid the state the user was
 * answering, and their next message met the state before it (outside test QA33-F1: 28 of 60
 * users stalled, prompts of one version for two different steps).
 */
import pino from 'pino';
import { expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { Engine } from '../../src/engine/engine.ts';
import { Metrics } from '../../src/metrics.ts';
import { DATABASE_URL, describeServices, pgQuery } from '../support/services.ts';
import { proxyOf } from '../support/tcp-proxy.ts';
import { eventually, newKey, nextBatch, outbound, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { startPrivateRedis } from '../support/redis-server.ts';

describeServices('distributed sends with a Redis that keeps nothing, PostgreSQL away', () => {
  useCleanup();

  // The commit's copy failed (PostgreSQL away), then Redis restarted empty: the copy tried again
  // read an empty journal, copied nothing, and called the commit durable, so its reply went out;
  // the next holder applied the restored message again and sent it a second time (outside test
  // QA79-F2: 13 replies sent before their commit, each delivered twice).
  it('a commit Redis lost before PostgreSQL had it lets no reply go: its copy is tried again from what the commit read, and the lease is gone', async () => {
    const redis = await startPrivateRedis({ persist: false });
    afterThisTest(() => redis.stop());
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    afterThisTest(() => proxy.close());
    const { backend, schema } = await makeBackend({
      redisUrl: redis.url,
      databaseUrl: viaProxy,
      pgRetryMs: 200,
      commandTimeoutMs: 1000,
      intakeLog: 'on',
    });
    const key = newKey();
    const m1 = text(key, 'hi', 1_750_000_000);
    await backend.ingest({ messages: [m1], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    proxy.block();
    // Applied in Redis; PostgreSQL's copy failed.
    await backend.commit(lease, nextBatch(lease, 0, [m1.id], { outbound: [outbound(key, 1, 1)] }));
    expect(await backend.sendable(lease)).toBe(false);
    await redis.kill();
    await redis.restart(); // empty: the lease, the state and the journal are gone
    proxy.unblock();
    await eventually(async () => ((await backend.health()).redis ? true : null), 10_000, 'Redis back');
    expect(await backend.sendable(lease)).toBe(false);
    // The page the commit read was copied again. Either PostgreSQL took it (version 1 there: the
    // next holder reloads it and sends the reply from it), or it refused it, Redis back with a new
    // fence floor first (nothing of that commit anywhere: its message is back in the mailbox from
    // the intake log, for the next holder to apply). Which one depends on the race with the
    // restore; neither lets this holder send.
    const rows = await pgQuery<{ version: string }>(schema, 'SELECT version FROM sessions');
    if (rows.length > 0) expect(rows.map((r) => Number(r.version))).toEqual([1]);
    else
      await eventually(
        async () => ((await backend.pending(key, 10)).map((m) => m.id).includes(m1.id) ? true : null),
        10_000,
        'the message back in its mailbox',
      );
  }, 60_000);

  it('hold a reply back until PostgreSQL has the state change that made it', async () => {
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    afterThisTest(() => proxy.close());
    const { backend, schema } = await makeBackend({
      databaseUrl: viaProxy,
      pgRetryMs: 200,
      intakeLog: 'on',
    });
    const sent: string[] = [];
    const engine = new Engine({
      backend,
      flows: new Map([[orderFlow.id, orderFlow]]),
      defaultFlow: 'order',
      senders: {
        'cloud-api': {
          send: async (m) => {
            sent.push(m.callbackData);
            return { providerMessageId: `wamid.out.${sent.length}` };
          },
        },
      },
      bufferMs: 0,
      lockTtlMs: 5000,
      sessionTtlSec: 86_400,
      maxRetries: 3,
      sendBackoffMs: 50,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics(),
    });
    afterThisTest(() => engine.stop());
    const key = newKey();
    await backend.ingest({ messages: [text(key, 'hi', 1_750_000_000)], statuses: [] });
    await sleep(60);
    await engine.runSession(key);
    expect(sent).toEqual(['baton:order:ask_name:1']);
    await backend.ingest({ messages: [text(key, 'Jane', 1_750_000_001)], statuses: [] });
    await sleep(60);

    // PostgreSQL goes away once the name is stored: the turn commits in Redis alone, and the
    // product prompt waits.
    proxy.block();
    const turn = engine.runSession(key);
    await sleep(2000);
    expect(sent).toEqual(['baton:order:ask_name:1']);

    proxy.unblock();
    await turn.catch(() => undefined);
    await eventually(
      async () => {
        await engine.runSession(key);
        return sent.length > 1 ? sent : null;
      },
      20_000,
      'the product prompt once PostgreSQL is back',
    );
    expect(sent).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
    // Sent only once PostgreSQL had the state it came from.
    const rows = await pgQuery<{ version: string }>(schema, 'SELECT version FROM sessions');
    expect(rows.map((r) => Number(r.version))).toEqual([2]);
  }, 60_000);
});
