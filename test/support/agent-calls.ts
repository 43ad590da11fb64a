/** Admin API calls of the agent's that several suites make through a harness. */
import type { Harness } from './harness.ts';

/** `POST /sessions/:waId/agent`: `agent` (Ana by default) takes the session. */
export function takeSession(h: Harness, user: string, agent = 'Ana'): Promise<Response> {
  return h.admin(`/sessions/${user}/agent`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ agent }),
  });
}
