/**
 * During a store outage every webhook is refused alike (503, so Meta retries): one error line
 * says so, not one per webhook with its stack trace (outside test QA45-F4: 1,072 lines in 8 s).
 */
import pino from 'pino';
import { expect, it } from 'vitest';
import { StorageUnavailableError } from '../../src/errors.ts';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

it('logs one line for 30 webhooks the store refused', async () => {
  const lines: Array<{ msg?: string; suppressed?: number }> = [];
  const logger = pino({ level: 'error' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const h = await startHarness({}, { logger });
  try {
    h.baton.backend.ingest = () => Promise.reject(new StorageUnavailableError('the store is away'));
    const ts = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 30; i++) {
      expect((await h.post(webhook([text(`155507710${String(i).padStart(2, '0')}`, 'hi', ts)]))).status).toBe(
        503,
      );
    }
    expect(lines.filter((l) => l.msg?.startsWith('webhook could not be stored'))).toHaveLength(1);
  } finally {
    await h.close();
  }
});
