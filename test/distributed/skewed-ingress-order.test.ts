/**
 * SPEC 1.5 across two ingress processes whose clocks disagree by a few milliseconds (outside test
 * QA45-F1): messages with equal WhatsApp timestamps are applied in arrival order, the order in
 * which their session's mailbox took them, not in the order of the storage times each ingress
 * stamped with its own estimate of the store's clock. A user taps a product button and then,
 * within the same second, types the address: the button was stored first (its webhook was
 * answered before the text was sent), but the ingress that stored the text runs 40 ms behind, so
 * the text's storage time is the earlier one. Real Redis and PostgreSQL; two ingress backends and
 * a worker's engine on one prefix and schema.
 */
import { expect, it } from 'vitest';
import { describeServices } from '../support/services.ts';
import { testEngine } from '../support/engine.ts';
import { button, newKey, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

const BUFFER_MS = 150;
const BEHIND_MS = 40;

describeServices('distributed: arrival order across ingress processes with skewed clocks', () => {
  useCleanup();

  it('applies a button and the text sent after it in the same second in arrival order', async () => {
    const ingressA = await makeBackend({ bufferMs: BUFFER_MS, now: () => Date.now() });
    const shared = { prefix: ingressA.prefix, schema: ingressA.schema };
    const ingressB = await makeBackend({ bufferMs: BUFFER_MS, now: () => Date.now() - BEHIND_MS }, shared);
    const worker = await makeBackend({ bufferMs: BUFFER_MS, now: () => Date.now() }, shared);
    const engine = testEngine(worker.backend, { bufferMs: BUFFER_MS });
    afterThisTest(() => engine.stop());

    const key = newKey();
    const t0 = Math.floor(Date.now() / 1000) - 60;
    const turn = async (): Promise<void> => {
      await sleep(BUFFER_MS + 50); // past the buffer window
      await engine.runSession(key);
    };
    await ingressA.backend.ingest({ messages: [text(key, 'hi', t0)], statuses: [] });
    await turn();
    await ingressA.backend.ingest({ messages: [text(key, 'Jane Doe', t0 + 1)], statuses: [] });
    await turn();
    expect((await worker.backend.load(key))?.step).toBe('choose_product');

    // The button, stored and answered by ingress A; then the address, stored by ingress B.
    const tap = button(key, 'sku_550e', 'Trail Shoe', t0 + 2);
    const address = text(key, '12 Main St', t0 + 2);
    await ingressA.backend.ingest({ messages: [tap], statuses: [] });
    await ingressB.backend.ingest({ messages: [address], statuses: [] });
    const stored = await worker.backend.pending(key, 10);
    expect(stored.map((m) => m.id)).toEqual([tap.id, address.id]);
    // The premise: ingress B's storage time for the later message is the earlier one.
    expect(stored[1]!.storedAt).toBeLessThan(stored[0]!.storedAt);

    await turn();
    const session = await worker.backend.load(key);
    expect(session?.step).toBe('confirm_order');
    expect(session?.data).toEqual({
      customer_name: 'Jane Doe',
      product_id: 'sku_550e',
      shipping_address: '12 Main St',
    });
    const records = await worker.backend.transitions(key);
    expect(records.slice(-2).map((r) => [r.kind, r.from_step, r.to_step, r.message_ids])).toEqual([
      ['advance', 'choose_product', 'collect_shipping_address', [tap.id]],
      ['advance', 'collect_shipping_address', 'confirm_order', [address.id]],
    ]);
    expect(records.map((r) => r.version)).toEqual([1, 2, 3, 4]);
  });
});
