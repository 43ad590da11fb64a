/**
 * A session's mailbox and state: the messages not yet consumed, and the snapshot the next
 * batch starts from. Redis holds the hot copy; a session missing there (expired when idle,
 * or lost) is put back from PostgreSQL, or as a tombstone when PostgreSQL has none either.
 * @module
 */
import { logSessionId, sessionId, type SessionKey, type StoredMessage } from '../../model/message.ts';
import type { SessionSnapshot } from '../../model/session.ts';
import type { Context } from './context.ts';
import type { SessionKeys } from './keys.ts';
import type { StoredOutbound, StoredSession } from './pg-store.ts';
import { asArray, asString, pipeline, r, run } from './redis-calls.ts';
import type { Arg, PipelineOp, ScriptName } from './scripts.ts';
import { figuresAt } from './global-feed.ts';

/** How long Redis remembers that PostgreSQL has no such session, seconds. */
const TOMBSTONE_TTL_SEC = 3600;

/** Most messages a mailbox read right after a grant brings (the engine's batch limit). */
export const MAILBOX_READ_LIMIT = 1000;

/** The mailbox read (`pending-3`) and the state read of a turn: one round trip for both. */
export function mailboxReadOps(
  sk: SessionKeys,
  limit: number,
): [Extract<PipelineOp, { readonly script: ScriptName }>, PipelineOp] {
  return [
    { script: 'pending', keys: [sk.mbox, sk.msgs, sk.pv], args: [limit] },
    { command: 'HMGET', args: [sk.state, 's', 'v'] },
  ];
}

export async function pending(ctx: Context, key: SessionKey, limit: number): Promise<StoredMessage[]> {
  const sk = ctx.keys.session(key);
  const [op, stateOp] = mailboxReadOps(sk, limit);
  // Called with a lease (the engine's turn): the state comes in the same round trip, for the
  // `load` that follows when there is something to do. The holder's first call takes the read
  // made with the grant instead (leases.ts), saving a round trip per turn.
  const token = 'token' in key && typeof key.token === 'string' ? key.token : null;
  const early = token === null ? undefined : ctx.mailboxReads.get(sk.member);
  if (early !== undefined) ctx.mailboxReads.delete(sk.member);
  if (early !== undefined && early.token === token && limit <= MAILBOX_READ_LIMIT) {
    if (early.watermark) ctx.intake!.afterRead(key, early.watermark.read, early.watermark.reply);
    return mailboxRead(ctx, sk, token, asArray(early.mailbox), early.state, limit);
  }
  if (token === null) return mailboxRead(ctx, sk, null, asArray(await run(ctx, 'pending', op)), null, limit);
  // So do the intake watermarks, read just before the mailbox (see intake-watermark.ts).
  const watermark = ctx.intake?.beforeRead() ?? null;
  const replies = await pipeline(ctx, 'pending', [...(watermark ? [watermark.op] : []), op, stateOp]);
  if (watermark) ctx.intake!.afterRead(key, watermark, replies.shift());
  const [raw, state] = replies;
  return mailboxRead(ctx, sk, token, asArray(raw), state, limit);
}

/**
 * The messages of a mailbox read (`[version, count, oldest, ...message JSON]`, as pending-3
 * returns it), at most `limit`; posts its figures, and keeps the state read with it (`[s, v]`)
 * for the holder's `load`.
 */
export function mailboxRead(
  ctx: Context,
  sk: SessionKeys,
  token: string | null,
  reply: readonly unknown[],
  state: unknown,
  limit: number,
): StoredMessage[] {
  // The worker reading a mailbox posts its figures again: repairs a post lost in a crash. The
  // holder's commit posts newer ones, so its read waits to see whether the lease ends without one.
  const figures = figuresAt(sk.member, reply, 0);
  if (token !== null && ctx.held.get(sk.member) === token) ctx.unposted.set(sk.member, figures);
  else ctx.globalFeed.post(figures, true);
  const messages = reply.slice(3, 3 + limit).map((j) => JSON.parse(asString(j)) as StoredMessage);
  if (token !== null && messages.length > 0) {
    const [s, v] = asArray(state).map((x) => (x === null ? null : asString(x)));
    if (s !== null || v !== null) ctx.prefetched.set(sk.member, { token, s: s ?? null, v: v ?? null });
  }
  return messages;
}

