/** Steps the console's browser suites share: webhooks that put a user in the inbox, and signing in. */
import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { ADMIN_TOKEN, type Harness } from './harness.ts';
import { text, webhook } from './payloads.ts';

/** Posts one webhook carrying `msgs`; it must be taken (200). */
export async function postMessages(h: Harness, ...msgs: Parameters<typeof webhook>[0]): Promise<void> {
  expect((await h.post(webhook(msgs))).status).toBe(200);
}

/**
 * User `u` handed to an agent by the order flow (a text it does not understand at
 * choose_product), their messages stamped from `ts`.
 */
export async function waitingForAgent(h: Harness, u: string, ts: number): Promise<void> {
  await postMessages(h, text(u, 'hi', ts));
  await h.settled(u, 1);
  await postMessages(h, text(u, 'Kim', ts + 1));
  await h.settled(u, 2);
  await postMessages(h, text(u, 'I need a person', ts + 2));
  expect((await h.settled(u, 3)).metadata.needs_agent).toBe(true);
}

/** Signs `p` in to the console with the admin token. */
export async function signIn(h: Harness, p: Page): Promise<void> {
  await p.goto(`${h.url}/admin`);
  await p.fill('#token', ADMIN_TOKEN);
  await p.click('#signin button[type="submit"]');
  await p.waitForSelector('#stats');
}
