/**
 * A reply the gateway refuses for good, while PostgreSQL is away (issue 7, point 7): its dead
 * letter is a fenced commit under the baton (journaled in Redis when PostgreSQL is away), made
 * before the record is marked failed, so the failure is never lost: once PostgreSQL is back
 * there is exactly one dead letter and the record is failed.
 */
import pino from 'pino';
import { expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { Engine } from '../../src/engine/engine.ts';
import { SendError } from '../../src/errors.ts';
import { Metrics } from '../../src/metrics.ts';
import { DATABASE_URL, describeServices, pgQuery } from '../support/services.ts';
import { proxyOf } from '../support/tcp-proxy.ts';
import { eventually, newKey, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

describeServices('distributed outbox: a permanent send failure with PostgreSQL away', () => {
  useCleanup();

  it('keeps the failure: one dead letter once PostgreSQL is back, the record failed, no send lost', async () => {
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    afterThisTest(() => proxy.close());
    const { backend, schema } = await makeBackend({ databaseUrl: viaProxy, pgRetryMs: 200 });
    let sends = 0;
    const engine = new Engine({
      backend,
      flows: new Map([[orderFlow.id, orderFlow]]),
      defaultFlow: 'order',
      senders: {
        'cloud-api': {
          send: async () => {
            sends += 1;
            // PostgreSQL goes away just as the gateway first refuses the reply.
            if (sends === 1) proxy.block();
            throw new SendError('(#131030) Recipient phone number not in allowed list', {
              retryable: false,
              httpStatus: 400,
              providerCode: 131030,
            });
          },
        },
      },
      bufferMs: 0,
      lockTtlMs: 5000,
      sessionTtlSec: 86_400,
      maxRetries: 3,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics(),
    });
    const key = newKey();
    await backend.ingest({ messages: [text(key, 'hi')], statuses: [] });
    await sleep(60); // past the buffer window

    // The state change commits; the send fails for good and PostgreSQL goes away at that moment,
    // so the dead letter cannot be stored in full yet.
    await engine.runSession(key);
    expect(sends).toBe(1);
    // The dead letter was committed under the baton (in Redis, journaled for PostgreSQL), and
    // only then the record marked failed: it is no longer unsent (read from Redis).
    expect(await backend.unsent(key)).toEqual([]);
    const rec = { id: `${key.channel}:${key.user}:1` };

    proxy.unblock();
    await eventually(
      async () => {
        await engine.runSession(key);
        // The pool may still hand out a connection the cut killed: a read can fail once.
        const [r] = await backend.outbound(key).catch(() => []);
        return r?.status === 'failed' ? r : null;
      },
      20_000,
      'the record to be failed once PostgreSQL is back',
    );
    const letters = await eventually(
      async () => {
        const rows = await pgQuery<{ id: string; ref: string; reason: string }>(
          schema,
          "SELECT id, ref, reason FROM dead_letters WHERE kind = 'outbound'",
        );
        return rows.length > 0 ? rows : null;
      },
      15_000,
      'the dead letter in PostgreSQL',
    );
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ ref: rec.id });
    expect(letters[0]!.reason).toContain('131030');
  });
});
