/**
 * Upkeep: the reaper (the liveness backstop), the retention purge, and idle expiry of a
 * session's keys in Redis (they reload from PostgreSQL when the session is next needed).
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  DEFAULT_RETENTION_SEC,
  emptyPurgeReport,
  PURGE_BATCH,
  purgeHorizons,
  yieldToLoop,
  type PurgeReport,
} from '../retention.ts';
import { UNSENT_RETRY_MS, type Context } from './context.ts';
import type { SessionKeys } from './keys.ts';
import { masterNodes } from './redis-client.ts';
import { asNumber, followUp, notifyOps, pipeline, r, scheduleOps } from './redis-calls.ts';
import type { PipelineOp } from './scripts.ts';
import type { StatementName } from './sql.ts';
import { TOMBSTONE_MS } from './global-feed.ts';
import { recoverIntake, recoverOutbox } from './intake-log.ts';

/**
 * Starts this process's share of the upkeep, with its first `nextReady`: a reaper pass at once,
 * then one per `reaperIntervalMs`, and the retention purge every `purgeIntervalMs`.
 */
export function startMaintenance(ctx: Context): void {
  const interval = ctx.opts.reaperIntervalMs ?? 30_000;
  // A worker starting up takes stock at once: sessions left with pending messages or unsent
  // replies and no lease (nor ready entry) get scheduled.
  ctx.reaping = reapOnce(ctx, interval, { force: true })
    .then(
      () => undefined,
      (err: unknown) => ctx.log.warn({ err: String(err) }, 'start-up reaper pass failed'),
    )
    .finally(() => (ctx.reaping = null));
  if (interval > 0) {
    ctx.reaperTimer = setInterval(() => {
      ctx.reaping ??= reapOnce(ctx, interval)
        .then(
          () => undefined,
          (err: unknown) => ctx.log.warn({ err: String(err) }, 'reaper pass failed'),
        )
        .finally(() => (ctx.reaping = null));
    }, interval);
    ctx.reaperTimer.unref();
  }
  const purgeEvery = ctx.opts.purgeIntervalMs ?? 600_000;
  if (purgeEvery > 0) {
    // At start too, as the embedded backend does (one process per interval: the lock).
    ctx.purging = purge(ctx, { lockMs: purgeEvery })
      .catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'retention purge failed'))
      .finally(() => (ctx.purging = null));
    ctx.purgeTimer = setInterval(() => {
      ctx.purging ??= purge(ctx, { lockMs: purgeEvery })
        .catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'retention purge failed'))
        .finally(() => (ctx.purging = null));
    }, purgeEvery);
    ctx.purgeTimer.unref();
  }
}

/**
 * Retention (see `../retention.ts`): deletes transitions, outbound records, inbound messages
 * and dead letters past their retention from PostgreSQL, in batches. Workers run it every
 * `purgeIntervalMs` (10 min); with `lockMs`, only one process per interval does (a Redis
 * lock). Redis keeps no history: its outbound copies are capped per session and a session's
 * keys expire with it.
 */
export async function purge(ctx: Context, opts: { lockMs?: number } = {}): Promise<PurgeReport> {
  const report = emptyPurgeReport();
  if (opts.lockMs !== undefined) {
    const got = await r('purge', () =>
      ctx.redis.set(ctx.keys.purge, randomUUID(), 'PX', Math.max(1000, opts.lockMs! - 100), 'NX'),
    );
    if (got !== 'OK') return report;
  }
  const now = ctx.now();
  const h = purgeHorizons(now, ctx.opts.dedupeTtlSec, ctx.opts);
  const messagesBefore = now - (ctx.opts.messageRetentionSec ?? DEFAULT_RETENTION_SEC) * 1000;
  const steps: Array<[StatementName, number, keyof PurgeReport]> = [
    ['retention-transitions-purge', h.transitions, 'transitions'],
    ['retention-outbound-purge', h.outbound, 'outbound'],
    ['retention-inbound-purge', messagesBefore, 'inbound'],
    ['retention-dead-letters-purge', h.outbound, 'deadLetters'],
  ];
  for (const [statement, before, field] of steps) {
    for (;;) {
      if (ctx.closed) return report;
      const n = await ctx.pg.execute(statement, [new Date(before), PURGE_BATCH]);
      report[field] += n;
      if (n < PURGE_BATCH) break;
      await yieldToLoop();
    }
  }
  return report;
}

