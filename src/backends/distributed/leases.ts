/**
 * Leases ("the baton"): one holder per session at a time, checked by token, with a fencing
 * token that grows with every grant (reserved in blocks in PostgreSQL, see
 * scripts/lease-acquire-7.lua). A held lease keeps a watchdog entry in the ready queue (lease
 * expiry + grace), so a holder that dies needs no scan: its session becomes due again.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { StorageUnavailableError } from '../../errors.ts';
import { logSessionId, type SessionKey, type StoredMessage } from '../../model/message.ts';
import {
  CLEARED_LEASE_MEMORY_MS,
  heldBy,
  type ClearedLease,
  type LeaseGrant,
  type OutboundUpdate,
} from '../types.ts';
import * as commits from './commit.ts';
import { ScriptCode, scriptCodeName } from './codes.ts';
import { UNSENT_RETRY_MS, type Context } from './context.ts';
import { MAILBOX_READ_LIMIT, mailboxRead, mailboxReadOps, restore, restoreOp } from './mailbox.ts';
import { idleOp } from './maintenance.ts';
import { updateInPipeline, updateOutbound } from './outbox.ts';
import { asArray, asNumber, asString, followUp, pipeline, r, run, scheduleOps } from './redis-calls.ts';
import type { WatermarkRead } from './intake-watermark.ts';
import type { SessionKeys } from './keys.ts';
import type { StoredSession } from './pg-store.ts';
import type { Arg, PipelineOp } from './scripts.ts';

/** The ready-queue score of a lease's watchdog: when its session becomes due if the holder is gone. */
function watchdogScore(ctx: Context, ttlMs: number): string {
  return `${Math.ceil(ctx.now() + ttlMs + ctx.leaseGraceMs)}.5`;
}

/**
 * The ops of a new holder's first read (the intake watermarks, then the mailbox and the state),
 * to ride in its grant's pipeline; `keep` takes their replies (in the same order) for the
 * holder's first `pending` and `load`. For a session new to Redis, whose state is put there
 * after the grant; the usual grant makes the read itself (see `keepGrantRead`).
 */
function firstRead(
  ctx: Context,
  sk: SessionKeys,
  token: string,
): { ops: PipelineOp[]; keep(replies: readonly unknown[]): void } {
  const watermark = ctx.intake?.beforeRead() ?? null;
  return {
    ops: [...(watermark ? [watermark.op] : []), ...mailboxReadOps(sk, MAILBOX_READ_LIMIT)],
    keep(replies) {
      const at = watermark ? 1 : 0;
      ctx.mailboxReads.set(sk.member, {
        token,
        mailbox: replies[at],
        state: replies[at + 1],
        ...(watermark ? { watermark: { read: watermark, reply: replies[0] } } : {}),
      });
    },
  };
}

/**
 * A holder's read behind a script's code (includes/holder-read.lua: the mailbox's figures, the
 * state's fields, then the messages), split as `mailboxRead` takes it: the mailbox part as
 * pending-3.lua returns it, and the state's `[s, v]`.
 */
function holderRead(reply: readonly unknown[]): { mailbox: unknown[]; state: unknown[] } {
  return { mailbox: [reply[1], reply[2], reply[3], ...reply.slice(6)], state: [reply[4], reply[5]] };
}

/**
 * Keeps the first read a grant made (lease-acquire-7.lua with a limit: the fence, then the
 * holder's read) for the holder's first `pending` and `load`, with the intake watermarks read
 * just before it.
 */
function keepGrantRead(
  ctx: Context,
  sk: SessionKeys,
  token: string,
  reply: readonly unknown[],
  watermark: { read: WatermarkRead; reply: unknown } | null,
): void {
  ctx.mailboxReads.set(sk.member, {
    token,
    ...holderRead(reply),
    ...(watermark ? { watermark } : {}),
  });
}

/** Fence block reservations one grant makes before it gives up on a Redis that keeps changing lifetime. */
const NEED_BLOCK_ROUNDS = 3;

