/**
 * What every admin route shares: coded error answers, the error handler that turns schema
 * failures into `400`s, JSON bodies, and finding the session a `:waId` names.
 * @module
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { Backend } from '../backends/types.ts';
import { BatonError, ERROR_CODES, ERROR_DETAIL_MAX, FlowRuntimeError, type ErrorCode } from '../errors.ts';
import { clip } from '../flow/replies.ts';
import { sessionNamedBy, type SessionSnapshot } from '../model/session.ts';
import { ChannelQuery, WaIdParams } from './schemas.ts';

/** Sends `{error, code}` with the code's status. */
export function fail(
  reply: FastifyReply,
  code: ErrorCode,
  extra: Record<string, unknown> = {},
  detail?: string,
): FastifyReply {
  return reply
    .code(ERROR_CODES[code].status)
    .type('application/json')
    .send({ error: detail ?? ERROR_CODES[code].message, code, ...extra });
}

/** Answers an admin route's errors: validation -> 400, coded errors -> their status, else 500. */
export function adminErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err.validation !== undefined || err.code === 'FST_ERR_VALIDATION') {
    const where = err.validationContext ?? 'request';
    return fail(reply, 'BATON_ERR_BAD_REQUEST', {}, `${where}: ${err.message}`);
  }
  if (err instanceof FlowRuntimeError) {
    // Its words may quote the user's data: they stay in the log. Where it threw is the flow's own
    // (outside test QA71-H1: a migrate that threw in a hand-back was only "Flow code threw").
    req.log.error({ err }, 'admin request failed');
    const where = [`flow ${err.flow}`, ...(err.step === null ? [] : [`step ${err.step}`])];
    if (err.phase !== undefined) where.push(`in ${err.phase}`);
    return fail(
      reply,
      err.code,
      { flow: err.flow, step: err.step },
      `${ERROR_CODES[err.code].message} (${where.join(', ')}); the log has the error`,
    );
  }
  if (err instanceof BatonError) {
    if (err.statusCode >= 500) req.log.error({ err }, 'admin request failed');
    return err.statusCode >= 500
      ? fail(reply, err.code)
      : fail(reply, err.code, { ...err.details }, err.message);
  }
  if (err.statusCode === 413 || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    // This route's own limit (an event's 64 KiB, the sign-in form's 8 KiB), not the webhooks'
    // 4 MiB that every 413 said (outside test QA42-F7).
    const limit = req.routeOptions.bodyLimit;
    return fail(
      reply,
      'BATON_ERR_BODY_TOO_LARGE',
      {},
      limit ? `Body is larger than ${sizeText(limit)}` : undefined,
    );
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return fail(reply, 'BATON_ERR_BAD_REQUEST', {}, clip(err.message, ERROR_DETAIL_MAX));
  }
  req.log.error({ err }, 'admin request failed');
  return fail(reply, 'BATON_ERR_INTERNAL');
}

/**
 * JSON bodies for this scope (the server keeps webhook bodies raw); `''` is no body. A body of
 * another type is answered 415 (an empty one is no body).
 */
export function acceptJsonBodies(api: FastifyInstance): void {
  api.addHook('preValidation', async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) return;
    if (req.body.length === 0) {
      req.body = undefined;
      return;
    }
    return fail(reply, 'BATON_ERR_UNSUPPORTED_MEDIA_TYPE', {}, 'Admin API bodies must be application/json');
  });
  api.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch {
      done(new BatonError('BATON_ERR_BAD_JSON'), undefined);
    }
  });
}

/** Typed access to what a route's schemas let through. */
export function parsed<S extends z.ZodType>(_schema: S, value: unknown): z.output<S> {
  return value as z.output<S>;
}

/** One session by wa_id or BSUID; answers 404 if none, 409 if several channels and none chosen. */
export async function findOne(
  backend: Backend,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<SessionSnapshot | null> {
  const { waId } = parsed(WaIdParams, req.params);
  const { channel } = parsed(ChannelQuery, req.query);
  return oneOf(await backend.findSessions(waId, channel), waId, reply);
}

/**
 * The one session of `found` (the user's sessions) a request means, or null after answering:
 * `404` for none, `409` naming the channels when several could be meant.
 */
export async function oneOf(
  found: readonly SessionSnapshot[],
  waId: string,
  reply: FastifyReply,
): Promise<SessionSnapshot | null> {
  if (found.length === 0) {
    // The id it was asked for, as the CLI says it in either mode (outside test QA77-F9).
    await fail(reply, 'BATON_ERR_NOT_FOUND', {}, `No session for ${waId}`);
    return null;
  }
  if (found.length > 1) {
    const named = sessionNamedBy(found, waId);
    if (named) return named;
    await fail(reply, 'BATON_ERR_AMBIGUOUS_SESSION', {
      channels: [...new Set(found.map((s) => s.channel))],
      sessions: found.map((s) => ({ channel: s.channel, wa_id: s.waId ?? s.user })),
    });
    return null;
  }
  return found[0]!;
}

/** A size in bytes as people write it: `4 MiB`, `64 KiB`, `512 bytes`. */
export function sizeText(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}
