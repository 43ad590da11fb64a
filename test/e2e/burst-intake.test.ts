/**
 * A burst is never split by a slow intake (issue 10, point 1): on a busy machine storing a
 * webhook can take longer than the buffer window. Here every store takes 60-180 ms against a
 * 40 ms window, on real SQLite over real HTTP: the four messages of a shuffled, duplicated burst
 * still form one batch, because the engine waits for webhooks of the window still being stored
 * and the window is measured from their arrival.
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
    await new Promise((r) => setTimeout(r, 60 + Math.random() * 120));
    return super.ingest(batch);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'baton-slow-intake-'));
let h: Harness;
beforeAll(async () => {
  const backend = new SlowIntake({ dataDir: dir, bufferMs: 40, dedupeTtlSec: 7 * 86400 });
  h = await startHarness({ BATON_BUFFER_MS: '40' }, { backend });
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
          (c) => c.body.biz_opaque_callback_data === 'baton:order:completed:5' && c.body.to === u,
        ),
      ),
    );
    for (const u of users) {
      const after = h.graph.sent.filter((c) => c.body.to === u).map((c) => c.body.biz_opaque_callback_data);
      expect(after).toEqual(['baton:order:ask_name:1', 'baton:order:completed:5']);
    }
  });
});
