/**
 * Replies held back by a throttling gateway leave the queue of messages empty: every message is
 * processed, its reply committed and waiting. `/metrics` (`baton_unsent`,
 * `baton_oldest_unsent_seconds`) and the console's overview count them, and the
 * `oldest_unsent` alert (`BATON_ALERT_UNSENT_MS`) fires, until they go out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../support/alert-receiver.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

/** A gauge's value in Prometheus text, or null when absent. */
function gauge(metrics: string, name: string): number | null {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.slice(name.length + 1));
}

describe.each(HARNESS_BACKENDS)('unsent replies on the %s backend', (_name, available, setup) => {
  let rx: Receiver;
  const env: Record<string, string> = { BATON_ALERT_UNSENT_MS: '1500' };
  beforeAll(async () => {
    rx = await startReceiver();
    env.BATON_ALERT_WEBHOOK_URL = rx.url;
  });
  afterAll(async () => rx.close());
  const h = harnessOn(available, setup, env);
  const ts = Math.floor(Date.now() / 1000);
  const users = ['15550909001', '15550909002', '15550909003'];

  it.skipIf(!available)(
    'a throttled gateway: the queue is empty, the waiting replies are counted until they go out',
    async () => {
      const metrics = async (): Promise<string> => (await fetch(`${h.url}/metrics`)).text();
      // Graph throttles each name prompt once, asking for 8 s (time to look).
      h.graph.failNext(users.length, { status: 429, graphCode: 130429, retryAfter: 8 });
      for (const u of users) expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
      for (const u of users) await h.graph.waitForRequest((c) => c.body.to === `+${u}` && c.status === 429);

      // Every message processed; the three prompts wait (the stats are cached for a second).
      const text1 = await h.until(async () => {
        const m = await metrics();
        return gauge(m, 'baton_queue_depth') === 0 && gauge(m, 'baton_unsent') === users.length ? m : false;
      }, 6_000);
      expect(gauge(text1, 'baton_oldest_unsent_seconds')).toBeGreaterThan(0);
      const cookie = await h.dashboardCookie();
      const html = await (await fetch(`${h.url}/admin`, { headers: { cookie } })).text();
      expect(html).toMatch(/id="stat-unsent">\s*<div class="value">3<\/div>/);

      // Waiting more than 1.5 s: the alert fires, once.
      const fired = await h.until(() => rx.bodies.find((b) => b.alert === 'oldest_unsent'), 6_000);
      expect(fired).toMatchObject({ state: 'firing', threshold: 1500 });
      expect(fired.value).toBeGreaterThan(1500);
      expect(fired.text).toMatch(/a reply has waited .* to be sent/);

      // Sent once the gateway lets them: nothing counted any more.
      await h.graph.waitForSent(users.length, 20_000);
      await h.until(async () => gauge(await metrics(), 'baton_unsent') === 0, 5_000);
      expect(gauge(await metrics(), 'baton_oldest_unsent_seconds')).toBe(0);
      expect(h.graph.sent.map((c) => c.body.to).sort()).toEqual(users.map((u) => `+${u}`).sort());
      await h.until(
        () => rx.bodies.some((b) => b.alert === 'oldest_unsent' && b.state === 'resolved'),
        5_000,
      );
      expect(rx.bodies.filter((b) => b.alert === 'oldest_unsent').map((b) => b.state)).toEqual([
        'firing',
        'resolved',
      ]);
    },
    45_000,
  );
});
