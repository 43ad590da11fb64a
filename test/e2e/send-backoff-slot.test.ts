/**
 * A reply waiting out a send backoff does not hold a worker slot: a gateway that throttles or
 * fails one user's replies must not keep other users waiting behind its backoffs. One worker
 * slot (`concurrency: 1`), a 3 s first backoff: user A's prompt is refused once (503), and user
 * B, who writes meanwhile, is answered before A's retry. Before, B waited for A's backoff. And
 * past the parking cap (32 sessions per slot), a session in a backoff gives its slot back too,
 * coming back when the backoff is over (outside test QA14-F3: a gateway down for a big bot held
 * every other user's turn for about a backoff).
 */
import { describe, expect, it } from 'vitest';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const T0 = 1_750_000_000;

describe.each(HARNESS_BACKENDS)('a send backoff on the %s backend', (_name, available, setup) => {
  const h = harnessOn(available, setup, {}, { concurrency: 1, engine: { sendBackoffMs: 3000 } });

  it.skipIf(!available)(
    'frees the worker slot: another user is answered during it, then the reply goes out once',
    async () => {
      const a = '15550702001';
      const b = '15550702002';
      h.graph.failNext(1, { status: 503 });
      expect((await h.post(webhook([text(a, 'hi', T0)]))).status).toBe(200);
      await h.graph.waitForRequest((c) => c.body.to === `+${a}`);
      expect((await h.post(webhook([text(b, 'hi', T0)]))).status).toBe(200);
      await h.graph.waitFor((c) => c.body.to === `+${b}`, 2500);
      expect(h.graph.sent.filter((c) => c.body.to === `+${a}`)).toHaveLength(0);
      await h.graph.waitFor((c) => c.body.to === `+${a}`, 10_000);
      expect(h.graph.sent.map((c) => c.body.to)).toEqual([`+${b}`, `+${a}`]);
      await h.settled(a, 1);
    },
    30_000,
  );

  it.skipIf(!available)(
    'past the parking cap, a session in a backoff frees its slot too, and is sent when the backoff is over',
    async () => {
      // 40 users' prompts throttled for 6 s: 32 park, the other 8 would hold the one slot.
      const users = Array.from({ length: 40 }, (_, i) => `155507030${String(i).padStart(2, '0')}`);
      const control = '15550703099';
      h.graph.failNext(users.length, { status: 429, graphCode: 130429, retryAfter: 6 });
      for (const u of users) expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.until(() => users.every((u) => h.graph.requests.some((c) => c.body.to === `+${u}`)), 10_000);
      // A user whose reply the gateway takes is answered at once, not after a backoff.
      expect((await h.post(webhook([text(control, 'hi', T0)]))).status).toBe(200);
      const answered = await h.graph.waitFor((c) => c.body.to === `+${control}`, 5_000);
      // Each throttled prompt goes out once, after its Retry-After; all of them after the
      // control's (before, it waited for the retry of the session holding the slot).
      await h.until(() => users.every((u) => h.graph.sent.some((c) => c.body.to === `+${u}`)), 20_000);
      const retries = users.map((u) => h.graph.requests.filter((c) => c.body.to === `+${u}`)[1]!.at);
      expect(answered.at).toBeLessThan(Math.min(...retries));
      for (const u of users) {
        const tries = h.graph.requests.filter((c) => c.body.to === `+${u}`);
        expect(tries.at(-1)!.at - tries[0]!.at).toBeGreaterThanOrEqual(5_900);
        expect(h.graph.sent.filter((c) => c.body.to === `+${u}`)).toHaveLength(1);
      }
    },
    45_000,
  );
});
