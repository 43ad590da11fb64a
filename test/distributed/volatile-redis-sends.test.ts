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
import { eventually, newKey, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

describeServices('distributed sends with a Redis that keeps nothing, PostgreSQL away', () => {
  useCleanup();

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
