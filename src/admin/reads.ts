/**
 * Admin reads shared by the JSON API and the dashboard: the inbox (longest waiting first),
 * live counts per step for the flow map, and the lease as shown to agents.
 * @module
 */
import type { Backend, LeaseInfo, SessionCount } from '../backends/types.ts';
import { agentOf } from '../flow/agent.ts';
import type { Flow } from '../flow/define.ts';
import { toSessionView, type SessionSnapshot, type SessionView } from '../model/session.ts';
import type { SessionKey } from '../model/message.ts';
import { inboundView, type ConversationItem } from './conversation.ts';
import { decodeCursor, encodeCursor } from './schemas.ts';

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

/**
 * When the session started waiting for an agent: its last `escalated` record's time, kept in the
 * session since it was escalated (else read from its log), else its last message.
 */
export async function waitingSince(backend: Backend, s: SessionSnapshot): Promise<number> {
  if (s.waitingSince !== undefined) return s.waitingSince;
  const records = await backend.transitions(s);
  for (let i = records.length - 1; i >= 0; i -= 1) {
    const r = records[i]!;
    if (r.kind === 'escalated') return Date.parse(r.at);
    if (r.kind === 'handback' || r.kind === 'admin_reset') break;
  }
  return s.lastInteraction !== null ? s.lastInteraction * 1000 : s.createdAt;
}

export interface StepCount {
  readonly sessions: number;
  readonly oldestMs?: number;
  /** Sessions at the step idle past the session TTL, not counted in `sessions`. */
  readonly idle: number;
}

/**
 * Live counts per step of one flow: sessions there, and the longest any has waited there since
 * the user last wrote. Counted by the store in one query, however many sessions there are (two
 * with a TTL). With `sessionTtlSec`, sessions idle longer than that are counted apart (`idle`):
 * their next message starts them over (SPEC 1.8), so they stand at no step any more. Not those
 * waiting for an agent: a message then is held for the agent, and the session stays where it is
 * (outside test QA87-F2: overnight, the waiting users dropped out of the flow map).
 */
export async function stepCounts(
  backend: Backend,
  flow: Flow,
  now: number,
  sessionTtlSec?: number,
): Promise<Record<string, StepCount>> {
  type AtStep = SessionCount & { readonly step: string };
  const mine = (rows: readonly SessionCount[]): AtStep[] =>
    rows.filter((c): c is AtStep => c.flow === flow.id && c.step !== null);
  const [all, recent] = await Promise.all([
    backend.countSessions(),
    sessionTtlSec === undefined ? null : backend.countSessions(now - sessionTtlSec * 1000),
  ]);
  // Live: every session waiting for an agent, and the others only if written to within the TTL.
  const live =
    recent === null ? all : [...all.filter((c) => c.needsAgent), ...recent.filter((c) => !c.needsAgent)];
  const counts: Record<string, { sessions: number; oldestAt: number; total: number }> = {};
  const at = (step: string) =>
    (counts[step] ??= { sessions: 0, oldestAt: Number.POSITIVE_INFINITY, total: 0 });
  for (const c of mine(all)) at(c.step).total += c.sessions;
  for (const c of mine(live)) {
    const step = at(c.step);
    step.sessions += c.sessions;
    step.oldestAt = Math.min(step.oldestAt, c.oldestAt);
  }
  return Object.fromEntries(
    Object.entries(counts).map(([step, c]) => [
      step,
      {
        sessions: c.sessions,
        idle: Math.max(0, c.total - c.sessions), // the two reads are not one snapshot
        ...(c.sessions > 0 ? { oldestMs: Math.max(0, now - c.oldestAt) } : {}),
      },
    ]),
  );
}

