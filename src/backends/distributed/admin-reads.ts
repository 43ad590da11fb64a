/**
 * What the admin API and the dashboard read: sessions, their history and inbound messages,
 * dead letters (and their replay), leases, and the figures `stats` reports, with the worker
 * heartbeats it counts. History is read from PostgreSQL, after a barrier that copies what the
 * journals still hold (commit.ts); the hot state comes from Redis.
 * @module
 */
import type { SessionKey, StoredMessage } from '../../model/message.ts';
import type { DeadLetter, OutboundRecord, SessionSnapshot, TransitionRecord } from '../../model/session.ts';
import {
  SERVED_FLOW_MEMORY_MS,
  type BackendStats,
  type DeadLetterCursor,
  type FailedReply,
  type LeaseInfo,
  type SessionCount,
  type SessionQuery,
  type ServedFlow,
} from '../types.ts';
import { within } from '../../sleep.ts';
import { ScriptCode } from './codes.ts';
import { barrier, flushSession } from './commit.ts';
import type { Context } from './context.ts';
import * as mailbox from './mailbox.ts';
import { updateOutbound } from './outbox.ts';
import { afterIntakeOps, asArray, asNumber, followUp, pipeline, r, run, scheduleOps } from './redis-calls.ts';
import { intakeOp } from './intake.ts';
import { figuresAt } from './global-feed.ts';

function isStoredMessageLike(v: unknown): v is StoredMessage {
  if (!v || typeof v !== 'object') return false;
  const m = v as Record<string, unknown>;
  return (
    typeof m.id === 'string' &&
    typeof m.channel === 'string' &&
    typeof m.user === 'string' &&
    typeof m.timestamp === 'number' &&
    typeof m.content === 'object'
  );
}

export async function findSessions(ctx: Context, user: string, channel?: string): Promise<SessionSnapshot[]> {
  await barrier(ctx);
  const found = await ctx.pg.findSessions(user, channel);
  // Redis is ahead of PostgreSQL in write-behind mode: prefer its snapshot.
  return Promise.all(found.map(async (s) => (await mailbox.cached(ctx, s)) ?? s));
}

export async function listSessions(
  ctx: Context,
  query: SessionQuery,
): Promise<{ sessions: SessionSnapshot[]; nextCursor: string | null }> {
  let after: SessionKey | undefined;
  if (query.cursor) {
    try {
      const [channel, user] = JSON.parse(Buffer.from(query.cursor, 'base64url').toString('utf8')) as [
        string,
        string,
      ];
      after = { channel, user };
    } catch {
      after = undefined;
    }
  }
  await barrier(ctx);
  const rows = await ctx.pg.listSessions({
    step: query.step,
    needsAgent: query.needsAgent,
    channel: query.channel,
    after,
    limit: query.limit + 1,
  });
  const sessions = rows.slice(0, query.limit);
  const last = sessions.at(-1);
  const nextCursor =
    rows.length > query.limit && last
      ? Buffer.from(JSON.stringify([last.channel, last.user]), 'utf8').toString('base64url')
      : null;
  return { sessions, nextCursor };
}

export async function countSessions(ctx: Context, activeSinceMs?: number): Promise<SessionCount[]> {
  await barrier(ctx);
  return ctx.pg.countSessions(activeSinceMs);
}

export async function transitions(
  ctx: Context,
  key: SessionKey,
  newest?: number,
): Promise<TransitionRecord[]> {
  await flushSession(ctx, key);
  return ctx.pg.transitions(key, newest);
}

export async function outbound(ctx: Context, key: SessionKey, newest?: number): Promise<OutboundRecord[]> {
  await flushSession(ctx, key);
  return ctx.pg.outboundRecords(key, newest);
}

export async function listDeadLetters(
  ctx: Context,
  limit: number,
  after?: DeadLetterCursor,
): Promise<DeadLetter[]> {
  await barrier(ctx);
  return ctx.pg.listDeadLetters(limit, after);
}

export async function failedReplies(ctx: Context, limit: number): Promise<FailedReply[]> {
  await barrier(ctx);
  return ctx.pg.failedReplies(limit);
}

export async function getDeadLetter(ctx: Context, id: string): Promise<DeadLetter | null> {
  await barrier(ctx);
  return ctx.pg.getDeadLetter(id);
}

