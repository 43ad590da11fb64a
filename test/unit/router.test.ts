/**
 * Several flows: a router picks the flow of a new session from its first message (keyword,
 * business number, function); sessions keep their flow; BATON_FLOWS may export the router, and
 * may name a folder.
 */
import { testEngine } from '../support/engine.ts';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { loadFlowModule } from '../../src/app.ts';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { flowRouter } from '../../src/flow/router.ts';
import type { InboundMessage } from '../../src/model/message.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-router-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const msg = (channel: string, user: string, body: string, ts = 1_750_000_000): InboundMessage => ({
  id: `wamid.${channel}.${user}.${ts}.${body}`,
  provider: 'cloud-api',
  channel,
  user,
  timestamp: ts,
  content: { type: 'text', body },
});

describe('flowRouter', () => {
  const route = flowRouter({
    keywords: { status: 'order_status', 'where is': 'order_status' },
    channels: { '2000': 'order_status' },
    pick: (m) =>
      m.content.type === 'text' && m.content.body.startsWith('ORD-') ? 'order_status' : undefined,
  });
  const stored = (m: InboundMessage) => ({ ...m, seq: 1, storedAt: 0 });

  it('by keyword (whole first word or phrase, any case), by entry point, by a function, else the default', () => {
    expect(route(stored(msg('1000', 'u', 'Status please')))).toBe('order_status');
    expect(route(stored(msg('1000', 'u', 'where is my parcel')))).toBe('order_status');
    expect(route(stored(msg('1000', 'u', 'statuses')))).toBeUndefined();
    expect(route(stored(msg('2000', 'u', 'hi')))).toBe('order_status');
    expect(route(stored(msg('1000', 'u', 'ORD-12345')))).toBe('order_status');
    expect(route(stored(msg('1000', 'u', 'hi')))).toBeUndefined();
  });

  it('reads a keyword with punctuation around it (outside test B23)', () => {
    for (const said of ['Status!', '¿status?', 'status.', '  STATUS, please', 'Where is... my parcel?'])
      expect(route(stored(msg('1000', 'u', said))), said).toBe('order_status');
    expect(route(stored(msg('1000', 'u', 'statuses!')))).toBeUndefined();
  });

  it('the engine routes new sessions and keeps each session on its flow', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const status = orderStatusFlow({ apiUrl: 'http://127.0.0.1:9' });
    const engine = testEngine(backend, {
      flows: [orderFlow, status],
      router: flowRouter({ keywords: { status: 'order_status' } }),
    });
    const a = { channel: 'c', user: 'a' };
    const b = { channel: 'c', user: 'b' };
    await backend.ingest({ messages: [msg('c', 'a', 'hi'), msg('c', 'b', 'status')], statuses: [] });
    await engine.runSession(a);
    await engine.runSession(b);
    expect(await backend.load(a)).toMatchObject({ flow: 'order', step: 'ask_name' });
    expect(await backend.load(b)).toMatchObject({ flow: 'order_status', step: 'ask_order' });
    // "status" later in an order session is just a name: the session keeps its flow.
    await backend.ingest({ messages: [msg('c', 'a', 'status', 1_750_000_001)], statuses: [] });
    await engine.runSession(a);
    expect(await backend.load(a)).toMatchObject({ flow: 'order', data: { customer_name: 'status' } });
    // Expired (a day and more later), the session is a new one: the router picks again (SPEC 5).
    await backend.ingest({ messages: [msg('c', 'a', 'status', 1_750_000_001 + 86_401)], statuses: [] });
    await engine.runSession(a);
    expect(await backend.load(a)).toMatchObject({ flow: 'order_status', step: 'ask_order' });
    expect((await backend.transitions(a)).slice(-2).map((r) => r.kind)).toEqual(['expired', 'advance']);
    // And back to the default flow when the router picks none.
    await backend.ingest({ messages: [msg('c', 'a', 'hi', 1_750_000_001 + 2 * 86_402)], statuses: [] });
    await engine.runSession(a);
    expect(await backend.load(a)).toMatchObject({ flow: 'order', step: 'ask_name' });
    await backend.close();
  });
});

describe('BATON_FLOWS module with a router, given as a folder', () => {
  it('loads the flows (default first) and the exported router', async () => {
    const folder = join(dir, 'two-flows');
    mkdirSync(folder);
    const api = resolve(import.meta.dirname, '../../src/index.ts');
    writeFileSync(
      join(folder, 'index.ts'),
      `import { defineFlow, flowRouter } from ${JSON.stringify(api)};
       const step = { say: 'x', accepts: 'any' as const, to: [], on: (_i: unknown, c: { retry(): never }) => c.retry() };
       export default defineFlow({ id: 'main_flow', start: 's', steps: { s: step } });
       export const other = defineFlow({ id: 'other_flow', start: 's', steps: { s: step } });
       export const router = flowRouter({ keywords: { other: 'other_flow' } });`,
    );
    const loaded = await loadFlowModule(folder);
    expect(loaded.flows.map((f) => f.id)).toEqual(['main_flow', 'other_flow']);
    expect(loaded.router?.({ ...msg('c', 'u', 'other'), seq: 1, storedAt: 0 })).toBe('other_flow');
  });
});