/** The session's snapshot in Redis, or null when Redis does not hold it (nothing is loaded). */
export async function cached(ctx: Context, key: SessionKey): Promise<SessionSnapshot | null> {
  const s = await r('load', () => ctx.redis.hget(ctx.keys.session(key).state, 's'));
  return s ? (JSON.parse(s) as SessionSnapshot) : null;
}

export async function load(ctx: Context, key: SessionKey): Promise<SessionSnapshot | null> {
  const sk = ctx.keys.session(key);
  const pre = ctx.prefetched.get(sk.member);
  if (pre !== undefined) {
    ctx.prefetched.delete(sk.member);
    // Only the lease holder writes the state, and its commit checks the version anyway.
    if ('token' in key && key.token === pre.token) {
      if (pre.s !== null) return JSON.parse(pre.s) as SessionSnapshot;
      return null; // tombstone: PostgreSQL has no such session either
    }
  }
  const holder = 'token' in key;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [s, v] = await r('load', () => ctx.redis.hmget(sk.state, 's', 'v'));
    if (s) return JSON.parse(s) as SessionSnapshot;
    if (v !== null) return null; // tombstone: PostgreSQL has no such session either
    // Only a lease holder puts a session back into Redis: its grant waited for the journal
    // copies in flight (fence-block-reserve.sql) and started the Redis lifetime's era. A reader
    // (the dashboard, say) after a Redis restart could read PostgreSQL before a copy lands and
    // plant that older state for the next holder to go on from: a fork. It reads, and leaves
    // Redis as it is.
    if (!holder) return (await ctx.pg.getSession(key))?.snapshot ?? null;
    await restore(ctx, key, sk);
  }
  throw new Error(`session ${sessionId(key)} could not be loaded`);
}

/**
 * Puts a session missing from Redis back from PostgreSQL (or a tombstone if it has none);
 * `row` when the caller has already read it.
 */
export async function restore(
  ctx: Context,
  key: SessionKey,
  sk: SessionKeys,
  row?: StoredSession | null,
): Promise<void> {
  const stored = row !== undefined ? row : await ctx.pg.getSession(key);
  const unsent = stored ? await ctx.pg.outboundOf(key, true) : [];
  const [restored] = await pipeline(ctx, 'restore', [restoreOp(sk, stored, unsent)]);
  // Said only when Redis did miss it: after a Redis restart that kept everything (an AOF), the
  // line came for every session a worker looked at, as if Redis had lost them (outside test
  // QA17-F2). The script answers 0 when Redis has the session already.
  if (stored && restored === 1)
    ctx.log.info({ session: logSessionId(key), version: stored.version }, 'session reloaded from PostgreSQL');
}

export function restoreOp(
  sk: SessionKeys,
  row: StoredSession | null,
  unsent: readonly StoredOutbound[],
): PipelineOp {
  const args: Arg[] = [];
  if (!row) args.push('', 0, 0, '', TOMBSTONE_TTL_SEC, 0);
  else {
    args.push(
      row.version,
      row.rev,
      row.fence,
      JSON.stringify(row.snapshot),
      TOMBSTONE_TTL_SEC,
      unsent.length,
    );
    for (const o of unsent) args.push(o.id, o.seq, JSON.stringify(o.record), JSON.stringify(o.state), '1');
  }
  return {
    script: 'state-restore',
    keys: [sk.state, sk.out, sk.outState, sk.outIndex, sk.unsent],
    args,
  };
}