export async function replayDeadLetter(ctx: Context, id: string): Promise<boolean> {
  await barrier(ctx);
  const letter = await ctx.pg.getDeadLetter(id);
  if (!letter || letter.replayedAt !== undefined || letter.kind === 'unreadable') return false;
  const key = { channel: letter.channel, user: letter.user };
  if (letter.kind === 'inbound') {
    const stored = (await ctx.pg.inboundMessage(key, letter.ref)) ?? letter.payload;
    if (!isStoredMessageLike(stored)) return false;
    const { seq: _seq, storedAt: _storedAt, ...message } = stored;
    const sk = ctx.keys.session(key);
    const json = JSON.stringify({ ...message, storedAt: ctx.now(), replayed: true });
    const reply = asArray(await run(ctx, 'replay', intakeOp(ctx, key, message.id, json, true)));
    const due = asNumber(reply[0]);
    if (due !== ScriptCode.Duplicate) {
      const post = ctx.globalFeed.op([figuresAt(sk.member, reply, 1)]);
      await followUp(ctx, [
        ...(due > 0 ? afterIntakeOps(ctx, [[sk.member, due]]) : []),
        ...(post ? [post] : []),
      ]);
    }
  } else {
    const record = await ctx.pg.getOutbound(letter.ref);
    if (!record) return false;
    await updateOutbound(ctx, letter.ref, { status: 'pending', attempts: 0, claims: 0 });
    // Due now: a worker takes the session and sends it (else it waited for the session's next
    // message, or the reaper).
    await followUp(ctx, scheduleOps(ctx, [[ctx.keys.session(key).member, ctx.now()]]));
  }
  return ctx.pg.markReplayed(id, ctx.now());
}

/**
 * Costs the same whatever is stored or queued: the pending figures are kept by the intake,
 * commit and pending scripts' posts (see global-feed.ts), the leases held by the lease calls;
 * one round trip reads them, beside indexed counts of dead letters and of unsent sends in
 * PostgreSQL (the latter costing the unsent rows), waited for at most a second (see
 * {@link durableCounts}).
 */
export async function stats(ctx: Context): Promise<BackendStats> {
  await ctx.globalFeed.settled();
  const now = ctx.now();
  const [[depth, oldest, locks, workers], messagesPerSecond, durable] = await Promise.all([
    pipeline(ctx, 'stats', [
      { command: 'GET', args: [ctx.keys.pendingDepth] },
      { command: 'ZRANGE', args: [ctx.keys.pendingOldest, 0, 0, 'WITHSCORES'] },
      { command: 'ZCOUNT', args: [ctx.keys.leases, `(${now + ctx.leaseGraceMs}`, '+inf'] },
      { command: 'ZCOUNT', args: [ctx.keys.workers, `(${now}`, '+inf'] },
    ]),
    r('stats', () => ctx.rate.perSecond()),
    durableCounts(ctx),
  ]);
  // [member, score], or [[member, score]] over RESP3.
  const top = asArray(oldest);
  const first = Array.isArray(top[0]) ? (top[0] as unknown[]) : top;
  const { deadLetters, unsent } = durable;
  return {
    queueDepth: Math.max(0, depth === null ? 0 : asNumber(depth)),
    oldestPendingMs: first.length < 2 ? 0 : Math.max(0, now - asNumber(first[1])),
    locksHeld: asNumber(locks),
    deadLetters,
    workers: asNumber(workers),
    messagesPerSecond,
    unsent: unsent.count,
    oldestUnsentMs: unsent.oldest === null ? 0 : Math.max(0, now - unsent.oldest),
    ...(durable.stale ? { stale: ['deadLetters', 'unsent'] as const } : {}),
  };
}

/** How long `stats` waits for PostgreSQL's counts before it gives the last ones read, ms. */
export const DURABLE_COUNTS_WAIT_MS = 1000;

interface DurableCounts {
  readonly deadLetters: number;
  readonly unsent: { count: number; oldest: number | null };
}

/** The last counts each backend read from PostgreSQL. */
const lastDurable = new WeakMap<Context, DurableCounts>();

/** What `stats` gives for PostgreSQL's counts before it has read them once (marked stale). */
const NO_COUNTS: DurableCounts = { deadLetters: 0, unsent: { count: 0, oldest: null } };

/**
 * PostgreSQL's counts of dead letters and unsent sends, or, when it has not answered within
 * {@link DURABLE_COUNTS_WAIT_MS} (stalled, or away), the last ones this process read (none yet:
 * zeros), marked stale. Awaited whole, a stalled PostgreSQL held `/metrics` for 13-15 s (past a
 * scraper's timeout) and kept the queue figures Redis had fresh out of it: the queue depth said
 * 43 while 514 waited (outside test QA118-F2); and a process that had never read them still
 * waited, its first scrapes without any figure (QA119-F2).
 */
