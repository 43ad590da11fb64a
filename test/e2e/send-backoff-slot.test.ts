/**
 * A reply waiting out a send backoff does not hold a worker slot: a gateway that throttles or
 * fails one user's replies must not keep other users waiting behind its backoffs. One worker
 * slot (`concurrency: 1`), a 3 s first backoff: user A's prompt is refused once (503), and user
 * B, who writes meanwhile, is answered before A's retry. Before, B waited for A's backoff.
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
      await h.graph.waitForRequest((c) => c.body.to === a);
      expect((await h.post(webhook([text(b, 'hi', T0)]))).status).toBe(200);
      await h.graph.waitFor((c) => c.body.to === b, 2500);
      expect(h.graph.sent.filter((c) => c.body.to === a)).toHaveLength(0);
      await h.graph.waitFor((c) => c.body.to === a, 10_000);
      expect(h.graph.sent.map((c) => c.body.to)).toEqual([b, a]);
      await h.settled(a, 1);
    },
    30_000,
  );
});
