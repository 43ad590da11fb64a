/**
 * The agent's side of a hand-off over the admin API (SPEC section 4): the conversation, the
 * inbox, take / write / hand back; plus the lease and flow-map reads the dashboard shows.
 * Registered inside the authenticated `/admin/api` scope by `registerAdmin`.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import type { Backend } from '../backends/types.ts';
import { agentOf } from '../flow/agent.ts';
import type { Flow } from '../flow/define.ts';
import type { SessionKey } from '../model/message.ts';
import { toSessionView, type OutboundRecord, type SessionSnapshot } from '../model/session.ts';
import { fail, findOne, parsed } from './http.ts';
import { conversationPage } from './conversation.ts';
import {
  AgentMessageBody,
  ChannelQuery,
  EmptyQuery,
  FlowParams,
  HandbackBody,
  InboxQuery,
  MessagesQuery,
  TakeBody,
  WaIdParams,
} from './schemas.ts';

/** The engine's agent operations, as the admin API calls them. */
export interface AgentDesk {
  take(key: SessionKey, agent: string): Promise<SessionSnapshot | null>;
  message(
    key: SessionKey,
    text: string,
    agent?: string,
  ): Promise<{ snapshot: SessionSnapshot; outbound: OutboundRecord } | null>;
  handback(key: SessionKey, step: string, agent?: string): Promise<SessionSnapshot | null>;
}

/** Most sessions the inbox and the flow map look at. */
const SCAN_LIMIT = 5000;

/** Every session matching `filter`, page by page, up to {@link SCAN_LIMIT}. */
async function scan(
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
async function waitingSince(backend: Backend, s: SessionSnapshot): Promise<number> {
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

export function registerAgentRoutes(
  api: FastifyInstance,
  deps: {
    readonly backend: Backend;
    readonly flows: ReadonlyMap<string, Flow>;
    readonly agents: AgentDesk;
    readonly now?: () => number;
  },
): void {
  const { backend, agents } = deps;
  const now = deps.now ?? Date.now;
  const one = { params: WaIdParams, querystring: ChannelQuery };

  api.get(
    '/sessions/:waId/messages',
    { schema: { params: WaIdParams, querystring: MessagesQuery } },
    async (req, reply) => {
      const s = await findOne(backend, req, reply);
      if (!s) return reply;
      const q = parsed(MessagesQuery, req.query);
      const [inbound, outbound] = await Promise.all([backend.inbound(s), backend.outbound(s)]);
      return conversationPage(inbound, outbound, q.limit ?? 100, q.cursor);
    },
  );

  api.get('/sessions/:waId/lease', { schema: one }, async (req, reply) => {
    const s = await findOne(backend, req, reply);
    if (!s) return reply;
    const l = await backend.leaseInfo(s);
    return {
      lease:
        l === null
          ? null
          : {
              holder: l.holder,
              expires_at: new Date(l.expiresAt).toISOString(),
              expires_in_ms: Math.max(0, l.expiresAt - now()),
            },
    };
  });

  api.get('/inbox', { schema: { querystring: InboxQuery } }, async (req) => {
    const q = parsed(InboxQuery, req.query);
    const waiting = await scan(backend, {
      needsAgent: true,
      ...(q.channel !== undefined ? { channel: q.channel } : {}),
    });
    const t = now();
    const items = await Promise.all(waiting.map(async (s) => ({ s, since: await waitingSince(backend, s) })));
    items.sort(
      (a, b) =>
        a.since - b.since || a.s.channel.localeCompare(b.s.channel) || a.s.user.localeCompare(b.s.user),
    );
    return {
      sessions: items.slice(0, q.limit ?? 100).map(({ s, since }) => ({
        ...toSessionView(s),
        waiting_since: new Date(since).toISOString(),
        waiting_ms: Math.max(0, t - since),
        agent: agentOf(s),
      })),
      total: items.length,
    };
  });

  api.post('/sessions/:waId/agent', { schema: { ...one, body: TakeBody } }, async (req, reply) => {
    const s = await findOne(backend, req, reply);
    if (!s) return reply;
    const { agent } = parsed(TakeBody, req.body);
    const next = await agents.take(s, agent);
    return next ? toSessionView(next) : fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
  });

  api.post(
    '/sessions/:waId/agent/messages',
    { schema: { ...one, body: AgentMessageBody } },
    async (req, reply) => {
      const s = await findOne(backend, req, reply);
      if (!s) return reply;
      const { text, agent } = parsed(AgentMessageBody, req.body);
      const r = await agents.message(s, text, agent);
      if (!r) return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
      return {
        session: toSessionView(r.snapshot),
        message: {
          id: r.outbound.id,
          status: r.outbound.status,
          callback_data: r.outbound.callbackData,
          ...(r.outbound.providerMessageId !== undefined ? { wamid: r.outbound.providerMessageId } : {}),
        },
      };
    },
  );

  api.delete('/sessions/:waId/agent', { schema: { ...one, body: HandbackBody } }, async (req, reply) => {
    const s = await findOne(backend, req, reply);
    if (!s) return reply;
    const { step } = parsed(HandbackBody, req.body);
    const next = await agents.handback(s, step);
    return next ? toSessionView(next) : fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
  });

  api.get(
    '/flows/:id/map',
    { schema: { params: FlowParams, querystring: EmptyQuery } },
    async (req, reply) => {
      const flow = deps.flows.get(parsed(FlowParams, req.params).id);
      if (!flow) return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such flow');
      const counts = await stepCounts(backend, flow, now());
      return {
        flow: flow.id,
        start: flow.start,
        steps: [...flow.steps.keys()].map((id) => ({
          id,
          sessions: counts[id]?.sessions ?? 0,
          oldest_ms: counts[id]?.oldestMs ?? null,
        })),
      };
    },
  );
}
