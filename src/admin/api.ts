/**
 * The admin JSON API (SPEC section 4), under `/admin/api`, behind `Authorization: Bearer
 * <ADMIN_TOKEN>` or the dashboard's signed-in cookie (then with its CSRF header on changes).
 * Every route has a schema (`./schemas.ts`): a bad query parameter, id or body answers `400`
 * with `{error, code}`, never `500`.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import type { Backend, BackendStats } from '../backends/types.ts';
import { randomUUID } from 'node:crypto';
import { eventRefusal, type Flow } from '../flow/define.ts';
import { flowMermaid } from '../graph/index.ts';
import {
  eventMessageId,
  refuseSharedChat,
  type InboundMessage,
  type SessionKey,
  type StoredMessage,
} from '../model/message.ts';
import {
  toSessionView,
  type DeadLetter,
  type OutboundStatus,
  type SessionSnapshot,
} from '../model/session.ts';
import { registerAgentRoutes, type AgentDesk } from './agent-routes.ts';
import { AdminAuth } from './auth.ts';
import { deadLetterView, outboundView, transitionsPage } from './conversation.ts';
import { acceptJsonBodies, adminErrorHandler, fail, findOne, oneOf, parsed } from './http.ts';
import {
  ChannelQuery,
  deadLetterAfter,
  DeadLetterParams,
  DeadLettersQuery,
  ConfirmQuery,
  EVENT_PAYLOAD_MAX_BYTES,
  EventBody,
  ResetBody,
  EmptyQuery,
  deadLetterCursor,
  FlowParams,
  LimitQuery,
  NoBody,
  SessionsQuery,
  TransitionsQuery,
  WaIdParams,
  zodCompiler,
} from './schemas.ts';

export interface AdminDeps {
  readonly backend: Backend;
  readonly adminToken: string;
  readonly flows: ReadonlyMap<string, Flow>;
  /** Resets a session under its lease (records `admin_reset`). */
  /** `agent`: who resets, named in the record (else the record names the admin role). */
  readonly resetSession: (
    key: SessionKey,
    agent?: string,
    anyway?: boolean,
  ) => Promise<SessionSnapshot | null>;
  /** The engine's agent operations (take, write, hand back). */
  readonly agents: AgentDesk;
  /**
   * The flow that will run a message for a session (null: none stored yet): the events route
   * checks an event against it. Default: the session's flow, else the first of `flows`.
   */
  readonly flowForMessage?: (s: SessionSnapshot | null, m: StoredMessage) => Flow;
  /** The clock (tests move it). */
  readonly now?: () => number;
  /** `BATON_SESSION_TTL`: sessions idle longer are not counted at their step by the flow map. */
  readonly sessionTtlSec?: number;
  /**
   * The stats polling readers get (`/stats`, `/metrics`); the app passes a cached read
   * (`cachedStats`). Default: `backend.stats()` on every call.
   */
  readonly stats?: () => Promise<BackendStats>;
}