export async function acquireLease(
  ctx: Context,
  key: SessionKey,
  holder: string,
  ttlMs: number,
): Promise<LeaseGrant | null> {
  // Back from an outage, what Redis lost goes back into the mailboxes first: a batch taken now
  // would close without it (see `restorePass`).
  if (ctx.restorePass !== null) await ctx.restorePass;
  const sk = ctx.keys.session(key);
  // The holder rides in the token (compared whole), so the dashboard can say who holds it.
  const token = `${randomUUID()}~${holder}`;
  const acquire = (base: Arg, ceiling: Arg, readLimit = 0, epoch = ''): PipelineOp => ({
    script: 'lease-acquire',
    keys: [sk.lock, sk.fence, sk.sched, sk.mbox, sk.msgs, sk.pv, sk.state],
    args: [token, ttlMs, base, ceiling, readLimit, epoch],
  });
  // The grant's watchdog entry rides in the same round trip: a granted lease needs it, and in
  // the rare other cases it is put right below.
  let wd = watchdogScore(ctx, ttlMs);
  const watchdog = (): PipelineOp => ({ command: 'ZADD', args: [ctx.keys.ready, wd, sk.member] });
  // And the grant makes the new holder's first mailbox and state read: the turn needs them
  // next. The intake watermarks are read just before it.
  const watermark = ctx.intake?.beforeRead() ?? null;
  const first = await pipeline(ctx, 'acquire', [
    ...(watermark ? [watermark.op] : []),
    acquire('', '', MAILBOX_READ_LIMIT),
    watchdog(),
  ]);
  let reply = asArray(first[watermark ? 1 : 0]);
  if (asNumber(reply[0]) > 0)
    keepGrantRead(ctx, sk, token, reply, watermark ? { read: watermark, reply: first[0] } : null);
  // A Redis that restarted or failed over between the answer and the grant asks again, for a
  // block of its own lifetime (see lease-acquire-7.lua, ARGV[6]); one that keeps doing so is
  // not serving.
  for (let asked = 1; asNumber(reply[0]) === ScriptCode.NeedFenceBlock; asked += 1) {
    if (asked > NEED_BLOCK_ROUNDS)
      throw new StorageUnavailableError(
        `Redis changed lifetime (a restart or failover) ${NEED_BLOCK_ROUNDS} times while a lease was being granted`,
      );
    // A session new to this Redis (or to this Redis's lifetime): reserve fences and fetch
    // its PostgreSQL row in one go, and put the row (or a tombstone) in Redis with the grant.
    // Redis without its fences (new, or lost in a restart): copies of an earlier lifetime
    // still on their way to PostgreSQL are refused from now on (the reservation starts this
    // lifetime's era).
    const epoch = asString(reply[1]);
    const kept = asNumber(reply[2]);
    let { ceiling, session } = await ctx.pg.reserveFenceBlock(
      key,
      ctx.fenceBlockSize,
      kept === 0 ? epoch : null,
    );
    // An earlier lifetime's Redis data that is older than PostgreSQL's (a failover to a replica
    // that lagged, a snapshot reloaded after a crash): PostgreSQL has commits Redis lost, and
    // going on from Redis's state would fork the session. This lifetime's era starts (copies of
    // the lost commits still on their way are refused) and the session is reloaded from there.
    // Revisions count every commit, those that keep the version (a stale input, a late message) too.
    // Redis's state is read again once PostgreSQL is: another worker granted and committed in
    // between reached PostgreSQL only through Redis, so Redis behind then is behind indeed. From
    // the first read alone, such a commit made Redis look behind: the new era's floor rose above
    // that holder's fence, and PostgreSQL refused its every commit while Redis took them
    // (outside test QA106-F4).
    const behind =
      kept === 2 &&
      session !== null &&
      (session.version > asNumber(reply[3]) || session.rev > asNumber(reply[4])) &&
      (await redisBehind(ctx, sk, session));
    if (behind) ({ ceiling, session } = await ctx.pg.reserveFenceBlock(key, ctx.fenceBlockSize, epoch));
    wd = watchdogScore(ctx, ttlMs);
    const ops = [acquire(ceiling - ctx.fenceBlockSize, ceiling, 0, epoch), watchdog()];
    if (session) {
      reply = asArray((await pipeline(ctx, 'acquire', ops))[0]);
      if (asNumber(reply[0]) > 0) {
        const lease = { ...key, token, fence: asNumber(reply[0]), holder };
        if (behind) await reloadBehind(ctx, sk, session, lease);
        else await restore(ctx, key, sk, session);
        // A Redis that lost the session (or came back without it) may still hold messages
        // PostgreSQL consumed: an older Redis's mailbox, or a redelivery its dedupe forgot.
        if (kept === 0 || behind) await consumeWhatPostgresConsumed(ctx, sk, session, lease);
      }
    } else {
      // A new user: the tombstone, then the first mailbox read.
      const read = firstRead(ctx, sk, token);
      const replies = await pipeline(ctx, 'acquire', [...ops, restoreOp(sk, null, []), ...read.ops]);
      reply = asArray(replies[0]);
      if (asNumber(reply[0]) > 0) read.keep(replies.slice(3));
    }
  }
  const code = asNumber(reply[0]);
  if (code === ScriptCode.Locked) {
    // Someone holds it: turn our entry into that holder's watchdog (unless it changed meanwhile).
    const holderWd = watchdogScore(ctx, asNumber(reply[1]));
    await followUp(ctx, [{ script: 'ready-cas', keys: [ctx.keys.ready], args: [sk.member, wd, holderWd] }]);
    return null;
  }
  if (code < 0) {
    throw new Error(`lease-acquire returned ${scriptCodeName(code)}`);
  }
  ctx.watchdogs.set(token, wd);
  ctx.held.set(sk.member, token);
  // Its entry among the leases held (for `stats`) goes with the next command or this tick's posts.
  ctx.globalFeed.leaseHeld(token, wd);
  return { channel: key.channel, user: key.user, token, fence: code, holder };
}

