/**
 * The admin JSON API (SPEC section 4), under `/admin/api`, behind `Authorization: Bearer <ADMIN_TOKEN>`.
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Backend } from '../backends/types.ts';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import { toMermaid, type Flow } from '../flow/define.ts';
import type { SessionKey } from '../model/message.ts';
import { toSessionView, type SessionSnapshot } from '../model/session.ts';

export interface AdminDeps {
  readonly backend: Backend;
  readonly adminToken: string;
  readonly flows: ReadonlyMap<string, Flow>;
  /** Resets a session under its lease (records `admin_reset`). */
  readonly resetSession: (key: SessionKey) => Promise<SessionSnapshot | null>;
  /** Inbound messages per second over the last minute. */
  readonly messagesPerSecond: () => number;
}

function fail(reply: FastifyReply, code: ErrorCode, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(ERROR_CODES[code].status).send({ error: ERROR_CODES[code].message, code, ...extra });
}

function authorized(req: FastifyRequest, token: string): boolean {
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false;
  const given = Buffer.from(h.slice(7));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  const { backend } = deps;

  /** One session by wa_id or BSUID; 404 if none, 409 if several channels and none chosen. */
  async function findOne(req: FastifyRequest, reply: FastifyReply): Promise<SessionSnapshot | null> {
    const { waId } = req.params as { waId: string };
    const { channel } = req.query as { channel?: string };
    const found = await backend.findSessions(waId, channel);
    if (found.length === 0) {
      await fail(reply, 'BATON_ERR_NOT_FOUND');
      return null;
    }
    if (found.length > 1) {
      await fail(reply, 'BATON_ERR_AMBIGUOUS_SESSION', { channels: found.map((s) => s.channel) });
      return null;
    }
    return found[0]!;
  }

  void app.register(
    async (api) => {
      api.addHook('onRequest', async (req, reply) => {
        if (!authorized(req, deps.adminToken)) return fail(reply, 'BATON_ERR_UNAUTHORIZED');
      });

      api.get('/sessions', async (req) => {
        const q = req.query as Record<string, string | undefined>;
        const limit = Math.min(500, Math.max(1, Number(q.limit ?? 50) || 50));
        const page = await backend.listSessions({
          limit,
          ...(q.step ? { step: q.step } : {}),
          ...(q.needs_agent !== undefined
            ? { needsAgent: q.needs_agent === 'true' || q.needs_agent === '1' }
            : {}),
          ...(q.channel ? { channel: q.channel } : {}),
          ...(q.cursor ? { cursor: q.cursor } : {}),
        });
        return { sessions: page.sessions.map(toSessionView), next_cursor: page.nextCursor };
      });

      api.get('/sessions/:waId', async (req, reply) => {
        const s = await findOne(req, reply);
        return s ? toSessionView(s) : reply;
      });

      api.get('/sessions/:waId/transitions', async (req, reply) => {
        const s = await findOne(req, reply);
        return s ? { transitions: await backend.transitions(s) } : reply;
      });

      api.get('/sessions/:waId/outbound', async (req, reply) => {
        const s = await findOne(req, reply);
        return s ? { outbound: await backend.outbound(s) } : reply;
      });

      api.delete('/sessions/:waId/lock', async (req, reply) => {
        const s = await findOne(req, reply);
        return s ? { released: await backend.clearLease(s) } : reply;
      });

      api.post('/sessions/:waId/reset', async (req, reply) => {
        const s = await findOne(req, reply);
        if (!s) return reply;
        const next = await deps.resetSession(s);
        return next ? toSessionView(next) : fail(reply, 'BATON_ERR_NOT_FOUND');
      });

      api.get('/stats', async () => {
        const s = await backend.stats();
        return {
          queue_depth: s.queueDepth,
          oldest_pending_ms: s.oldestPendingMs,
          locks_held: s.locksHeld,
          dead_letters: s.deadLetters,
          workers: s.workers,
          messages_per_s: deps.messagesPerSecond(),
        };
      });

      api.get('/dead-letters', async (req) => {
        const q = req.query as { limit?: string };
        return { dead_letters: await backend.listDeadLetters(Math.min(500, Number(q.limit ?? 100) || 100)) };
      });

      api.post('/dead-letters/:id/replay', async (req, reply) => {
        const { id } = req.params as { id: string };
        return (await backend.replayDeadLetter(id)) ? { replayed: true } : fail(reply, 'BATON_ERR_NOT_FOUND');
      });

      api.get('/flows', async () => ({
        flows: [...deps.flows.values()].map((f) => ({
          id: f.id,
          version: f.version,
          start: f.start,
          steps: [...f.steps.keys()],
        })),
      }));

      api.get('/flows/:id/graph', async (req, reply) => {
        const flow = deps.flows.get((req.params as { id: string }).id);
        if (!flow) return fail(reply, 'BATON_ERR_NOT_FOUND');
        return reply.type('text/plain').send(toMermaid(flow));
      });
    },
    { prefix: '/admin/api' },
  );
}
