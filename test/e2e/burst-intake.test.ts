/**
 * A burst is never split by a slow intake (issue 10, point 1): on a busy machine storing a
 * webhook can take longer than the buffer window. Here every store takes 200-400 ms against a
 * 150 ms window, on real SQLite over real HTTP: the four messages of a shuffled, duplicated burst
 * still form one batch, because the engine waits for webhooks of the window still being stored
 * and the window is measured from their arrival. (The window is not shorter because this test's
 * own client shares the process: with both cores busy, its six deliveries of one burst were seen
 * reaching the server up to 103 ms apart, and messages further apart than the window are rightly
 * two batches.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { IngestResult } from '../../src/backends/types.ts';
import type { WebhookBatch } from '../../src/model/message.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { button, text, webhook } from '../support/payloads.ts';

class SlowIntake extends EmbeddedBackend {
  override async ingest(batch: WebhookBatch): Promise<IngestResult> {
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 200));
    return super.ingest(batch);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'baton-slow-intake-'));
let h: Harness;
beforeAll(async () => {
  const backend = new SlowIntake({ dataDir: dir, bufferMs: 150, dedupeTtlSec: 7 * 86400 });
  h = await startHarness({ BATON_BUFFER_MS: '150' }, { backend });
});
afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a burst stored more slowly than the buffer window', () => {
  it('is still one batch: every field set, only the confirmation sent', async () => {
    const T0 = 1_750_000_000;
    const users = ['15550060001', '15550060002', '15550060003', '15550060004', '15550060005'];
    for (const u of users) expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
    for (const u of users) await h.settled(u, 1);

    await Promise.all(
      users.map(async (u) => {
        const burst = [
          text(u, 'Ana Lima', T0 + 10),
          button(u, 'sku_777b', 'Day Pack', T0 + 11),
          text(u, '22 Rua Augusta', T0 + 12),
          button(u, 'confirm', 'Confirm', T0 + 13),
        ];
        const deliveries = [burst[2]!, burst[0]!, burst[3]!, burst[1]!, burst[0]!, burst[3]!];
        const statuses = await Promise.all(deliveries.map((m) => h.post(webhook([m])).then((r) => r.status)));
        expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
      }),
    );
    for (const u of users) {
      const s = await h.settled(u, 5);
      expect(s).toMatchObject({
        current_step: 'completed',
        data: { customer_name: 'Ana Lima', product_id: 'sku_777b', shipping_address: '22 Rua Augusta' },
      });
      // One batch: the four advances share one fencing token and one timestamp.
      const t = (await h.transitions(u)).slice(1);
      expect(t.map((r) => r.kind)).toEqual(['advance', 'advance', 'advance', 'advance']);
      expect(new Set(t.map((r) => `${r.fencing_token}@${r.at}`)).size).toBe(1);
    }
    await h.until(() =>
      users.every((u) =>
        h.graph.sent.some(
          (c) => c.body.biz_opaque_callback_data === 'baton:order:completed:5' && c.body.to === `+${u}`,
        ),
      ),
    );
    for (const u of users) {
      const after = h.graph.sent
        .filter((c) => c.body.to === `+${u}`)
        .map((c) => c.body.biz_opaque_callback_data);
      expect(after).toEqual(['baton:order:ask_name:1', 'baton:order:completed:5']);
    }
  });
});

describe('bursts while the engine is busy with other users (issue 10, point 4)', () => {
  it('25 users each send 4 shuffled messages within 50 ms, with duplicates: every burst is one batch', async () => {
    // The bursts are sent from this test's own process, which shares its event loop with the
    // server and the machine with the rest of the suite: at 500 ms a delivery was seen reaching
    // the server over 500 ms after its burst's first one. The window here leaves room for that;
    // the first test above proves the mechanism at 150 ms with a slower store.
    const busy = await startHarness({ BATON_BUFFER_MS: '1000' });
    let stop = false;
    let background: Promise<unknown> = Promise.resolve();
    try {
      const T0 = 1_750_000_000;
      const burstUsers = Array.from({ length: 25 }, (_, i) => `1555007${String(i).padStart(4, '0')}`);
      const otherUsers = Array.from({ length: 25 }, (_, i) => `1555008${String(i).padStart(4, '0')}`);
      for (const u of [...burstUsers, ...otherUsers])
        expect((await busy.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      for (const u of [...burstUsers, ...otherUsers]) await busy.settled(u, 1);

      // Other users keep the engine busy (about 80 messages/s): names, resets and names again.
      background = Promise.all(
        otherUsers.map(async (u, i) => {
          for (let n = 1; !stop; n += 1) {
            const body = n % 2 === 0 ? 'reset' : `Name ${i} ${n}`;
            await busy.post(webhook([text(u, body, T0 + n)])).catch(() => undefined);
            await new Promise((r) => setTimeout(r, 300));
          }
        }),
      );
      await Promise.all(
        burstUsers.map(async (u) => {
          const burst = [
            text(u, 'Ana Lima', T0 + 10),
            button(u, 'sku_777b', 'Day Pack', T0 + 11),
            text(u, '22 Rua Augusta', T0 + 12),
            button(u, 'confirm', 'Confirm', T0 + 13),
          ];
          const deliveries = [burst[2]!, burst[0]!, burst[3]!, burst[1]!, burst[0]!, burst[3]!];
          // Within 50 ms: each delivery after a random pause of up to 50 ms.
          const statuses = await Promise.all(
            deliveries.map(async (m) => {
              await new Promise((r) => setTimeout(r, Math.random() * 50));
              return (await busy.post(webhook([m]))).status;
            }),
          );
          expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
        }),
      );
      for (const u of burstUsers) {
        // (Not `settled`: the other users keep the queue from ever being empty.)
        const s = await busy
          .until(async () => {
            const x = await busy.session(u);
            return x && x.metadata.version >= 5 ? x : undefined;
          }, 30_000)
          .catch(async (err: unknown) => {
            // Say where the user is, and what was recorded, rather than only that it took long.
            const x = await busy.session(u);
            const log = (await busy.transitions(u)).map((r) => `${r.version} ${r.kind} ${r.to_step} ${r.at}`);
            const msgs = (await (await busy.admin(`/sessions/${u}/messages?limit=50`)).json()) as {
              messages: Array<{ direction: string; at: string; text?: string; payload?: unknown }>;
            };
            const stored = msgs.messages
              .filter((m) => m.direction === 'in')
              .map((m) => `${m.at} ${m.text ?? JSON.stringify(m.payload)}`);
            throw new Error(
              `${u} at ${JSON.stringify(x?.metadata)}: ${log.join(', ')}; stored: ${stored.join(', ')}`,
              { cause: err },
            );
          });

        expect(s.metadata.version, u).toBe(5);
        expect(s.data, u).toEqual({
          customer_name: 'Ana Lima',
          product_id: 'sku_777b',
          shipping_address: '22 Rua Augusta',
        });
        const t = (await busy.transitions(u)).slice(1);
        expect(new Set(t.map((r) => `${r.fencing_token}@${r.at}`)).size, `one batch for ${u}`).toBe(1);
      }
    } finally {
      stop = true;
      await background;
      await busy.close();
    }
  }, 60_000);
});
