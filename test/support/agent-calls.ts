/** Admin API calls of the agent's that several suites make through a harness. */
import { expect } from 'vitest';
import type { Harness } from './harness.ts';
import { text, webhook } from './payloads.ts';

/** `POST /sessions/:waId/agent`: `agent` (Ana by default) takes the session. */
export function takeSession(h: Harness, user: string, agent = 'Ana'): Promise<Response> {
  return h.admin(`/sessions/${user}/agent`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ agent }),
  });
}

/**
 * The reference bot's session escalated at choose_product and taken by Ana: "hi", "Jane", then
 * "which one?" (a harness with BATON_MAX_RETRIES=0, so the first wrong input hands off), each
 * settled, and the agent's take. `ts` is the first message's timestamp.
 */
export async function escalatedAndTaken(h: Harness, user: string, ts: number): Promise<void> {
  const steps = ['hi', 'Jane', 'which one?'];
  for (const [i, body] of steps.entries()) {
    expect((await h.post(webhook([text(user, body, ts + i)]))).status).toBe(200);
    await h.settled(user, i + 1);
  }
  expect((await h.session(user))?.metadata.needs_agent).toBe(true);
  expect((await takeSession(h, user)).status).toBe(200);
}
