import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { BatchCommit, CommitResult, LeaseGrant } from '../../src/backends/types.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { Engine } from '../../src/engine/engine.ts';
import { Metrics } from '../../src/metrics.ts';
import { sessionId, type InboundMessage, type SessionKey } from '../../src/model/message.ts';
import type { OutboundRecord, SessionSnapshot } from '../../src/model/session.ts';

/** An embedded backend that measures how many batches of one session run at once. */
class WatchedBackend extends EmbeddedBackend {
  inFlight = new Map<string, number>();
  maxOverlap = 0;
  override async load(key: SessionKey): Promise<SessionSnapshot | null> {
    const n = (this.inFlight.get(sessionId(key)) ?? 0) + 1;
    this.inFlight.set(sessionId(key), n);
    this.maxOverlap = Math.max(this.maxOverlap, n);
    // Widen the window so that overlapping batches would certainly be seen.
    await new Promise((r) => setTimeout(r, 2));
    return super.load(key);
  }
  /** Reads a session without counting as a batch. */
  peek(key: SessionKey): Promise<SessionSnapshot | null> {
    return super.load(key);
  }
  override async commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    try {
      return await super.commit(lease, batch);
    } finally {
      this.inFlight.set(sessionId(lease), this.inFlight.get(sessionId(lease))! - 1);
    }
  }
}

const dir = mkdtempSync(join(tmpdir(), 'baton-serial-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('one at a time, in order (embedded, two engines on one store)', () => {
  it('never runs two batches of one session at once, and every user ends correct', async () => {
    const backend = new WatchedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: OutboundRecord[] = [];
    const engines = [1, 2].map(
      (i) =>
        new Engine({
          backend,
          flows: new Map([[orderFlow.id, orderFlow]]),
          defaultFlow: 'order',
          senders: {
            'cloud-api': {
              send: async (m) => {
                sent.push(m);
                return { providerMessageId: `wamid.out.${m.id}` };
              },
            },
          },
          bufferMs: 0,
          lockTtlMs: 2000,
          sessionTtlSec: 86_400,
          maxRetries: 3,
          logger: pino({ level: 'silent' }),
          metrics: new Metrics(),
          workerId: `engine-${i}`,
        }),
    );
    for (const e of engines) e.start(8);

    const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
    const T = 1_750_000_000;
    let n = 0;
    const m = (user: string, ts: number, content: InboundMessage['content']): InboundMessage => ({
      id: `wamid.${user}.${(n += 1)}`,
      provider: 'cloud-api',
      channel: 'ch',
      user,
      waId: user,
      timestamp: ts,
      content,
    });
    // Every message its own webhook, all users at once: the worst case for racing.
    await Promise.all(
      users.map(async (u) => {
        const script = [
          m(u, T, { type: 'text', body: 'hi' }),
          m(u, T + 1, { type: 'text', body: `Name ${u}` }),
          m(u, T + 2, { type: 'choice', source: 'button_reply', id: 'sku_551a', title: 'Rain Jacket' }),
          m(u, T + 3, { type: 'text', body: `Street ${u}` }),
          m(u, T + 4, { type: 'choice', source: 'button_reply', id: 'confirm', title: 'Confirm' }),
        ];
        for (const msg of script) {
          await backend.ingest({ messages: [msg], statuses: [] });
          await Promise.all([
            engines[0]!.runSession({ channel: 'ch', user: u }),
            engines[1]!.runSession({ channel: 'ch', user: u }),
          ]);
        }
      }),
    );
    // Meanwhile, hand the same sessions to both engines directly, as a duplicate claim would
    // (a reaper racing a release): only the baton may keep two batches apart.
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        engines[i % 2]!.runSession({ channel: 'ch', user: users[i % users.length]! }),
      ),
    );
    const deadline = Date.now() + 15_000;
    for (;;) {
      const done = await Promise.all(
        users.map(async (u) => (await backend.peek({ channel: 'ch', user: u }))?.step),
      );
      if (done.every((s) => s === 'completed') && (await backend.stats()).queueDepth === 0) break;
      if (Date.now() > deadline) throw new Error(`not all completed: ${done.join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(engines.map((e) => e.stop()));

    expect(backend.maxOverlap).toBe(1);
    for (const u of users) {
      const key = { channel: 'ch', user: u };
      const s = (await backend.peek(key))!;
      expect(s.data).toEqual({
        customer_name: `Name ${u}`,
        product_id: 'sku_551a',
        shipping_address: `Street ${u}`,
      });
      const t = await backend.transitions(key);
      const versioned = t.filter((r) => r.kind === 'advance');
      expect(versioned.map((r) => r.version)).toEqual([1, 2, 3, 4, 5]);
      const fences = t.map((r) => r.fencing_token);
      expect([...fences].sort((a, b) => a - b)).toEqual(fences);
      const cbs = sent.filter((o) => o.user === u).map((o) => o.callbackData);
      expect(new Set(cbs).size).toBe(cbs.length);
      expect(cbs.at(-1)).toBe('baton:order:completed:5');
    }
    await backend.close();
  }, 30_000);
});
