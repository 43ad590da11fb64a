/**
 * SPEC 1.1 and 3: inside a valid envelope, messages that name no session Baton can store them
 * under (no phone_number_id, a sender with a control character, an id beyond 256 characters, an
 * item that is not an object) do not refuse their neighbours, and do not disappear either: the
 * webhook is answered `200`, its readable messages are applied, and each unreadable one is kept
 * as an `unreadable` dead letter, as it came (counted, listed, never replayable). A redelivery
 * adds none. Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../../src/model/session.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import { bothStores } from '../support/stores.ts';

const modes = bothStores();

describe.each(modes)('unreadable messages (%s)', (_mode, env) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(env());
  });
  afterAll(async () => {
    await h?.close();
  });

  it('are kept as dead letters while their neighbours are applied; a redelivery adds none', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770001';
    const good = text(u, 'hi', ts);
    const body = webhook([good]) as {
      entry: Array<{ changes: Array<{ value: { messages: unknown[] } }> }>;
    };
    const messages = body.entry[0]!.changes[0]!.value.messages;
    messages.push(
      { ...text(u, 'x', ts), from: '1555\n0001' },
      { ...text(u, 'y', ts), id: `wamid.${'z'.repeat(300)}` },
      'garbage',
    );
    // A second change without metadata.phone_number_id.
    body.entry[0]!.changes.push({
      field: 'messages',
      value: { messaging_product: 'whatsapp', messages: [text(u, 'no channel', ts)] },
    } as never);

    const first = await h.post(body);
    expect(first.status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    const letters = async (): Promise<DeadLetter[]> =>
      ((await (await h.admin('/dead-letters')).json()) as { dead_letters: DeadLetter[] }).dead_letters.filter(
        (d) => d.kind === 'unreadable',
      );
    const kept = await letters();
    expect(kept).toHaveLength(4);
    expect(kept.map((d) => d.reason).join('\n')).toMatch(/phone_number_id/);
    expect(kept.map((d) => d.payload)).toContainEqual('garbage');
    expect(kept.some((d) => JSON.stringify(d.payload).includes('no channel'))).toBe(true);
    const stats = (await (await h.admin('/stats')).json()) as { dead_letters: number };
    expect(stats.dead_letters).toBeGreaterThanOrEqual(4);

    // Meta retries the webhook: the same letters, no new ones; the good message is a duplicate.
    expect((await h.post(body)).status).toBe(200);
    expect(await letters()).toHaveLength(4);
    expect((await h.session(u))!.metadata.version).toBe(1);

    // Nothing to replay them into.
    const replay = await h.admin(`/dead-letters/${kept[0]!.id}/replay`, { method: 'POST' });
    expect(replay.status).toBe(409);
    expect(((await replay.json()) as { code: string }).code).toBe('BATON_ERR_NOT_REPLAYABLE');
  });

  it('a sender holding a colon is kept too: it could make two sessions one, and jam the real one', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770003';
    // ("pa:pb", u) and ("pa", "pb:" + u) were one session to the embedded store ("<channel>:<user>"),
    // and their replies one id: the second session's commit failed for good, holding the lease.
    const real = webhook([text(u, 'hi', ts)], '1065:4035') as never;
    const forged = webhook([text(`4035:${u}`, 'hi', ts)], '1065') as never;
    expect((await h.post(forged)).status).toBe(200);
    expect((await h.post(real)).status).toBe(200);
    const key = { channel: '1065:4035', user: u };
    await h.until(async () => (await h.baton.backend.load(key))?.version === 1);
    expect((await h.post(webhook([text(u, 'Ada Lovelace', ts + 1)], '1065:4035') as never)).status).toBe(200);
    await h.until(async () => (await h.baton.backend.load(key))?.step === 'choose_product');
    expect(await h.baton.backend.load({ channel: '1065', user: `4035:${u}` })).toBeNull();
    const kept = (
      (await (await h.admin('/dead-letters')).json()) as { dead_letters: DeadLetter[] }
    ).dead_letters.filter((d) => d.kind === 'unreadable' && JSON.stringify(d.payload).includes(`4035:${u}`));
    expect(kept).toHaveLength(1);
    expect(kept[0]!.reason).toMatch(/colon/);
  });

  it('one holding a NUL or a lone surrogate is kept too, and its neighbour stored (it answered 503 for good)', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770002';
    const body = webhook([text(u, 'good neighbour', ts)]) as {
      entry: Array<{ changes: Array<{ value: { messages: unknown[]; contacts?: unknown[] } }> }>;
    };
    const value = body.entry[0]!.changes[0]!.value;
    value.contacts = [...(value.contacts ?? []), { profile: { name: 'Other' }, wa_id: '15557770099' }];
    // No sender (and no single contact to assume one from): unreadable, with a NUL in a string
    // and in a key, and a lone surrogate.
    const { from: _from, ...noSender } = text(u, 'a\u0000b \ud800', ts) as Record<string, unknown>;
    value.messages.push({ ...noSender, 'k\u0000': 'v' });
    const res = await h.post(body);
    expect(res.status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    const kept = (
      (await (await h.admin('/dead-letters')).json()) as { dead_letters: DeadLetter[] }
    ).dead_letters.filter((d) => d.kind === 'unreadable' && JSON.stringify(d.payload).includes('a\ufffdb'));
    expect(kept).toHaveLength(1);
    expect(JSON.stringify(kept[0]!.payload)).toContain('k\ufffd');
    expect(JSON.stringify(kept[0]!.payload)).not.toMatch(/\\u0000|\\ud800/);
  });

  it("every one of a webhook's unreadable messages is kept, however many (only 20 were: QA42-F2)", async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770051';
    const body = webhook([text(u, 'hi', ts)]) as {
      entry: Array<{ changes: Array<{ value: { messages: unknown[]; contacts?: unknown[] } }> }>;
    };
    // No sender, and no single contact to assume one from.
    const value = body.entry[0]!.changes[0]!.value;
    value.contacts = [...(value.contacts ?? []), { profile: { name: 'Other' }, wa_id: '15557770098' }];
    for (let i = 0; i < 60; i++) {
      const { from: _from, ...noSender } = text(u, `orphan ${i} of 51`, ts) as Record<string, unknown>;
      body.entry[0]!.changes[0]!.value.messages.push(noSender);
    }
    expect((await h.post(body)).status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    const page = (await (await h.admin('/dead-letters?limit=100')).json()) as { dead_letters: DeadLetter[] };
    const kept = page.dead_letters.filter((d) => JSON.stringify(d.payload).includes('of 51'));
    expect(kept).toHaveLength(60);
  });

  it('one nested thousands of levels deep is kept, cut, and its neighbour stored (it answered 503 for good: QA42-F1)', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770052';
    const { from: _from, ...noSender } = text(u, 'deep 52', ts) as Record<string, unknown>;
    const body = webhook([text(u, 'hi', ts), { ...noSender, extra: 'DEEP' } as never]) as {
      entry: Array<{ changes: Array<{ value: { contacts?: unknown[] } }> }>;
    };
    const value = body.entry[0]!.changes[0]!.value;
    value.contacts = [...(value.contacts ?? []), { profile: { name: 'Other' }, wa_id: '15557770097' }];
    const raw = JSON.stringify(body).replace('"DEEP"', '['.repeat(8000) + ']'.repeat(8000));
    const res = await h.post(null, { raw });
    expect(res.status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    const kept = (
      (await (await h.admin('/dead-letters?limit=100')).json()) as { dead_letters: DeadLetter[] }
    ).dead_letters.filter((d) => JSON.stringify(d.payload).includes('deep 52'));
    expect(kept).toHaveLength(1);
    expect(JSON.stringify(kept[0]!.payload)).toContain('nested deeper than 64 levels');
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
  });

  it('one without an id, nested thousands of levels deep, is stored as unsupported beside its neighbour (it answered 500: QA54-F1)', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770053';
    const { id: _id, ...noId } = text(u, 'deep 53', ts) as Record<string, unknown>;
    const body = webhook([text(u, 'hi', ts), { ...noId, extra: 'DEEP' } as never]);
    const raw = JSON.stringify(body).replace('"DEEP"', '['.repeat(8000) + ']'.repeat(8000));
    const res = await h.post(null, { raw });
    expect(res.status).toBe(200);
    const ids = async (): Promise<string[]> => (await h.transitions(u)).flatMap((t) => t.message_ids);
    await expect.poll(async () => (await ids()).length, { timeout: 10_000 }).toBe(2);
    expect((await ids()).filter((id) => id.startsWith('baton.noid.'))).toHaveLength(1);
    // Meta's retry of the same bytes is the same message: nothing more is recorded.
    expect((await h.post(null, { raw })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(await ids()).toHaveLength(2);
  });

  it('a change whose messages are not a list is kept too, and the change beside it stored (outside test QA10-F3)', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557770041';
    const body = webhook([text(u, 'hi', ts)]) as {
      entry: Array<{ changes: Array<{ field: string; value: Record<string, unknown> }> }>;
    };
    const changes = body.entry[0]!.changes;
    changes.unshift({
      field: 'messages',
      value: { ...changes[0]!.value, messages: { a: 'not a list 41' }, statuses: 'nor this' },
    });
    const r = await h.post(body);
    expect(r.status).toBe(200);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    const kept = (
      (await (await h.admin('/dead-letters')).json()) as { dead_letters: DeadLetter[] }
    ).dead_letters.filter(
      (d) => d.kind === 'unreadable' && JSON.stringify(d.payload).includes('not a list 41'),
    );
    expect(kept).toHaveLength(1);
    expect(kept[0]!.reason).toMatch(/"messages" is not an array/);
    expect(kept[0]!.payload).toEqual({ a: 'not a list 41' });
  });
});
