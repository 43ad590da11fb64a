/**
 * The session of a message that names its sender by business-scoped user id alone (model/message.ts,
 * `userIdOnly`): the phone number's session that user id last came with on its channel.
 *
 * - **The binding** lives in Redis, one string per user id: `<timestamp>:<session key user>`. Every
 *   intake of a message carrying both ids writes it in the intake's own pipeline (the
 *   `user-bind` script: only a message as late or later, by WhatsApp's timestamp, moves it, so a
 *   redelivered or late message from an old number does not take the user back there); a number
 *   the same webhook names the id with counts at once. It expires with idle sessions.
 * - **Where Redis has none** (never written, expired, or lost), PostgreSQL's sessions say which
 *   one holds the id: a phone number's session first, the one the user wrote to last. The answer
 *   is written back (`SET NX`: a binding written meanwhile wins) as if by the user's last
 *   message to that session, so only a later message moves it; an answer of "none" (the id keys
 *   its own session) is kept a minute only, so a number's session PostgreSQL did not have yet is
 *   found then.
 * - **The route** of each message named by user id alone is kept as long as its id is for dedupe:
 *   a redelivery goes to the session the first delivery went to, where it is recognised as a
 *   duplicate, even if the binding has moved since.
 * @module
 */
import { rekeyed, userIdOnly, type InboundMessage } from '../../model/message.ts';
import type { Context } from './context.ts';
import { r } from './redis-calls.ts';
import type { PipelineOp } from './scripts.ts';
import { within } from '../../sleep.ts';

/** How long intake waits for PostgreSQL's answer before it routes by the user id itself, ms. */
const PG_WAIT_MS = 500;

/** How long the answer "no number's session holds this id" is kept, ms. */
const SELF_BINDING_MS = 60_000;

/** A binding: the session key user, and the WhatsApp timestamp of the message that made it. */
interface Binding {
  readonly user: string;
  readonly at: number;
}

/** A binding's value, `<timestamp>:<session key user>`. */
function parseBinding(value: string): Binding {
  const m = /^(\d+):(.*)$/s.exec(value);
  return m === null ? { user: value, at: 0 } : { user: m[2]!, at: Number(m[1]) };
}

/** The later of two bindings (a tie: `a`). */
function later(a: Binding | undefined, b: Binding | undefined): Binding | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return b.at > a.at ? b : a;
}

/**
 * What intake writes with a batch's messages (stored or duplicates): each user id sent with a
 * phone number bound to it, and the route of each message named by user id alone.
 */
export function aliasOps(ctx: Context, messages: readonly InboundMessage[]): PipelineOp[] {
  const ops: PipelineOp[] = [];
  for (const m of messages) {
    // Named by user id alone (and routed already: its key may be a number's now).
    if (m.waId === undefined && m.userId !== undefined && m.userId !== '') {
      ops.push({
        command: 'set',
        args: [ctx.keys.userRoute(m.channel, m.id), m.user, 'EX', ctx.opts.dedupeTtlSec, 'NX'],
      });
    } else if (m.userId !== undefined && m.userId !== '' && m.waId !== undefined && m.user === m.waId) {
      ops.push({
        script: 'user-bind',
        keys: [ctx.keys.userAlias(m.channel, m.userId)],
        args: [m.timestamp, m.user, ctx.idleTtlMs],
      });
    }
  }
  return ops;
}

/** The messages, those named by a user id alone under the session they go to. */
export async function routeByUserId(
  ctx: Context,
  messages: readonly InboundMessage[],
): Promise<readonly InboundMessage[]> {
  const alone = messages.filter((m) => userIdOnly(m) !== undefined);
  if (alone.length === 0) return messages;
  // A number the same webhook names the user id with is the newest word on it.
  const taught = new Map<string, Binding>();
  for (const m of messages) {
    if (m.userId === undefined || m.waId === undefined || m.user !== m.waId) continue;
    const key = ctx.keys.userAlias(m.channel, m.userId);
    taught.set(key, later({ user: m.user, at: m.timestamp }, taught.get(key))!);
  }
  const asks = new Map<string, { channel: string; userId: string }>();
  for (const m of alone)
    asks.set(ctx.keys.userAlias(m.channel, m.user), { channel: m.channel, userId: m.user });
  const routeKeys = alone.map((m) => ctx.keys.userRoute(m.channel, m.id));
  const [routes, bound] = await Promise.all([
    r('user routes', () => Promise.all(routeKeys.map((k) => ctx.redis.get(k)))),
    bindings(ctx, asks),
  ]);
  const routed = new Map(alone.map((m, i) => [m, routes[i] ?? undefined]));
  return messages.map((m) => {
    if (!routed.has(m)) return m;
    const key = ctx.keys.userAlias(m.channel, m.user);
    const user = routed.get(m) ?? later(taught.get(key), bound.get(key))?.user;
    return user === undefined ? m : rekeyed(m, user);
  });
}

/** Redis key -> the binding of its user id (absent: none, the id keys its own session). */
async function bindings(
  ctx: Context,
  asks: Map<string, { channel: string; userId: string }>,
): Promise<Map<string, Binding>> {
  const keys = [...asks.keys()];
  if (keys.length === 0) return new Map();
  const ttl = ctx.idleTtlMs;
  const known = await r('user aliases', () => Promise.all(keys.map((k) => ctx.redis.getex(k, 'PX', ttl))));
  const out = new Map<string, Binding>();
  const unknown: string[] = [];
  keys.forEach((k, i) => {
    const value = known[i];
    if (typeof value === 'string') out.set(k, parseBinding(value));
    else unknown.push(k);
  });
  if (unknown.length === 0) return out;
  const held = await heldInPostgres(
    ctx,
    unknown.map((k) => ({ channel: asks.get(k)!.channel, bsuid: asks.get(k)!.userId })),
  );
  if (held === null) return out; // PostgreSQL did not answer: routed by the user id itself, this once.
  const answers = unknown.map((k) => {
    const a = asks.get(k)!;
    return held.get(`${a.channel}\n${a.userId}`) ?? { user: a.userId, at: 0 };
  });
  // Written as if by the user's last message to that session: only a later one moves it.
  const before = await r('user aliases', () =>
    Promise.all(
      unknown.map((k, i) =>
        ctx.redis.set(
          k,
          `${answers[i]!.at}:${answers[i]!.user}`,
          'PX',
          answers[i]!.user === asks.get(k)!.userId ? Math.min(SELF_BINDING_MS, ttl) : ttl,
          'NX',
          'GET',
        ),
      ),
    ),
  );
  unknown.forEach((k, i) => out.set(k, before[i] == null ? answers[i]! : parseBinding(before[i])));
  return out;
}

/** PostgreSQL's sessions holding these user ids, or null if it did not answer in time. */
async function heldInPostgres(
  ctx: Context,
  ids: ReadonlyArray<{ channel: string; bsuid: string }>,
): Promise<Map<string, { user: string; at: number }> | null> {
  const asked = ctx.pg.sessionsByBsuid(ids).catch((err: unknown) => {
    ctx.log.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'PostgreSQL did not say which sessions hold these user ids; routing them by the ids themselves',
    );
    return null;
  });
  return within(PG_WAIT_MS, asked, null);
}