/** Whether Redis's state of the session, read now, is older than PostgreSQL's `row`. */
async function redisBehind(ctx: Context, sk: SessionKeys, row: StoredSession): Promise<boolean> {
  const [v, rev] = await r('acquire', () => ctx.redis.hmget(sk.state, 'v', 'r'));
  return row.version > Number(v ?? -1) || row.rev > Number(rev ?? -1);
}

/**
 * Replaces a session's state and outbox that Redis has from before PostgreSQL's (see
 * acquireLease) with PostgreSQL's, under the new holder's lease.
 */
async function reloadBehind(
  ctx: Context,
  sk: SessionKeys,
  row: StoredSession,
  lease: LeaseGrant,
): Promise<void> {
  ctx.log.warn(
    { session: logSessionId(lease), version: row.version },
    'Redis had this session older than PostgreSQL (a failover or an older snapshot): reloaded from PostgreSQL',
  );
  await r('reload', () => ctx.redis.del(sk.state, sk.out, sk.outState, sk.outIndex, sk.unsent));
  await restore(ctx, lease, sk, row);
}

/**
 * Consumes, under `lease` and without a second record, the messages the session's mailbox
 * holds that PostgreSQL consumed already (their records are there): applying them again would
 * repeat them. Messages PostgreSQL never saw stay, to be applied.
 */
async function consumeWhatPostgresConsumed(
  ctx: Context,
  sk: SessionKeys,
  row: StoredSession,
  lease: LeaseGrant,
): Promise<void> {
  const waiting = await r('reload', () => ctx.redis.zrange(sk.mbox, '0', '-1'));
  if (waiting.length === 0) return;
  const again = await ctx.pg.consumedOf(lease, waiting);
  if (again.length === 0) return;
  try {
    await commits.commit(ctx, lease, {
      expectedVersion: row.version,
      snapshot: row.snapshot,
      records: [],
      outbound: [],
      consumed: again,
      deadLetters: [],
    });
  } catch (err) {
    // Redis had the session at another version after all (a concurrent load won): the batch
    // sees the messages, as before this check.
    ctx.log.warn({ err, session: logSessionId(lease) }, 'could not consume messages PostgreSQL consumed');
  }
}

export async function wantLease(ctx: Context, key: SessionKey, ttlMs: number): Promise<void> {
  const want = ctx.keys.session(key).want;
  await r('want', async () => {
    if (ttlMs > 0) await ctx.redis.set(want, '1', 'PX', ttlMs);
    else await ctx.redis.del(want);
  });
}

export async function leaseWanted(ctx: Context, key: SessionKey): Promise<boolean> {
  const want = ctx.keys.session(key).want;
  return (await r('want', () => ctx.redis.exists(want))) === 1;
}

