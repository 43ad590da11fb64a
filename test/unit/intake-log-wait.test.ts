/**
 * A PostgreSQL that hangs (SIGSTOPped, a stalled disk: no error comes) held webhooks 9-21 s with
 * the intake log on, until the query timeout (an outside test). A webhook now waits at most
 * INTAKE_LOG_WAIT_MS for its messages to be logged, then is answered 503 (a StorageUnavailable
 * error), so Meta sends it again. The logic only: the real outage is the processes suite's.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StorageUnavailableError } from '../../src/errors.ts';
import { INTAKE_LOG_WAIT_MS, IntakeLog } from '../../src/backends/distributed/intake-log.ts';
import type { PgStore } from '../../src/backends/distributed/pg-store.ts';
import type { InboundMessage } from '../../src/model/message.ts';

const message: InboundMessage = {
  channel: '106540352242922',
  user: '15550000001',
  id: 'wamid.hang',
  provider: 'cloud-api',
  waId: '15550000001',
  timestamp: 1_750_000_000,
  content: { type: 'text', body: 'hi' },
};

afterEach(() => {
  vi.useRealTimers();
});

describe('the intake log against a PostgreSQL that hangs', () => {
  it('gives up on a webhook after INTAKE_LOG_WAIT_MS with a 503 error', async () => {
    vi.useFakeTimers();
    const hanging = { query: () => new Promise(() => undefined) } as unknown as PgStore;
    const log = new IntakeLog(hanging);
    const logged = log.append([message], [JSON.stringify(message)], Date.now());
    const outcome = logged.then(
      () => 'logged',
      (err: unknown) => err,
    );
    await vi.advanceTimersByTimeAsync(INTAKE_LOG_WAIT_MS - 1);
    let settled = false;
    void outcome.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    const err = await outcome;
    expect(err).toBeInstanceOf(StorageUnavailableError);
    expect((err as StorageUnavailableError).code).toBe('BATON_ERR_STORAGE_UNAVAILABLE');
  });

  it('answers as soon as PostgreSQL does', async () => {
    const answering = { query: async () => [] } as unknown as PgStore;
    const log = new IntakeLog(answering);
    const at = Date.now();
    // Nothing consumed; the message's place in the log is the one this append gave it.
    await expect(log.append([message], [JSON.stringify(message)], at)).resolves.toEqual({
      consumed: new Set(),
      places: [[at, 1]],
    });
  });
});
