/**
 * The session of a message that names its sender by business-scoped user id alone (model/message.ts,
 * `userIdOnly`): the phone number's session that user id last came with on its channel. The
 * binding lives in Redis (one string per user id), written by every intake of a message that
 * carries both ids (it rides in the intake's pipeline) and expiring with idle sessions. Where Redis
 * has none (never written, expired, or lost), PostgreSQL's sessions say which session holds the
 * id, and the answer is written for the next message (`SET NX`: a binding written meanwhile wins).
 * @module
 */
import { rekeyed, userIdOnly, type InboundMessage } from '../../model/message.ts';
import type { Context } from './context.ts';
import { r } from './redis-calls.ts';
import type { PipelineOp } from './scripts.ts';

/** How long intake waits for PostgreSQL's answer before it routes by the user id itself, ms. */
const PG_WAIT_MS = 500;

/** The bindings a batch's messages teach: a user id sent with a phone number, to that number. */
export function bindingOps(ctx: Context, messages: readonly InboundMessage[]): PipelineOp[] {
  const bound = new Map<string, string>();
  for (const m of messages) {
    if (m.userId === undefined || m.userId === '' || m.waId === undefined || m.user !== m.waId) continue;
    bound.set(ctx.keys.userAlias(m.channel, m.userId), m.user);
  }
  return [...bound].map(([key, user]) => ({ command: 'set', args: [key, user, 'PX', ctx.idleTtlMs] }));
}

/** The messages, those named by a user id alone under the session it is bound to. */
export async function routeByUserId(
  ctx: Context,
  messages: readonly InboundMessage[],
): Promise<readonly InboundMessage[]> {
  const asks = new Map<string, { channel: string; userId: string }>();
  for (const m of messages) {
    const userId = userIdOnly(m);
    if (userId !== undefined) asks.set(ctx.keys.userAlias(m.channel, userId), { channel: m.channel, userId });
  }
  if (asks.size === 0) return messages;
  const bound = await bindings(ctx, asks);
  return messages.map((m) => {
    const userId = userIdOnly(m);
    return userId === undefined ? m : rekeyed(m, bound.get(ctx.keys.userAlias(m.channel, userId)) ?? m.user);
  });
}

/** Redis key -> the session key user its user id is bound to (absent: its own). */
async function bindings(
  ctx: Context,
  asks: Map<string, { channel: string; userId: string }>,
): Promise<Map<string, string>> {
  const keys = [...asks.keys()];
  const ttl = ctx.idleTtlMs;
  const known = await r('user aliases', () => Promise.all(keys.map((k) => ctx.redis.getex(k, 'PX', ttl))));
  const out = new Map<string, string>();
  const unknown: string[] = [];
  keys.forEach((k, i) => {
    const user = known[i];
    if (typeof user === 'string') out.set(k, user);
    else unknown.push(k);
  });
  if (unknown.length === 0) return out;
  const held = await heldInPostgres(
    ctx,
    unknown.map((k) => ({ channel: asks.get(k)!.channel, bsuid: asks.get(k)!.userId })),
  );
  if (held === null) return out; // PostgreSQL did not answer: routed by the user id itself, this once.
  const values = unknown.map((k) => {
    const a = asks.get(k)!;
    return held.get(`${a.channel}\n${a.userId}`) ?? a.userId;
  });
  const before = await r('user aliases', () =>
    Promise.all(unknown.map((k, i) => ctx.redis.set(k, values[i]!, 'PX', ttl, 'NX', 'GET'))),
  );
  unknown.forEach((k, i) => out.set(k, before[i] ?? values[i]!));
  return out;
}

/** PostgreSQL's sessions holding these user ids, or null if it did not answer in time. */
async function heldInPostgres(
  ctx: Context,
  ids: ReadonlyArray<{ channel: string; bsuid: string }>,
): Promise<Map<string, string> | null> {
  const asked = ctx.pg.sessionsByBsuid(ids).catch((err: unknown) => {
    ctx.log.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'PostgreSQL did not say which sessions hold these user ids; routing them by the ids themselves',
    );
    return null;
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), PG_WAIT_MS);
  });
  try {
    return await Promise.race([asked, late]);
  } finally {
    clearTimeout(timer);
  }
}
