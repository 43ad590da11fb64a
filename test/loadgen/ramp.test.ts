/**
 * A user who starts late in a ramp stamps their messages from when they start, as WhatsApp does.
 * Stamped from the run's start, a ramp longer than the target's BATON_DEDUPE_TTL made the later
 * users' messages `late` (recorded, never applied) and the verdict NOT CLEAN, for a Baton that did
 * nothing wrong (outside test QA69-F2). Against a real embedded Baton.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../loadgen/index.ts';
import { startLoadTarget, type LoadTarget } from '../support/load-target.ts';

let t: LoadTarget;
beforeAll(async () => {
  t = await startLoadTarget('ramp', { BATON_BUFFER_MS: '0', BATON_DEDUPE_TTL: '3s' });
});
afterAll(async () => {
  await t?.close();
});

describe('a ramp longer than the dedupe window', () => {
  it('users starting 4 and 6 s into the ramp are not late: a clean verdict', async () => {
    const report = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 4,
      rampMs: 6_000,
      seed: 3,
      chaos: { duplicates: 0, retaps: 0, shuffle: false, splitTexts: false, concurrentBursts: false },
      replyTimeoutMs: 8_000,
      bufferMs: 0,
    });
    expect(report.verdict.problems).toEqual([]);
    expect(report.verdict).toMatchObject({ clean: true, usersCompleted: 4, late: 0, lost: 0 });
  }, 60_000);
});
