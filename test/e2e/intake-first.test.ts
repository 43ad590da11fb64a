/**
 * Intake never waits behind processing (issue 10): in embedded mode webhooks and the engine share
 * one event loop. With a backlog of sessions whose flow code is slow (5 ms a turn, synchronous),
 * webhooks posted meanwhile are answered after a few doses of engine work, before the backlog
 * is done, and the backlog is still worked off completely (nothing starves).
 * `test/unit/turn-pacer.test.ts` checks the dosing itself.
 * Counted in turns run between the webhook leaving and its answer, not in milliseconds, so a
 * busy machine does not decide the outcome.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { TurnPacerOptions } from '../../src/backends/embedded/turn-pacer.ts';
import { defineFlow } from '../../src/flow/define.ts';
import { parseCloudApiWebhook } from '../../src/providers/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

/** Turns the flow has run (its prompt is rendered once per turn). */
let turns = 0;

/** Keeps the thread busy, as heavy flow code would. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

const slow = defineFlow({
  id: 'slow',
  start: 'greet',
  steps: {
    greet: {
      say: () => {
        turns += 1;
        spin(5);
        return 'Hello';
      },
      accepts: 'text',
      to: ['greet'],
      on: (_i, c) => c.goto('greet'),
    },
  },
});

const BACKLOG = 300;
const PROBES = 10;
const T0 = 1_750_000_000;
let h: Harness | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Starts Baton (embedded, pacing as given), posts `BACKLOG` new users' first messages, waits
 * until the engine is busy with them, then posts `PROBES` more, one after another: the most turns run between one of them leaving and its
 * answer, and how many the engine had run by the last answer.
 */
async function probe(pacing: TurnPacerOptions | false): Promise<{ during: number; atAnswer: number }> {
  turns = 0;
  const dir = mkdtempSync(join(tmpdir(), 'baton-intake-first-'));
  dirs.push(dir);
  const opts = { dataDir: dir, bufferMs: 0, dedupeTtlSec: 3650 * 86400, pacing };
  // The backlog is stored first, by a backend that runs no engine: at start it is all due at once.
  const store = new EmbeddedBackend(opts);
  await store.init();
  const users = Array.from({ length: BACKLOG }, (_, i) => `1555008${String(i).padStart(4, '0')}`);
  await store.ingest(parseCloudApiWebhook(webhook(users.map((u) => text(u, 'hi', T0)))));
  await store.close();
  const harness = await startHarness(
    { BATON_BUFFER_MS: '0' },
    { flows: [slow], backend: new EmbeddedBackend(opts) },
  );
  h = harness;
  await harness.until(() => turns >= 10);
  // Webhooks one after another while the backlog is worked off: the most turns any one waited.
  let during = 0;
  let atAnswer = 0;
  for (let i = 0; i < PROBES; i += 1) {
    const before = turns;
    const answer = await harness.post(webhook([text(`1555009${String(i).padStart(4, '0')}`, 'hi', T0)]));
    atAnswer = turns;
    expect(answer.status).toBe(200);
    during = Math.max(during, atAnswer - before);
  }
  // Nothing starves: every user of the backlog, and the late ones, get a turn.
  await harness.until(() => turns >= BACKLOG + PROBES, 30_000);
  return { during, atAnswer };
}

describe('webhooks posted while the engine works off a backlog', () => {
  it('are answered after a few doses of engine work, not behind the backlog, which is then finished', async () => {
    const { during, atAnswer } = await probe({ claims: 4 });
    // 32 sessions at once is what the engine starts unpaced (its concurrency).
    expect(during).toBeLessThan(32);
    expect(atAnswer).toBeLessThan(BACKLOG);
  });
});
