/**
 * The load generator against a real embedded Baton, with chaos on: duplicate deliveries, split
 * and shuffled bursts fired concurrently, taps on an old prompt's buttons. Baton must come out
 * clean: nothing lost, nothing processed twice, every order as the user sent it, no question
 * asked twice, old buttons answered with a notice and no state change (guarantees 1, 2, 5, 6
 * and 7 under concurrency).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient, DEFAULT_CHANNEL, runLoad } from '../../loadgen/index.ts';
import { startLoadTarget, type LoadTarget } from '../support/load-target.ts';

let t: LoadTarget;
let started = 0;

beforeAll(async () => {
  started = Date.now();
  // A wide window: a shuffled burst of concurrent webhooks must land in one window even when
  // the box is busy with other suites (at 500 ms a starved webhook was seen arriving late).
  t = await startLoadTarget('load-test', { BATON_BUFFER_MS: '1500' }, { concurrency: 8 });
});

afterAll(async () => {
  await t?.close();
});

describe('load generator against embedded Baton', () => {
  it('20 users with duplicates, old-button taps, shuffled split bursts and concurrent webhooks: a clean verdict', async () => {
    const report = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 20,
      seed: 7,
      chaos: { duplicates: 0.4, retaps: 0.5, shuffle: true, splitTexts: true, concurrentBursts: true },
      replyTimeoutMs: 8_000,
      bufferMs: 1500,
    });
    const v = report.verdict;
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({
      clean: true,
      users: 20,
      usersCompleted: 20,
      lost: 0,
      duplicated: 0,
      outOfOrder: 0,
      splitByIntake: 0,
      duplicatePrompts: 0,
      versionErrors: 0,
      late: 0,
    });
    // Each old-button tap got exactly one "moved on" notice and changed nothing.
    const retaps = v.staleNotices;
    expect(retaps).toBeGreaterThan(0);
    expect(v.messages).toEqual({
      planned: 140 + retaps,
      sent: 140 + retaps,
      acked: 140 + retaps,
      rejected: 0,
    });
    // Every due reply arrived and was timed.
    expect(report.reply.count).toBe(80 + retaps);
    expect(report.ack.count).toBeGreaterThan(140 + retaps); // duplicate deliveries are answered too
  });

  it("reads when Baton stored each of a user's messages, for the verdict's split check (QA62-F3)", async () => {
    const report = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 2,
      seed: 8,
      chaos: { splitTexts: true, concurrentBursts: true },
      replyTimeoutMs: 8_000,
    });
    expect(report.verdict.clean).toBe(true);
    const admin = async (path: string): Promise<unknown> =>
      (
        await fetch(`${t.url}/admin/api${path}`, { headers: { authorization: `Bearer ${t.adminToken}` } })
      ).json();
    const { sessions } = (await admin('/sessions?limit=500')) as { sessions: { wa_id: string }[] };
    const waIds = sessions.map((s) => s.wa_id).slice(-2);
    for (const waId of waIds) {
      const q = `?channel=${DEFAULT_CHANNEL.phoneNumberId}`;
      const { transitions } = (await admin(`/sessions/${waId}/transitions${q}`)) as {
        transitions: { message_ids: string[] }[];
      };
      const ids = transitions.flatMap((r) => r.message_ids);
      const times = await new AdminClient(t.url, t.adminToken).storedTimes(DEFAULT_CHANNEL, waId);
      expect(ids.length).toBeGreaterThan(0);
      expect([...times.keys()].sort()).toEqual([...new Set(ids)].sort());
      for (const at of times.values()) expect(at).toBeGreaterThanOrEqual(started);
      for (const at of times.values()) expect(at).toBeLessThanOrEqual(Date.now());
    }
  });
});
