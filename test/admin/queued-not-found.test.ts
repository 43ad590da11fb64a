/**
 * A user who has just written has no session until their first message is processed: during a
 * backlog the console's "no session" page says that messages wait, and how long the oldest has,
 * so an agent does not take it for "this user never wrote" (outside finding Q3). Without a
 * backlog it says nothing more.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

let h: Harness;

beforeAll(async () => {
  // A buffer window of a minute: the message waits, stored and unprocessed, for the whole test.
  h = await startHarness({ BATON_BUFFER_MS: '60000' });
});
afterAll(async () => {
  await h.close();
});

async function findPage(waId: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${h.url}/admin/session?wa_id=${waId}`, {
    headers: { cookie: await h.dashboardCookie() },
  });
  return { status: r.status, body: await r.text() };
}

it('says that messages wait to be processed, only while some do', async () => {
  const before = await findPage('15550911001');
  expect(before.status).toBe(404);
  expect(before.body).toContain('id="not-found"');
  expect(before.body).not.toContain('id="queued"');

  expect((await h.post(webhook([text('15550911001', 'hi', 1_750_000_000)]))).status).toBe(200);
  const after = await findPage('15550911001');
  expect(after.status).toBe(404);
  expect(after.body.replace(/\s+/g, ' ')).toMatch(
    /id="queued"> 1 message waits to be processed, the oldest for \d+ s: a user who wrote for the first time has a session once their first message is processed\./,
  );
});
