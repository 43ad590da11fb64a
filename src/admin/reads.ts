/**
 * Admin reads shared by the JSON API and the dashboard: the inbox (longest waiting first),
 * live counts per step for the flow map, and the lease as shown to agents.
 * @module
 */
import type { Backend, LeaseInfo } from '../backends/types.ts';
import { agentOf } from '../flow/agent.ts';
import type { Flow } from '../flow/define.ts';
import { toSessionView, type SessionSnapshot, type SessionView } from '../model/session.ts';
import { inboundView, type ConversationItem } from './conversation.ts';

/** Most sessions the inbox and the flow map look at. */
const SCAN_LIMIT = 5000;

/** Every session matching `filter`, page by page, up to {@link SCAN_LIMIT}. */
export async function scan(
  backend: Backend,
  filter: { needsAgent?: boolean; step?: string; channel?: string },
): Promise<SessionSnapshot[]> {
  const out: SessionSnapshot[] = [];
  let cursor: string | null = null;
  do {
    const page: { sessions: SessionSnapshot[]; nextCursor: string | null } = await backend.listSessions({
      ...filter,
      limit: 500,
      ...(cursor !== null ? { cursor } : {}),
    });
    out.push(...page.sessions);
    cursor = page.nextCursor;
  } while (cursor !== null && out.length < SCAN_LIMIT);
  return out;
}

/** When the session started waiting for an agent: its last `escalated` record, else its last message. */
export async function waitingSince(backend: Backend, s: SessionSnapshot): Promise<number> {
  const records = await backend.transitions(s);
  for (let i = records.length - 1; i >= 0; i -= 1) {
    const r = records[i]!;
    if (r.kind === 'escalated') return Date.parse(r.at);
    if (r.kind === 'handback' || r.kind === 'admin_reset') break;
  }
  return s.lastInteraction !== null ? s.lastInteraction * 1000 : s.createdAt;
}

/** How long a session has been at its step, as the flow map shows it: since the user last wrote. */
function idleMs(s: SessionSnapshot, now: number): number {
  return Math.max(0, now - (s.lastInteraction !== null ? s.lastInteraction * 1000 : s.createdAt));
}

export interface StepCount {
  readonly sessions: number;
  readonly oldestMs?: number;
}

/** Live counts per step of one flow: sessions there, and the longest any has waited there. */
export async function stepCounts(
  backend: Backend,
  flow: Flow,
  now: number,
): Promise<Record<string, StepCount>> {
  const counts: Record<string, StepCount> = {};
  await Promise.all(
    [...flow.steps.keys()].map(async (step) => {
      const here = (await scan(backend, { step })).filter((s) => s.flow === flow.id);
      const oldest = here.reduce((m, s) => Math.max(m, idleMs(s, now)), 0);
      counts[step] = { sessions: here.length, ...(here.length > 0 ? { oldestMs: oldest } : {}) };
    }),
  );
  return counts;
}

/** One session of the inbox. */
export interface InboxItem extends SessionView {
  readonly waiting_since: string;
  readonly waiting_ms: number;
  /** The agent who took it, if one did. */
  readonly agent: string | null;
  /** What the user wrote last (as the conversation shows it), for triage. */
  readonly last_message: ConversationItem | null;
}

/** Sessions waiting for an agent, longest waiting first. */
export async function inboxPage(
  backend: Backend,
  now: number,
  limit: number,
  channel?: string,
): Promise<{ sessions: InboxItem[]; total: number }> {
  const waiting = await scan(backend, { needsAgent: true, ...(channel !== undefined ? { channel } : {}) });
  const items = await Promise.all(waiting.map(async (s) => ({ s, since: await waitingSince(backend, s) })));
  items.sort(
    (a, b) => a.since - b.since || a.s.channel.localeCompare(b.s.channel) || a.s.user.localeCompare(b.s.user),
  );
  const page = items.slice(0, limit);
  const last = await Promise.all(page.map(async ({ s }) => (await backend.inbound(s)).at(-1)));
  return {
    sessions: page.map(({ s, since }, i) => ({
      ...toSessionView(s),
      waiting_since: new Date(since).toISOString(),
      waiting_ms: Math.max(0, now - since),
      agent: agentOf(s),
      last_message: last[i] !== undefined ? inboundView(last[i]) : null,
    })),
    total: items.length,
  };
}

/** The lease as the API shows it. */
export function leaseView(
  l: LeaseInfo | null,
  now: number,
): { holder: string | null; expires_at: string; expires_in_ms: number } | null {
  return l === null
    ? null
    : {
        holder: l.holder,
        expires_at: new Date(l.expiresAt).toISOString(),
        expires_in_ms: Math.max(0, l.expiresAt - now),
      };
}
