import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { signMetaBody } from '../../src/providers/index.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { freePort, spawnBaton } from '../support/procs.ts';
import { ADMIN_TOKEN, APP_SECRET, startHarness } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';

const T0 = 1_750_000_000;

describe('restart', () => {
  it('processes messages stored before a graceful restart, losing nothing', async () => {
    const h = await startHarness({ BATON_BUFFER_MS: '1500' });
    try {
      const u = '15551110001';
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.settled(u, 1);
      expect((await h.post(webhook([text(u, 'Jane', T0 + 1)]))).status).toBe(200);
      // Stop while "Jane" waits in its buffer window; the SQLite file survives.
      await h.restart();
      expect((await h.baton.backend.stats()).queueDepth).toBe(1);
      const s = await h.settled(u, 2);
      expect(s).toMatchObject({ current_step: 'choose_product', data: { customer_name: 'Jane' } });
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:2');
    } finally {
      await h.close();
    }
  });
});

describe('stop', () => {
  it('says what it leaves for the next start: replies not sent, messages not handled (outside test QA94-F6)', async () => {
    const lines: Array<{ level: number; msg: string; unsent?: number; queueDepth?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const h = await startHarness({ BATON_BUFFER_MS: '1500' }, { logger });
    try {
      const u = '15551110002';
      // The gateway refuses every send: the prompt of the first turn stays committed, unsent.
      h.graph.failNext(1000, { status: 503 });
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.until(async () => ((await h.session(u))?.metadata.version === 1 ? true : undefined));
      // "Jane" waits in its buffer window when the stop comes.
      expect((await h.post(webhook([text(u, 'Jane', T0 + 1)]))).status).toBe(200);
      await h.baton.stop();
      const said = lines.find((l) => l.msg.startsWith('stopped with'));
      expect(said).toMatchObject({ level: 40, unsent: 1, queueDepth: 1 });
      expect(said!.msg).toContain('the next start takes them on');
    } finally {
      await h.close();
    }
  });
});

describe('SIGKILL of the embedded process mid-flow', () => {
  it('loses no stored message: after a restart every user ends completed', async () => {
    const graph = await startFakeGraph();
    const dir = mkdtempSync(join(tmpdir(), 'baton-kill-'));
    const port = await freePort();
    const env = {
      PORT: String(port),
      HOST: '127.0.0.1',
      BATON_DATA_DIR: dir,
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: '20',
      BATON_LOCK_TTL_MS: '1000',
    };
    const base = `http://127.0.0.1:${port}`;
    const post = (body: unknown): Promise<Response> => {
      const raw = Buffer.from(JSON.stringify(body));
      return fetch(`${base}/webhooks/whatsapp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaBody(raw, APP_SECRET) },
        body: new Uint8Array(raw),
      });
    };
    let child = await spawnBaton(['start'], env);
    try {
      const users = Array.from({ length: 20 }, (_, i) => `1555222${String(i).padStart(4, '0')}`);
      for (const u of users) expect((await post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      // Slow, refused sends keep workers busy mid-batch when the kill lands.
      graph.failNext(30, { status: 503, delayMs: 100 });
      const acked: string[] = [];
      await Promise.all(
        users.map(async (u) => {
          const burst = [
            text(u, 'Kim', T0 + 1),
            button(u, 'sku_550e', 'Trail Shoe', T0 + 2),
            text(u, '9 Elm Road', T0 + 3),
            button(u, 'confirm', 'Confirm', T0 + 4),
          ];
          for (const m of burst) {
            const r = await post(webhook([m]));
            if (r.status === 200) acked.push(m.id);
          }
        }),
      );
      await child.stop('SIGKILL');
      expect(acked).toHaveLength(80);

      child = await spawnBaton(['start'], env);
      const admin = (p: string) =>
        fetch(`${base}/admin/api${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      const deadline = Date.now() + 20_000;
      for (const u of users) {
        for (;;) {
          const r = await admin(`/sessions/${u}?channel=${PHONE_ID}`);
          const s = r.status === 200 ? ((await r.json()) as { current_step: string }) : null;
          if (s?.current_step === 'completed') break;
          if (Date.now() > deadline) throw new Error(`${u} did not complete: ${JSON.stringify(s)}`);
          await new Promise((res) => setTimeout(res, 50));
        }
        const t = (await (await admin(`/sessions/${u}/transitions?channel=${PHONE_ID}`)).json()) as {
          transitions: Array<{ version: number; kind: string; message_ids: string[] }>;
        };
        const versions = t.transitions.filter(
          (x) => !['late', 'stale_input', 'held', 'ignored'].includes(x.kind),
        );
        expect(versions.map((x) => x.version)).toEqual(versions.map((_, i) => i + 1));
      }
      const stats = (await (await admin('/stats')).json()) as { queue_depth: number };
      expect(stats.queue_depth).toBe(0);
      // Every acknowledged message is in some transition record.
      const all = new Set<string>();
      for (const u of users) {
        const t = (await (await admin(`/sessions/${u}/transitions?channel=${PHONE_ID}`)).json()) as {
          transitions: Array<{ message_ids: string[] }>;
        };
        for (const x of t.transitions) for (const id of x.message_ids) all.add(id);
      }
      for (const id of acked) expect(all.has(id)).toBe(true);
      // At most the one in-flight send per user may repeat: never two confirmations after one.
      for (const u of users) {
        await graph.waitFor(
          (c) =>
            c.body.to === `+${u}` && !!c.body.biz_opaque_callback_data?.startsWith('baton:order:completed:'),
          10_000,
        );
        const confirmations = graph.requests.filter(
          (c) =>
            c.status === 200 &&
            c.body.to === `+${u}` &&
            c.body.biz_opaque_callback_data?.startsWith('baton:order:completed:'),
        );
        expect(confirmations.length).toBeLessThanOrEqual(2);
        expect(confirmations.length).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await child.stop('SIGKILL');
      await graph.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
