/**
 * "Once" past the dedupe window (SPEC 1.2): the dedupe store forgets a message id after
 * BATON_DEDUPE_TTL, so a replay of a signed webhook after that is stored again; it must still
 * have no second effect. A message whose WhatsApp timestamp is older than its storage time
 * minus the window, and not newer than the session's `last_interaction`, is recorded `late` and
 * never applied. The clock is injected: the test
 * moves it past the window and restarts Baton, whose start-up purge forgets the ids.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('a replay after the dedupe window', () => {
  it('is recorded late, not applied again, and sends nothing', async () => {
    let offsetMs = 0;
    const now = (): number => Date.now() + offsetMs;
    // Inbound rows (the embedded dedupe store) are kept for the longer of the dedupe window and
    // the message retention: both one hour here.
    h = await startHarness({ BATON_DEDUPE_TTL: '1h', BATON_MESSAGE_RETENTION: '1h' }, { now });
    const u = '15556660001';
    const t = Math.floor(Date.now() / 1000);
    expect((await h.post(webhook([text(u, 'hi', t)]))).status).toBe(200);
    await h.settled(u, 1);
    const name = text(u, 'Ada', t + 1);
    expect((await h.post(webhook([name]))).status).toBe(200);
    const before = await h.settled(u, 2);
    expect(before.current_step).toBe('choose_product');
    // Within the window a replay is a duplicate.
    expect((await h.post(webhook([name]))).status).toBe(200);

    // Two hours later (the window is one hour) the store has forgotten the id.
    offsetMs = 2 * 3600_000;
    await h.restart();
    const sent = h.graph.sent.length;
    expect((await h.post(webhook([name]))).status).toBe(200);
    const late = await h.until(async () => (await h!.transitions(u)).find((r) => r.kind === 'late'));
    expect(late.message_ids).toEqual([name.id]);
    const after = (await h.session(u))!;
    expect(after.metadata.version).toBe(2);
    expect(after.current_step).toBe('choose_product');
    expect(after.data).toEqual(before.data);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.graph.sent.length).toBe(sent);
  });

  it('a message stamped within the window is applied as usual', async () => {
    h = await startHarness({ BATON_DEDUPE_TTL: '1h' });
    const u = '15556660002';
    expect((await h.post(webhook([text(u, 'hi', Math.floor(Date.now() / 1000) - 3000)]))).status).toBe(200);
    const s = await h.settled(u, 1);
    expect(s.current_step).toBe('ask_name');
  });

  it('a message older than the window and not newer than the last is late in a conversation; a first message, or a newer one, is applied whatever its age (SPEC 1.5)', async () => {
    h = await startHarness({ BATON_DEDUPE_TTL: '1h' });
    const now = Math.floor(Date.now() / 1000);
    // A new user's first message, stamped two hours ago (Meta's fixture bodies are years old):
    // there is nothing for it to be late against, and no earlier effect to repeat.
    const u = '15556660003';
    expect((await h.post(webhook([text(u, 'hi', now - 7200)]))).status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    // In that conversation, a message stamped beyond the window (a replay whose id the store may
    // have forgotten) is late, even at the very time of the last one.
    const old = text(u, 'Ada', now - 7200);
    expect((await h.post(webhook([old]))).status).toBe(200);
    const late = await h.until(async () => (await h!.transitions(u)).find((r) => r.kind === 'late'));
    expect(late.message_ids).toEqual([old.id]);
    expect((await h.session(u))!.metadata.version).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.graph.sent).toHaveLength(1);
    // A message newer than the last one was never applied, however old: it is applied
    // (outside test QA104-F1: a conversation replayed from old bodies was late after its start).
    expect((await h.post(webhook([text(u, 'Grace', now - 7199)]))).status).toBe(200);
    const applied = await h.settled(u, 2);
    expect(applied.current_step).toBe('choose_product');
    expect(applied.data).toMatchObject({ customer_name: 'Grace' });
  });
});
