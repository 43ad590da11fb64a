/**
 * The load generator tells a reply Baton gave up on from one that never came (outside test
 * QA124-F1: a reply dead-lettered after two sends with no answer was counted lost, with "dead
 * letters 0"). Read from a real embedded Baton's admin API: the gateway resets the connection
 * on the user's first reply twice, so Baton, not knowing whether either reached the user,
 * dead-letters it rather than risk a third copy (SPEC 1.6).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AdminClient, DEFAULT_CHANNEL } from '../../loadgen/index.ts';
import { ADMIN_TOKEN, startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

it("names the step of a reply Baton dead-lettered, with Baton's reason", async () => {
  const u = '15550930001';
  h.graph.failNext(2, { status: 0, network: 'reset', to: u });
  await h.post(webhook([text(u, 'hi', Math.floor(Date.now() / 1000))]));
  const admin = new AdminClient(h.url, ADMIN_TOKEN);
  await h.until(async () => (await admin.failedReplies(DEFAULT_CHANNEL, u)).size > 0, 15_000);
  const failed = await admin.failedReplies(DEFAULT_CHANNEL, u);
  expect([...failed.keys()]).toEqual(['ask_name']);
  expect(failed.get('ask_name')).toMatch(/two attempts may have reached the user/);
  // A user whose replies all went has none.
  const v = '15550930002';
  await h.post(webhook([text(v, 'hi', Math.floor(Date.now() / 1000))]));
  await h.settled(v, 1);
  await h.graph.waitFor((c) => c.body.to === `+${v}`);
  expect((await admin.failedReplies(DEFAULT_CHANNEL, v)).size).toBe(0);
});