async function durableCounts(ctx: Context): Promise<DurableCounts & { stale: boolean }> {
  const read = Promise.all([ctx.pg.countDeadLetters(), ctx.pg.countUnsent()]).then(
    ([deadLetters, unsent]) => {
      const counts = { deadLetters, unsent };
      lastDurable.set(ctx, counts);
      return counts;
    },
  );
  const got = await within(
    DURABLE_COUNTS_WAIT_MS,
    read.catch(() => null),
    null,
  );
  return got === null ? { ...(lastDurable.get(ctx) ?? NO_COUNTS), stale: true } : { ...got, stale: false };
}

export async function alertsLead(ctx: Context, id: string, ttlMs: number): Promise<boolean> {
  const reply = await run(ctx, 'alerts', {
    script: 'alerts-lead',
    keys: [ctx.keys.alertsLeader],
    args: [id, ttlMs],
  });
  return asNumber(reply) === 1;
}

/**
 * The field that says Redis's record of the alerts is there (with no alert firing, the hash would
 * not exist, and could not tell "none" from "lost").
 */
const ALERTS_KEPT = '_';

/**
 * The alerts announced and not resolved: Redis's record while it has one, else PostgreSQL's copy
 * (a Redis restarted empty, or a store that never recorded an alert), which Redis then keeps.
 */
export async function alertsFiring(ctx: Context): Promise<Set<string>> {
  const key = ctx.keys.alertsFiring;
  const kept = await r('alerts', () => ctx.redis.hkeys(key));
  if (kept.includes(ALERTS_KEPT)) return new Set(kept.filter((a) => a !== ALERTS_KEPT));
  const firing = (await ctx.pg.query('alerts-firing-list')).map((row) => String(row.alert));
  const now = ctx.now();
  await r('alerts', () => ctx.redis.hset(key, ALERTS_KEPT, now, ...firing.flatMap((a) => [a, now])));
  return new Set(firing);
}

/** Records a delivered `firing` or `resolved` in Redis, and in PostgreSQL for a Redis that loses it. */
export async function setAlertFiring(
  ctx: Context,
  alert: string,
  firing: boolean,
  at: number,
): Promise<void> {
  const key = ctx.keys.alertsFiring;
  await r('alerts', () =>
    firing ? ctx.redis.hset(key, ALERTS_KEPT, at, alert, at) : ctx.redis.hdel(key, alert),
  );
  await (firing
    ? ctx.pg.query('alerts-firing-set', [alert, at])
    : ctx.pg.query('alerts-firing-clear', [alert]));
}

export async function heartbeat(
  ctx: Context,
  workerId: string,
  ttlMs: number,
  serves: readonly ServedFlow[],
): Promise<void> {
  const now = ctx.now();
  const until = now + ttlMs;
  await r('heartbeat', () =>
    Promise.all([
      ctx.redis
        .multi()
        .zadd(ctx.keys.workers, until, workerId)
        .zremrangebyscore(ctx.keys.workers, '-inf', now)
        .exec(),
      // The flows it runs, one member per worker and flow (its own key: a cluster keeps the two
      // sets in different slots, and a MULTI takes one), kept 10 minutes past their expiry: how
      // long ago a flow version last had a worker counts (see flowServedUntil).
      serves.length === 0
        ? null
        : ctx.redis
            .multi()
            .zadd(ctx.keys.serving, ...serves.flatMap((f) => [String(until), servingMember(workerId, f)]))
            .zremrangebyscore(ctx.keys.serving, '-inf', now - SERVED_FLOW_MEMORY_MS)
            .exec(),
      // Entries of leases whose holder died without releasing them: long expired, dropped.
      ctx.redis.zremrangebyscore(ctx.keys.leases, '-inf', now - 60_000),
    ]),
  );
}

export async function holderBeat(
  ctx: Context,
  processId: string,
  ttlMs: number,
  stops: boolean,
): Promise<void> {
  const now = Math.floor(ctx.now());
  if (stops) await r('holder beat', () => ctx.redis.zrem(ctx.keys.holders, processId));
  else
    await r('holder beat', () =>
      ctx.redis
        .multi()
        .zadd(ctx.keys.holders, now + ttlMs, processId)
        .zremrangebyscore(ctx.keys.holders, '-inf', now)
        .exec(),
    );
}

/**
 * Ends a sign-in in PostgreSQL, then in Redis: Redis answers the checks, PostgreSQL what a Redis
 * restarted empty forgot (outside test QA87-F1: a signed-out cookie worked again after that).
 */
export async function revokeSignIn(ctx: Context, id: string, untilMs: number): Promise<void> {
  const until = Math.ceil(untilMs);
  await ctx.pg.execute('signed-out-insert', [id, until, ctx.now()]);
  await r('sign-out', () => ctx.redis.set(ctx.keys.signedOut(id), '1', 'PXAT', until));
}