/** Steps with sessions that `flow` (this process's version) does not have, by name. */
export function otherSteps(flow: Flow, counts: Readonly<Record<string, unknown>>): string[] {
  return Object.keys(counts)
    .filter((id) => !flow.steps.has(id))
    .sort();
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

/** Which waiting sessions the inbox lists: one agent's, or those nobody has taken yet. */
export interface InboxFilter {
  readonly agent?: string | undefined;
  readonly unassigned?: boolean | undefined;
}

/**
 * Sessions waiting for an agent, longest waiting first, a page at a time (`cursor`: the
 * `next_cursor` of the page before). `total` counts every waiting session; the order is worked
 * out over the first {@link SCAN_LIMIT} of them (`ordered`), and a page never goes beyond those.
 * With a `filter`, only the sessions it names are listed and counted (`total`, `ordered`);
 * `agents` and `unassigned` count every waiting session ordered, whatever the filter.
 */
export async function inboxPage(
  backend: Backend,
  now: number,
  limit: number,
  channel?: string,
  cursor?: string,
  filter: InboxFilter = {},
): Promise<{
  sessions: InboxItem[];
  total: number;
  ordered: number;
  /** How many waiting sessions come before this page. */
  from: number;
  next_cursor: string | null;
  /** Sessions each agent has taken, by name (most first). */
  agents: { readonly agent: string; readonly sessions: number }[];
  /** Sessions nobody has taken yet. */
  unassigned: number;
}> {
  const [waiting, counts] = await Promise.all([
    scan(backend, { needsAgent: true, ...(channel !== undefined ? { channel } : {}) }),
    channel === undefined ? backend.countSessions() : null,
  ]);
  const all = await Promise.all(
    waiting.map(async (s) => ({ s, since: await waitingSince(backend, s), agent: agentOf(s) })),
  );
  const byAgent = new Map<string, number>();
  let unassigned = 0;
  for (const { agent } of all) {
    if (agent === null) unassigned += 1;
    else byAgent.set(agent, (byAgent.get(agent) ?? 0) + 1);
  }
  const filtered = filter.agent !== undefined || filter.unassigned === true;
  const items = all.filter(({ agent }) =>
    filter.unassigned === true ? agent === null : filter.agent === undefined || agent === filter.agent,
  );
  items.sort((a, b) => inboxOrder(a.since, a.s, b.since, b.s));
  const from = cursor === undefined ? 0 : inboxFrom(items, cursor);
  const page = items.slice(from, from + limit);
  const last = await Promise.all(page.map(async ({ s }) => (await backend.inbound(s, 1)).at(-1)));
  const total =
    counts === null || filtered
      ? items.length
      : counts.filter((c) => c.needsAgent).reduce((n, c) => n + c.sessions, 0);
  const next = from + page.length;
  const end = page.at(-1);
  return {
    sessions: page.map(({ s, since, agent }, i) => ({
      ...toSessionView(s),
      waiting_since: new Date(since).toISOString(),
      waiting_ms: Math.max(0, now - since),
      agent,
      last_message: last[i] !== undefined ? inboundView(last[i]) : null,
    })),
    total: Math.max(total, items.length),
    ordered: items.length,
    from,
    // The last row's place in the order, not its position: sessions an agent takes off the
    // inbox meanwhile do not push later ones past the next page (outside test D1).
    next_cursor: next < items.length && end ? encodeCursor([end.since, end.s.channel, end.s.user]) : null,
    agents: [...byAgent]
      .map(([agent, sessions]) => ({ agent, sessions }))
      .sort((a, b) => b.sessions - a.sessions || a.agent.localeCompare(b.agent)),
    unassigned,
  };
}

/**
 * How many of `items` (in inbox order) come before the page a cursor names: those up to and
 * including its `[waiting since, channel, user]`; an old positional cursor (`o<n>`) is a position.
 */
function inboxFrom(items: readonly { s: SessionSnapshot; since: number }[], cursor: string): number {
  const old = /^o(\d{1,9})$/.exec(cursor);
  if (old) return Number(old[1]);
  const key = decodeCursor(cursor, 'nss');
  if (key === null) return 0;
  const [since, channel, user] = key as [number, string, string];
  const after = items.findIndex((x) => inboxOrder(x.since, x.s, since, { channel, user }) > 0);
  return after === -1 ? items.length : after;
}

/** The inbox's order: longest waiting first, then by channel and user. */
function inboxOrder(a: number, ak: SessionKey, b: number, bk: SessionKey): number {
  return a - b || ak.channel.localeCompare(bk.channel) || ak.user.localeCompare(bk.user);
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

/** A lease as an agent sees it. */
export type LeaseView = NonNullable<ReturnType<typeof leaseView>> & {
  /** Whether the holder's process still beats (false: it is gone, and clearing the lease is safe). */
  readonly holder_live: boolean;
};

/**
 * The session's lease with whether its holder is alive: a killed worker's lease looked like any
 * other until it expired, so an agent could not tell that "Clear lease" was safe (outside test Q4).
 */
export async function liveLeaseView(
  backend: Backend,
  key: SessionKey,
  now: number,
): Promise<LeaseView | null> {
  const view = leaseView(await backend.leaseInfo(key), now);
  if (view === null) return null;
  const live = view.holder === null ? true : await backend.holderAlive(view.holder).catch(() => true);
  return { ...view, holder_live: live };
}