/**
 * The liveness backstop, one process per interval: reschedules sessions that have pending
 * messages and neither a lease nor a ready entry (a crash between a script and its
 * follow-up), and re-announces journals that still owe PostgreSQL entries.
 * Scans every master of a cluster.
 */
export async function reapOnce(
  ctx: Context,
  intervalMs = 30_000,
  opts: { force?: boolean } = {},
): Promise<{ rescheduled: number; journals: number }> {
  const ttl = Math.max(1000, intervalMs - 100);
  const got = await r('reaper', () =>
    opts.force
      ? ctx.redis.set(ctx.keys.reaper, randomUUID(), 'PX', ttl)
      : ctx.redis.set(ctx.keys.reaper, randomUUID(), 'PX', ttl, 'NX'),
  );
  if (got !== 'OK') return { rescheduled: 0, journals: 0 };
  // Messages Redis lost (a restart without AOF) go back first, so the pass below schedules them.
  if (ctx.intakeLog !== null) {
    await recoverIntake(ctx);
    await recoverOutbox(ctx);
  }
  let rescheduled = 0;
  let journals = 0;
  const now = Math.floor(ctx.now());
  for await (const members of scanMembers(ctx, ['mbox', 'unsent'])) {
    const ops: PipelineOp[] = members.map((m) => {
      const sk = ctx.keys.forMember(m);
      return {
        script: 'reap',
        keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
        args: [ctx.opts.bufferMs, now, UNSENT_RETRY_MS],
      };
    });
    const replies = await pipeline(ctx, 'reap', ops);
    const schedules = members.flatMap((m, i): Array<[string, number]> => {
      const due = asNumber(replies[i]);
      return due > 0 ? [[m, due]] : [];
    });
    rescheduled += schedules.length;
    await followUp(ctx, scheduleOps(ctx, schedules, true));
  }
  for await (const members of scanMembers(ctx, ['journal'])) {
    journals += members.length;
    await followUp(ctx, notifyOps(ctx, members));
  }
  return { rescheduled, journals };
}

/** Members of the sessions having one of these keys, in pages, each member once. */
async function* scanMembers(
  ctx: Context,
  kinds: ReadonlyArray<'mbox' | 'unsent' | 'journal'>,
): AsyncGenerator<string[]> {
  const seen = new Set<string>();
  for (const kind of kinds) {
    for (const node of masterNodes(ctx.redis)) yield* scanNode(ctx, node, kind, seen);
  }
}

async function* scanNode(
  ctx: Context,
  node: Redis,
  kind: 'mbox' | 'unsent' | 'journal',
  seen: Set<string>,
): AsyncGenerator<string[]> {
  let cursor = '0';
  do {
    const [next, found] = await r('scan', () =>
      node.scan(cursor, 'MATCH', ctx.keys.scanPattern(kind), 'COUNT', 1000),
    );
    cursor = next;
    const members = found
      .map((k) => ctx.keys.memberOf(k))
      .filter((m): m is string => m !== null && !seen.has(m));
    for (const m of members) seen.add(m);
    if (members.length > 0) yield members;
  } while (cursor !== '0');
}

/** The `session-idle` call for `sk`: its keys expire once it is idle (see the script). */
export function idleOp(ctx: Context, sk: SessionKeys): PipelineOp {
  return {
    script: 'session-idle',
    keys: [
      sk.lock,
      sk.mbox,
      sk.unsent,
      sk.journal,
      sk.state,
      sk.out,
      sk.outState,
      sk.outIndex,
      sk.pmid,
      sk.fence,
      sk.pv,
      sk.seq,
    ],
    args: [ctx.idleTtlMs, 2 * TOMBSTONE_MS],
  };
}