/** Whether a sign-in was ended: Redis first; a cookie it does not know is looked up in PostgreSQL. */
export async function signInRevoked(ctx: Context, id: string): Promise<boolean> {
  if ((await r('sign-in check', () => ctx.redis.exists(ctx.keys.signedOut(id)))) === 1) return true;
  return (await ctx.pg.query('signed-out-get', [id, ctx.now()])).length > 0;
}

export async function removeWorker(ctx: Context, workerId: string): Promise<void> {
  await r('removeWorker', async () => {
    const mine = (await ctx.redis.zrange(ctx.keys.serving, '0', '-1')).filter(
      (m) => servedBy(m)?.worker === workerId,
    );
    const now = String(Math.floor(ctx.now()));
    await Promise.all([
      ctx.redis.zrem(ctx.keys.workers, workerId),
      // Served until now (XX: only its own entries, which a heartbeat may have just renewed).
      ...(mine.length > 0 ? [ctx.redis.zadd(ctx.keys.serving, 'XX', ...mine.flatMap((m) => [now, m]))] : []),
    ]);
  });
}

/**
 * The member of `serving` saying that `workerId` runs `flow`; a fourth element, 1, marks its first
 * flow (a version that reads three ignores it).
 */
function servingMember(workerId: string, flow: ServedFlow): string {
  return JSON.stringify(
    flow.starts === true ? [workerId, flow.id, flow.version, 1] : [workerId, flow.id, flow.version],
  );
}

/** A `serving` member read back (null: not one this version wrote). */
function servedBy(member: string): { worker: string; id: string; version: number; starts: boolean } | null {
  try {
    const [worker, id, version, starts] = JSON.parse(member) as unknown[];
    return typeof worker === 'string' && typeof id === 'string' && typeof version === 'number'
      ? { worker, id, version, starts: starts === 1 }
      : null;
  } catch {
    return null;
  }
}

/** The `serving` members whose worker was alive at `from` or later, read back, with until when. */
async function servedSince(
  ctx: Context,
  from: number,
): Promise<Array<NonNullable<ReturnType<typeof servedBy>> & { until: number }>> {
  const seen = await r('serving', () =>
    ctx.redis.zrangebyscore(ctx.keys.serving, Math.floor(from), '+inf', 'WITHSCORES'),
  );
  const served = [];
  for (let i = 0; i + 1 < seen.length; i += 2) {
    const f = servedBy(seen[i]!);
    if (f !== null) served.push({ ...f, until: Number(seen[i + 1]) });
  }
  return served;
}

/** The flows each live worker runs (its heartbeat not expired), by worker id. */
export async function liveFlows(ctx: Context): Promise<Map<string, ServedFlow[]>> {
  const byWorker = new Map<string, ServedFlow[]>();
  for (const f of await servedSince(ctx, ctx.now())) {
    const flows = byWorker.get(f.worker) ?? [];
    flows.push({ id: f.id, version: f.version, ...(f.starts ? { starts: true } : {}) });
    byWorker.set(f.worker, flows);
  }
  return byWorker;
}

export async function flowServedUntil(ctx: Context, id: string, version: number): Promise<number> {
  let until = 0;
  for (const f of await servedSince(ctx, ctx.now() - SERVED_FLOW_MEMORY_MS))
    if (f.id === id && f.version >= version) until = Math.max(until, f.until);
  return until;
}

export async function inbound(ctx: Context, key: SessionKey, newest?: number): Promise<StoredMessage[]> {
  // Consumed ones are in PostgreSQL (once the journal is copied), pending ones in the mailbox.
  await flushSession(ctx, key);
  const [done, pending] = await Promise.all([
    ctx.pg.inboundOf(key, newest),
    mailbox.pending(ctx, key, 10_000),
  ]);
  const byId = new Map<string, StoredMessage>();
  for (const m of [...done, ...pending]) byId.set(m.id, m);
  const all = [...byId.values()].sort((a, b) => a.storedAt - b.storedAt || a.seq - b.seq);
  return newest === undefined ? all : all.slice(-newest);
}

export async function leaseInfo(ctx: Context, key: SessionKey): Promise<LeaseInfo | null> {
  const sk = ctx.keys.session(key);
  const [token, pttl] = await r('lease', () =>
    Promise.all([ctx.redis.get(sk.lock), ctx.redis.pttl(sk.lock)]),
  );
  if (token === null || pttl <= 0) return null;
  const at = token.indexOf('~');
  return { holder: at >= 0 ? token.slice(at + 1) : null, expiresAt: ctx.now() + pttl };
}