export async function renewLease(ctx: Context, lease: LeaseGrant, ttlMs: number): Promise<boolean> {
  const sk = ctx.keys.session(lease);
  const code = asNumber(
    await run(ctx, 'renew', { script: 'lease-renew', keys: [sk.lock], args: [lease.token, ttlMs] }),
  );
  const old = ctx.watchdogs.get(lease.token);
  if (code !== 1) {
    ctx.watchdogs.delete(lease.token);
    ctx.globalFeed.leaseGone(lease.token);
    return false;
  }
  const wd = watchdogScore(ctx, ttlMs);
  // Its entry among the leases held follows with the next command or this tick's posts.
  ctx.globalFeed.leaseRescored(lease.token, wd);
  if (old === undefined) return true;
  const moved = await run(ctx, 'renew', {
    script: 'ready-cas',
    keys: [ctx.keys.ready],
    args: [sk.member, old, wd],
  });
  if (asNumber(moved) === 1) ctx.watchdogs.set(lease.token, wd);
  else ctx.watchdogs.delete(lease.token);
  return true;
}

/**
 * The session no longer counts as held here, from before its release is sent: a journal copy
 * whose trim is sent after this point asks whether the session is idle, and one sent before
 * it reaches Redis before the release (same connection), whose own idle check then sees it.
 */
function unhold(ctx: Context, sk: SessionKeys, token: string): void {
  if (ctx.held.get(sk.member) === token) ctx.held.delete(sk.member);
}

/** Forgets what this process kept for a lease it has released. */
function forget(ctx: Context, sk: SessionKeys, token: string): void {
  const figures = ctx.unposted.get(sk.member);
  if (figures !== undefined) {
    ctx.unposted.delete(sk.member);
    ctx.globalFeed.post(figures, true);
  }
  ctx.prefetched.delete(sk.member);
  ctx.mailboxReads.delete(sk.member);
  ctx.unsentAfterCommit.delete(sk.member);
  ctx.watchdogs.delete(token);
  // Its entry among the leases held leaves with this process's next global writes.
  ctx.globalFeed.leaseGone(token);
}

/** After a release attempt answered `due` (lease-release-5.lua's codes): the rescheduling needed. */
function dueOps(ctx: Context, sk: SessionKeys, due: number, wd: string | undefined): PipelineOp[] {
  if (due > 0) return scheduleOps(ctx, [[sk.member, due]]);
  // The lease had expired: if nobody took it, the watchdog removed with the release was what
  // would bring the session back. Put it back as due now (NX: a newer entry wins).
  if (due === ScriptCode.Fenced && wd !== undefined)
    return scheduleOps(ctx, [[sk.member, Math.floor(ctx.now())]], true);
  return [];
}

/**
 * What goes with a release: our watchdog entry out of the ready queue (compare-and-delete: an
 * entry rescheduled meanwhile by intake has another score and stays) and the idle check (unless
 * a deferred copy will make it).
 */
function releaseCompanions(ctx: Context, sk: SessionKeys, wd: string | undefined): PipelineOp[] {
  return [
    ...(wd !== undefined
      ? [{ script: 'ready-cas' as const, keys: [ctx.keys.ready], args: [sk.member, wd, ''] }]
      : []),
    // A status change still waiting for its journal copy keeps the session busy until that copy,
    // which checks again (deferred-copies.ts): asking now would only find it busy.
    ...(ctx.deferred.mark(sk.member) === undefined ? [idleOp(ctx, sk)] : []),
  ];
}

/**
 * Ends a turn: keeps the lease and returns the messages already due, or releases it (as
 * `releaseLease`) and returns null. One round trip either way; see
 * scripts/lease-release-or-take-7.lua.
 */
