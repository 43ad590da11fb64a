/**
 * The agent's side of a hand-off over the admin API (SPEC section 4): the conversation, the
 * inbox, take / write / hand back; plus the lease and flow-map reads the dashboard shows.
 * Registered inside the authenticated `/admin/api` scope by `registerAdmin`.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import type { Backend } from '../backends/types.ts';
import type { Flow } from '../flow/define.ts';
import type { SessionKey } from '../model/message.ts';
import { toSessionView, type OutboundRecord, type SessionSnapshot } from '../model/session.ts';
import { fail, findOne, parsed } from './http.ts';
import { conversationPage, currentError } from './conversation.ts';
import { inboxPage, liveLeaseView, otherSteps, stepCounts } from './reads.ts';
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
  /** `takeOver`: from another agent who has it (else BATON_ERR_TAKEN_BY_OTHER). */
  /** `seenVersion`: the version the agent saw; a session that changed since is refused (409). */
  take(
    key: SessionKey,
    agent: string,
    takeOver?: boolean,
    seenVersion?: number,
    /** The agent the caller saw holding it ('' or null: nobody); refused (409) if another has it now. */
    seenAgent?: string | null,
  ): Promise<SessionSnapshot | null>;
  /** `anyway`: an agent who names themself writes to a session another agent has (else 409). */
  message(
    key: SessionKey,
    text: string,
    agent?: string,
    anyway?: boolean,
  ): Promise<{ snapshot: SessionSnapshot; outbound: OutboundRecord } | null>;
  handback(
    key: SessionKey,
    step: string,
    agent?: string,
    data?: Readonly<Record<string, string | number | boolean | null>>,
    anyway?: boolean,
  ): Promise<SessionSnapshot | null>;
}

export function registerAgentRoutes(
  api: FastifyInstance,
  deps: {
    readonly backend: Backend;
    readonly flows: ReadonlyMap<string, Flow>;
    readonly agents: AgentDesk;
    readonly now?: () => number;
    readonly sessionTtlSec?: number;
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
    return { lease: await liveLeaseView(backend, s, now()) };
  });

  api.get('/inbox', { schema: { querystring: InboxQuery } }, async (req, reply) => {
    const q = parsed(InboxQuery, req.query);
    const unassigned = q.unassigned === 'true' || q.unassigned === '1';
    if (q.agent !== undefined && unassigned) {
      return fail(
        reply,
        'BATON_ERR_BAD_REQUEST',
        {},
        'agent and unassigned=true select no session together: give one',
      );
    }
    return inboxPage(backend, now(), q.limit ?? 100, q.channel, q.cursor, {
      agent: q.agent,
      unassigned,
    });
  });

  api.post('/sessions/:waId/agent', { schema: { ...one, body: TakeBody } }, async (req, reply) => {
    const s = await findOne(backend, req, reply);
    if (!s) return reply;
    const { agent, take_over: takeOver, version, from } = parsed(TakeBody, req.body);
    const seenAgent = from === undefined ? undefined : from === '' ? null : from;
    const next = await agents.take(s, agent, takeOver ?? false, version, seenAgent);
    // SPEC 4's answer, `{"agent": "<name from the body>"}`, with the session it now has.
    return next
      ? { agent, ...toSessionView(next) }
      : fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
  });

  api.post(
    '/sessions/:waId/agent/messages',
    { schema: { ...one, body: AgentMessageBody } },
    async (req, reply) => {
      const s = await findOne(backend, req, reply);
      if (!s) return reply;
      const { text, agent, confirm } = parsed(AgentMessageBody, req.body);
      const r = await agents.message(s, text, agent, confirm ?? false);
      if (!r) return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
      const error = currentError(r.outbound);
      return {
        session: toSessionView(r.snapshot),
        message: {
          id: r.outbound.id,
          status: r.outbound.status,
          callback_data: r.outbound.callbackData,
          ...(r.outbound.providerMessageId !== undefined ? { wamid: r.outbound.providerMessageId } : {}),
          // Why it failed (a closed 24-hour window: 131047), for the agent to act on (outside test D12).
          ...(error !== undefined ? { error } : {}),
        },
      };
    },
  );

  api.delete('/sessions/:waId/agent', { schema: { ...one, body: HandbackBody } }, async (req, reply) => {
    const s = await findOne(backend, req, reply);
    if (!s) return reply;
    const { step, agent, data, confirm } = parsed(HandbackBody, req.body);
    const next = await agents.handback(s, step, agent, data, confirm ?? false);
    return next ? toSessionView(next) : fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
  });

  api.get(
    '/flows/:id/map',
    { schema: { params: FlowParams, querystring: EmptyQuery } },
    async (req, reply) => {
      const flow = deps.flows.get(parsed(FlowParams, req.params).id);
      if (!flow) return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such flow');
      const counts = await stepCounts(backend, flow, now(), deps.sessionTtlSec);
      const count = (id: string) => ({
        id,
        sessions: counts[id]?.sessions ?? 0,
        oldest_ms: counts[id]?.oldestMs ?? null,
        idle: counts[id]?.idle ?? 0,
      });
      return {
        flow: flow.id,
        start: flow.start,
        steps: [...flow.steps.keys()].map(count),
        // Sessions at steps this process's version of the flow does not have (another version's,
        // during a rolling deploy or after a rollback): left out, the counts did not add up and
        // the sessions a rollback hands to agents were nowhere on the map (outside test QA113-F1).
        other_steps: otherSteps(flow, counts).map(count),
      };
    },
  );
}
