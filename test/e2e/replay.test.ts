/**
 * Replaying a reply's dead letter sends it promptly on both backends: the session is due at once
 * (distributed mode waited for the user's next message or the reaper, 20-30 s).
 */
import { describe, expect, it } from 'vitest';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('replaying a reply on the %s backend', (_name, available, setup) => {
  it.skipIf(!available)('sends it within moments of the replay', async () => {
    const { env, drop } = setup();
    const h = await startHarness(env);
    try {
      const u = '15550800001';
      h.graph.failNext(1, { status: 400, graphCode: 131047 });
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)]))).status).toBe(200);
      const letter = await h.until(async () => {
        const { dead_letters } = (await (await h.admin('/dead-letters')).json()) as {
          dead_letters: Array<{ id: string; user: string }>;
        };
        return dead_letters.find((d) => d.user === u);
      });
      await h.settled(u, 1);
      const replayed = await h.admin(`/dead-letters/${encodeURIComponent(letter.id)}/replay`, {
        method: 'POST',
      });
      expect(replayed.status).toBe(200);
      const started = Date.now();
      await h.graph.waitFor((c) => c.body.to === `+${u}` && c.status === 200, 5_000);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await h.close();
      await drop();
    }
  });
});