/** Registers `/admin/api`; returns the auth the dashboard shares (same token, same cookie). */
export function registerAdmin(app: FastifyInstance, deps: AdminDeps): AdminAuth {
  const { backend } = deps;
  const auth = new AdminAuth(deps.adminToken, backend);

  void app.register(
    async (api) => {
      api.setValidatorCompiler(zodCompiler);
      api.setErrorHandler(adminErrorHandler);
      acceptJsonBodies(api);
      api.setNotFoundHandler((_req, reply) => fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such route'));
      // Users' names, texts and addresses: kept by no cache, never sniffed (outside test X5).
      api.addHook('onSend', async (_req, reply, payload) => {
        reply.header('cache-control', 'no-store');
        reply.header('x-content-type-options', 'nosniff');
        return payload;
      });

      api.addHook('onRequest', async (req, reply) => {
        // Only a token can be guessed: a signed-in page's cookie (a random sign-in id the store
        // checks) goes on working while an address is locked out of token attempts.
        const wait = req.headers.authorization === undefined ? 0 : auth.throttle.waitMs(req.ip);
        if (wait > 0) {
          reply.header('retry-after', String(Math.ceil(wait / 1000)));
          return fail(reply, 'BATON_ERR_TOO_MANY_ATTEMPTS');
        }
        const caller = await auth.callerOf(req);
        if (caller === null) {
          // A wrong token is a guess; no token at all (a signed-out page) is not.
          const given = req.headers.authorization;
          if (given !== undefined) auth.throttle.failed(req.ip, given);
          return fail(reply, 'BATON_ERR_UNAUTHORIZED');
        }
        if (!auth.csrfOk(req, caller)) return fail(reply, 'BATON_ERR_CSRF');
      });

      const one = { params: WaIdParams, querystring: ChannelQuery };

      api.get('/sessions', { schema: { querystring: SessionsQuery } }, async (req) => {
        const q = parsed(SessionsQuery, req.query);
        const page = await backend.listSessions({
          limit: q.limit ?? 50,
          ...(q.step !== undefined ? { step: q.step } : {}),
          ...(q.needs_agent !== undefined
            ? { needsAgent: q.needs_agent === 'true' || q.needs_agent === '1' }
            : {}),
          ...(q.channel !== undefined ? { channel: q.channel } : {}),
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        });
        return { sessions: page.sessions.map(toSessionView), next_cursor: page.nextCursor };
      });

      api.get('/sessions/:waId', { schema: one }, async (req, reply) => {
        const s = await findOne(backend, req, reply);
        return s ? toSessionView(s) : reply;
      });

      api.get(
        '/sessions/:waId/transitions',
        { schema: { params: WaIdParams, querystring: TransitionsQuery } },
        async (req, reply) => {
          const s = await findOne(backend, req, reply);
          if (!s) return reply;
          const q = parsed(TransitionsQuery, req.query);
          return transitionsPage(await backend.transitions(s), q.limit, q.cursor);
        },
      );

      api.get('/sessions/:waId/outbound', { schema: one }, async (req, reply) => {
        const s = await findOne(backend, req, reply);
        return s ? { outbound: (await backend.outbound(s)).map(outboundView) } : reply;
      });

      api.delete('/sessions/:waId/lock', { schema: { ...one, body: NoBody } }, async (req, reply) => {
        const s = await findOne(backend, req, reply);
        return s ? { released: await backend.clearLease(s) } : reply;
      });

      api.post('/sessions/:waId/reset', { schema: { ...one, body: ResetBody } }, async (req, reply) => {
        const s = await findOne(backend, req, reply);
        if (!s) return reply;
        const body = parsed(ResetBody, req.body);
        const next = await deps.resetSession(s, body?.agent, body?.confirm === true);
        return next ? toSessionView(next) : fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such session');
      });

      // An event from the bot's own systems (the flow's `events`): stored in the session's
      // mailbox like a message (an id already stored is a duplicate), applied in order with the
      // user's messages under the session's baton. With `?channel=`, it may start a session.
      api.post(
        '/sessions/:waId/events',
        { schema: { ...one, body: EventBody }, bodyLimit: EVENT_PAYLOAD_MAX_BYTES * 4 },
        async (req, reply) => {
          const { waId } = parsed(WaIdParams, req.params);
          const { channel } = parsed(ChannelQuery, req.query);
          const body = parsed(EventBody, req.body);
          const found = await backend.findSessions(waId, channel);
          if (found.length === 0 && channel === undefined)
            return fail(
              reply,
              'BATON_ERR_NOT_FOUND',
              {},
              'No session for this user: name the business number with ?channel= to start one',
            );
          const s = found.length === 0 ? null : await oneOf(found, waId, reply);
          if (found.length > 0 && !s) return reply;
          const at = (deps.now ?? Date.now)();
          const target = { channel: s?.channel ?? channel!, user: s?.user ?? waId };
          refuseSharedChat(target);
          const message: InboundMessage = {
            id: eventMessageId(target, body.id ?? randomUUID()),
            provider: s?.provider ?? 'cloud-api',
            ...target,
            ...(s === null ? { waId } : s.waId !== undefined ? { waId: s.waId } : {}),
            ...(s?.userId !== undefined ? { userId: s.userId } : {}),
            timestamp: Math.floor(at / 1000),
            content: { type: 'event', name: body.name, payload: body.payload },
          };
          const flow =
            deps.flowForMessage?.(s, { ...message, seq: 0, storedAt: at }) ??
            deps.flows.get(s?.flow ?? '') ??
            [...deps.flows.values()][0]!;
          const refused = eventRefusal(flow, body.name, body.payload);
          if (refused !== undefined) return fail(reply, refused.code, {}, refused.message);
          const stored = await backend.ingest({ messages: [message], statuses: [], receivedAt: at });
          backend.countStored(stored.accepted);
          // An agent has the session: the event will be recorded `held`, not applied; the poster
          // is told, to post it again after the hand-back (outside test QA97-F7).
          return reply
            .code(202)
            .send({ id: message.id, duplicate: stored.accepted === 0, held: s?.needsAgent === true });
        },
      );

      api.get('/stats', { schema: { querystring: EmptyQuery } }, async () => {
        const s = await (deps.stats ?? (() => backend.stats()))();
        return {
          queue_depth: s.queueDepth,
          oldest_pending_ms: s.oldestPendingMs,
          locks_held: s.locksHeld,
          dead_letters: s.deadLetters,
          workers: s.workers,
          messages_per_s: s.messagesPerSecond,
          // Only when a figure is the last one read, not fresh (PostgreSQL did not answer in time;
          // with `queue_depth`, the store did not: RabbitMQ's count is added to its last).
          ...staleFields(s.stale ?? []),
        };
      });

      // Newest first, a page at a time (`cursor`: the `next_cursor` of the page before).
      api.get('/dead-letters', { schema: { querystring: DeadLettersQuery } }, async (req) => {
        const q = parsed(DeadLettersQuery, req.query);
        const limit = q.limit ?? 100;
        const page = await backend.listDeadLetters(limit + 1, deadLetterAfter(q.cursor));
        const shown = page.slice(0, limit);
        const last = shown.at(-1);
        return {
          dead_letters: shown.map(deadLetterView),
          next_cursor: page.length > limit && last ? deadLetterCursor(last) : null,
        };
      });

      // Replies whose delivery failed, newest first (the overview's "Failed replies").
      api.get('/failed-replies', { schema: { querystring: LimitQuery } }, async (req) => {
        const q = parsed(LimitQuery, req.query);
        const failed = await backend.failedReplies(q.limit ?? 100);
        return {
          failed_replies: failed.map((o) => ({
            ...outboundView(o),
            failed_at: new Date(o.failedAt).toISOString(),
          })),
        };
      });

      api.post(
        '/dead-letters/:id/replay',
        { schema: { params: DeadLetterParams, querystring: ConfirmQuery, body: NoBody } },
        async (req, reply) => {
          const { id } = parsed(DeadLetterParams, req.params);
          const confirmed = parsed(ConfirmQuery, req.query).confirm === 'true';
          const letter = await backend.getDeadLetter(id);
          if (letter?.kind === 'unreadable') return fail(reply, 'BATON_ERR_NOT_REPLAYABLE', {});
          // A reply to a group is never sent, replayed either (outside test QA132-F4).
          if (letter?.kind === 'outbound') refuseSharedChat(letter);
          const warning =
            letter && letter.replayedAt === undefined ? await replayWarning(backend, letter) : null;
          // A replay that would not do what the agent may expect (a prompt of a step the user has
          // left: SPEC 1.6's duplicate question) is said first, and done when confirmed.
          if (warning !== null && !confirmed)
            return fail(
              reply,
              'BATON_ERR_REPLAY_UNCONFIRMED',
              { warning },
              `${warning} Replay with ?confirm=true to do it anyway.`,
            );
          if (letter?.kind === 'outbound') await failureRecorded(backend, letter);
          if (!(await backend.replayDeadLetter(id)))
            return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such dead letter, or it was replayed already');
          return warning === null ? { replayed: true } : { replayed: true, warning };
        },
      );

      api.get('/flows', { schema: { querystring: EmptyQuery } }, async () => ({
        flows: [...deps.flows.values()].map((f) => ({
          id: f.id,
          version: f.version,
          start: f.start,
          steps: [...f.steps.keys()],
        })),
      }));

      api.get(
        '/flows/:id/graph',
        { schema: { params: FlowParams, querystring: EmptyQuery } },
        async (req, reply) => {
          const flow = deps.flows.get(parsed(FlowParams, req.params).id);
          if (!flow) return fail(reply, 'BATON_ERR_NOT_FOUND', {}, 'No such flow');
          return reply.type('text/plain').send(flowMermaid(flow));
        },
      );

      registerAgentRoutes(api, deps);
    },
    { prefix: '/admin/api' },
  );
  return auth;
}

/**
 * What an agent should know before a replay does what they may not expect: the user has
 * written since (the message will be recorded `late`, not applied), or the session has moved on
 * since the reply was committed (it would go out after what was sent since: a prompt of a step the
 * user has left asks an old question). The replay waits for `?confirm=true` when there is one.
 * Null otherwise.
 */
async function replayWarning(backend: Backend, letter: DeadLetter): Promise<string | null> {
  const [s] = await backend.findSessions(letter.user, letter.channel);
  if (s === undefined) return null;
  const payload = (letter.payload ?? {}) as { timestamp?: unknown; version?: unknown };
  if (letter.kind === 'inbound') {
    const ts = payload.timestamp;
    return typeof ts === 'number' && s.lastInteraction !== null && ts < s.lastInteraction
      ? 'The user has written since this message: it is older than the last one applied, so replayed, it will be recorded as late, not applied.'
      : null;
  }
  const version = payload.version;
  if (typeof version === 'number' && s.version > version)
    return `The session has moved on since this reply was committed (version ${version}, now ${s.version}): replayed, it goes out after what was sent since.`;
  // Agent messages leave the version as it is: what was sent after this one tells.
  const seq = (letter.payload as { seq?: unknown }).seq;
  if (typeof seq !== 'number') return null;
  const newer = (await backend.outbound(s)).filter(
    (o) => o.seq > seq && o.effect === undefined && REACHED_GATEWAY.has(o.status),
  ).length;
  return newer === 0
    ? null
    : `${newer} newer message${newer === 1 ? ' has' : 's have'} gone to the user since this one failed: replayed, it goes out after ${newer === 1 ? 'it' : 'them'}.`;
}

/**
 * `GET /stats`' fields that are the last ones read (see `BackendStats.stale`), as `{stale: [...]}`,
 * or nothing when every field is fresh.
 */
function staleFields(stale: NonNullable<BackendStats['stale']>): { stale?: string[] } {
  const fields = [
    ...(stale.includes('queue')
      ? ['queue_depth', 'oldest_pending_ms', 'locks_held', 'workers', 'messages_per_s']
      : []),
    ...(stale.includes('deadLetters') ? ['dead_letters'] : []),
  ];
  return fields.length > 0 ? { stale: fields } : {};
}

/**
 * The holder that dead-letters a reply marks it failed a moment later (the letter is made durable
 * first: engine `failOutbound`). A replay in between would be undone by that late `failed`, and
 * the reply never sent: the replay waits for it, for up to {@link FAILURE_RECORDING_WAIT_MS} (a
 * holder that died in between left the reply unsent; the replay starts it afresh all the same).
 */
async function failureRecorded(backend: Backend, letter: DeadLetter): Promise<void> {
  const deadline = Date.now() + FAILURE_RECORDING_WAIT_MS;
  const key = { channel: letter.channel, user: letter.user };
  while ((await backend.unsent(key)).some((o) => o.id === letter.ref) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
}

const FAILURE_RECORDING_WAIT_MS = 3_000;

/** Statuses of a message the gateway took. */
const REACHED_GATEWAY: ReadonlySet<OutboundStatus> = new Set(['sent', 'delivered', 'read', 'played']);