export async function releaseOrTake(
  ctx: Context,
  lease: LeaseGrant,
  limit: number,
  sent?: OutboundUpdate,
): Promise<StoredMessage[] | null> {
  // The reply sent last is recorded first, in the same round trip when it can be.
  const update = sent ? updateInPipeline(ctx, lease, sent) : null;
  if (sent && update === null) await updateOutbound(ctx, sent.id, sent.patch);
  const sk = ctx.keys.session(lease);
  const wd = ctx.watchdogs.get(lease.token);
  unhold(ctx, sk, lease.token);
  // The intake watermarks, read just before the mailbox, for the batch of messages kept.
  const watermark = ctx.intake?.beforeRead() ?? null;
  const lead = [...(update ? [update.op] : []), ...(watermark ? [watermark.op] : [])];
  const replies = await pipeline(ctx, 'release', [
    ...lead,
    {
      script: 'lease-release-or-take',
      keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent, sk.pv, sk.state],
      args: [lease.token, ctx.opts.bufferMs, Math.floor(ctx.now()), UNSENT_RETRY_MS, limit],
    },
  ]);
  if (update) await update.done(replies[0]);
  const reply = asArray(replies[lead.length]);
  const code = asNumber(reply[0]);
  if (code === 1) {
    // Kept: the watchdog and the held-leases entry stay as they are.
    ctx.held.set(sk.member, lease.token);
    if (watermark) ctx.intake!.afterRead(lease, watermark, replies[lead.length - 1]);
    const { mailbox, state } = holderRead(reply);
    return mailboxRead(ctx, sk, lease.token, mailbox, state, limit);
  }
  // Released (or already lost): its companions and the rescheduling follow, in one round trip.
  forget(ctx, sk, lease.token);
  const due = code === 0 ? asNumber(reply[1] ?? 0) : code;
  await followUp(ctx, [...releaseCompanions(ctx, sk, wd), ...dueOps(ctx, sk, due, wd)]);
  return null;
}

export async function releaseLease(
  ctx: Context,
  lease: LeaseGrant,
  notBeforeMs = 0,
  first = false,
): Promise<void> {
  const sk = ctx.keys.session(lease);
  const wd = ctx.watchdogs.get(lease.token);
  unhold(ctx, sk, lease.token);
  forget(ctx, sk, lease.token);
  // Its companions go in the same round trip.
  const ops: PipelineOp[] = [
    {
      script: 'lease-release',
      keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
      args: [lease.token, ctx.opts.bufferMs, Math.floor(ctx.now()), UNSENT_RETRY_MS, notBeforeMs],
    },
    ...releaseCompanions(ctx, sk, wd),
  ];
  const due = asNumber((await pipeline(ctx, 'release', ops))[0]);
  // First: a score below every session due by its messages' time (see Backend.releaseLease).
  const after = dueOps(ctx, sk, first && due > 0 && due <= ctx.now() ? 1 : due, wd);
  if (after.length > 0) await followUp(ctx, after);
}

export async function clearLease(ctx: Context, key: SessionKey): Promise<boolean> {
  const sk = ctx.keys.session(key);
  // One script drops the lease and marks the session cleared from its holder (see leaseCleared).
  const reply = asArray(
    await run(ctx, 'clear', {
      script: 'lease-clear',
      keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent, sk.cleared],
      args: [ctx.opts.bufferMs, Math.floor(ctx.now()), UNSENT_RETRY_MS, CLEARED_LEASE_MEMORY_MS],
    }),
  );
  const due = asNumber(reply[0]);
  if (due === ScriptCode.NotFound) return false;
  // The cleared lease's entry among the leases held leaves with this process's global writes.
  ctx.globalFeed.leaseGone(asString(reply[1]));
  if (due > 0) await followUp(ctx, scheduleOps(ctx, [[sk.member, due]]));
  return true;
}

export async function leaseCleared(ctx: Context, key: SessionKey): Promise<ClearedLease | null> {
  const mark = await r('cleared', () => ctx.redis.get(ctx.keys.session(key).cleared));
  if (mark === null) return null;
  const space = mark.indexOf(' ');
  return space < 0
    ? { at: Number(mark), holder: null }
    : { at: Number(mark.slice(0, space)), holder: mark.slice(space + 1) };
}

export async function holderAlive(ctx: Context, holder: string): Promise<boolean> {
  const after = `(${Math.floor(ctx.now())}`;
  // Two keys (a cluster keeps them in different slots): workers, and the other processes that
  // take batons (an ingress's admin API) while they hold one.
  const [workers, others] = await r('workers', () =>
    Promise.all([
      ctx.redis.zrangebyscore(ctx.keys.workers, after, '+inf'),
      ctx.redis.zrangebyscore(ctx.keys.holders, after, '+inf'),
    ]),
  );
  return [...workers, ...others].some((id) => heldBy(holder, id));
}
