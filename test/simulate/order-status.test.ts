/**
 * The simulator with the second example: an order looked up through the shop stub, the
 * status list picked by number, the map shown as an image with its link, the hand-off notice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { createBaton, type Baton } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startFakeGraphApi, type FakeGraphApi } from '../../src/simulate/fake-graph.ts';
import { runScript } from '../../src/simulate/script.ts';
import { startShopStub, type ShopStub } from '../../src/simulate/shop-stub.ts';
import { Simulator } from '../../src/simulate/simulator.ts';

let graph: FakeGraphApi;
let shop: ShopStub;
let baton: Baton;
let dir: string;

beforeAll(async () => {
  graph = await startFakeGraphApi();
  shop = await startShopStub();
  dir = mkdtempSync(join(tmpdir(), 'baton-sim-os-'));
  baton = await createBaton(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      BATON_DATA_DIR: dir,
      WHATSAPP_APP_SECRET: 'os-secret',
      WHATSAPP_API_BASE_URL: graph.url,
      BATON_BUFFER_MS: '100',
    }),
    { logger: pino({ level: 'silent' }), flows: [orderStatusFlow({ apiUrl: shop.url, backoffMs: 50 })] },
  );
  await baton.start();
});

afterAll(async () => {
  await baton?.stop();
  await shop?.close();
  await graph?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('simulate with order-status', () => {
  it('looks an order up, tracks it (the map as an image link) and hands off to a person', async () => {
    const url = `http://127.0.0.1:${(baton.server.server.address() as { port: number }).port}`;
    const sim = new Simulator({ url, graph, secret: 'os-secret', firstUser: '15550300001' });
    const shown: string[] = [];
    sim.onReply((r) => shown.push(...r.rendered.lines));
    const result = await runScript(sim, {
      steps: [
        {
          send: 'ORD-12341',
          expect: [
            'Looking up ORD-12341',
            { match: 'Order ORD-12341: shipped\\.\\nExpected: 2026-12-03' },
            {
              kind: 'interactive:list',
              choices: ['Track it', 'Cancel it', 'Another order', 'Talk to a person'],
            },
          ],
        },
        {
          send: '1',
          expect: [
            { kind: 'image', text: 'https://maps.example.com/track/ORD-12341.png' },
            { text: 'Handed to the carrier', choices: ['Another order', 'Talk to a person'] },
          ],
        },
        { send: '2', expect: ['a member of our team will answer you here'] },
      ],
    });
    expect(result.failures).toEqual([]);
    expect(shown).toContain('[image] https://maps.example.com/track/ORD-12341.png');
    expect(shown).toContain('    1. Track it');
    const [session] = await baton.backend.findSessions('15550300001');
    expect(session).toMatchObject({ needsAgent: true });
    sim.close();
  });
});
