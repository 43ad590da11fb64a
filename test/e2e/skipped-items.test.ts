/**
 * Inside a valid envelope, an item that cannot be stored in a session (a message naming no sender)
 * is skipped, its neighbours are stored, and the ingress says so in its log: ids and reasons, never
 * a text (the message itself is kept as an `unreadable` dead letter: test/e2e/unreadable.test.ts).
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { envelopeWith } from '../support/payloads.ts';

describe('skipped webhook items', () => {
  let h: Harness;
  const lines: Array<Record<string, unknown>> = [];
  beforeAll(async () => {
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    h = await startHarness({}, { logger });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('stores the neighbours and logs what it skipped, without its text', async () => {
    const body = envelopeWith({
      messages: [
        { id: 'wamid.NOSENDER', timestamp: '1750000000', type: 'text', text: { body: 'secret words' } },
        {
          from: '15550009991',
          id: 'wamid.FINE',
          timestamp: '1750000000',
          type: 'text',
          text: { body: 'hi' },
        },
      ],
    });
    const r = await h.post(body);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ received: 1 });
    const warned = lines.find((l) =>
      String(l.msg).startsWith('webhook items that name no session were skipped'),
    );
    expect(warned).toMatchObject({
      provider: 'cloud-api',
      skipped: 1,
      items: [{ kind: 'message', id: 'wamid.NOSENDER', reason: expect.stringContaining('no sender') }],
    });
    expect(JSON.stringify(lines)).not.toContain('secret words');
  });
});
