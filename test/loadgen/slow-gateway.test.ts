/**
 * A gateway that accepts a reply at once and delivers it later, as Meta's does under load:
 * Baton has sent everything and holds nothing, yet a reply is still on its way to the user.
 * One the user stopped waiting for (`--timeout`) must be judged late, not lost: the load
 * generator waits for it before it judges (outside test QA85-F1, a relay holding replies 1.5 s).
 * A real embedded Baton sends to the load generator's sink; the generator sees each reply only
 * `HOLD_MS` after Baton's send was answered.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../loadgen/index.ts';
import type { ReplySink, SinkCall } from '../../loadgen/sink.ts';
import { startLoadTarget, type LoadTarget } from '../support/load-target.ts';

/** How long the gateway holds each reply after accepting it, ms. */
const HOLD_MS = 1500;

let t: LoadTarget;

beforeAll(async () => {
  t = await startLoadTarget('slow-gateway', { BATON_BUFFER_MS: '0' });
});

afterAll(async () => {
  await t?.close();
});

/** `inner` as its users see it when each reply reaches them `holdMs` after the sink answered. */
function deliveredLater(inner: ReplySink, holdMs: number): ReplySink {
  const arrived = (c: SinkCall): boolean => c.at + holdMs <= performance.now();
  const held = (c: SinkCall): SinkCall => ({ ...c, at: c.at + holdMs });
  const view: ReplySink = {
    url: inner.url,
    port: inner.port,
    get calls() {
      return inner.calls.filter(arrived).map(held);
    },
    get refused() {
      return inner.refused;
    },
    callsTo: (to) => inner.callsTo(to).filter(arrived).map(held),
    async waitFor(to, match, from, timeoutMs, signal) {
      const until = performance.now() + timeoutMs;
      while (!signal?.aborted) {
        const hit = view.callsTo(to).slice(from).find(match);
        if (hit !== undefined) return hit;
        if (performance.now() >= until) return null;
        await sleep(10);
      }
      return null;
    },
    lastAt() {
      const seen = view.calls;
      return seen.length === 0 ? null : seen[seen.length - 1]!.at;
    },
    close: () => inner.close(),
  };
  return view;
}

describe('load verdict with a gateway that delivers late', () => {
  it('a reply the user stopped waiting for, still on its way when Baton is idle, is late, not lost', async () => {
    const report = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: deliveredLater(t.sink, HOLD_MS),
      users: 3,
      seed: 3,
      replyTimeoutMs: 300,
      settleTimeoutMs: 8_000,
    });
    const v = report.verdict;
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({ clean: true, users: 3, usersCompleted: 0, lost: 0, lateReplies: 3 });
  });
});
