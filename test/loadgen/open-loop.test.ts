/**
 * The open-loop generator (`loadgen/open-loop.ts`, the bench's `rate` scenario) against a real
 * embedded Baton: it offers the rate asked, whatever Baton answers, every webhook is a new
 * user's first message that Baton stores and answers with the order flow's first prompt, and
 * the report adds up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton, type Baton } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { runOpenLoop, startReplySink, type ReplySink } from '../../loadgen/index.ts';

const SECRET = 'open-loop-secret';

let sink: ReplySink;
let baton: Baton;
let url: string;
let dir: string;

beforeAll(async () => {
  sink = await startReplySink();
  dir = mkdtempSync(join(tmpdir(), 'baton-open-loop-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    BATON_DATA_DIR: dir,
    WHATSAPP_APP_SECRET: SECRET,
    WHATSAPP_API_BASE_URL: sink.url,
    ADMIN_TOKEN: 'open-loop-admin',
    BATON_BUFFER_MS: '0',
  });
  baton = await createBaton(config, { logger: pino({ level: 'silent' }) });
  url = (await baton.start())!;
});

afterAll(async () => {
  await baton?.stop();
  await sink?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('open-loop load', () => {
  it('offers 100 webhooks/s for 1 s: all stored, every new user answered, figures consistent', async () => {
    const r = await runOpenLoop({
      url,
      secret: SECRET,
      sink,
      ratePerSec: 100,
      durationMs: 1000,
      keepSamples: true,
    });
    expect(r.offered).toBe(100);
    expect(r.acked).toBe(100);
    expect(r.failed).toBe(0);
    expect(r.answered).toBe(100);
    expect(r.ack.count).toBe(100);
    expect(r.reply.count).toBe(100);
    // On schedule: the last webhook leaves about a second after the first.
    expect(r.windowMs).toBeGreaterThan(900);
    expect(r.samples!.sentMs).toHaveLength(100);
    expect(r.samples!.ackMs.every((ms) => ms >= 0)).toBe(true);
    expect(new Set(sink.calls.map((c) => c.to)).size).toBe(100);
  });
});
