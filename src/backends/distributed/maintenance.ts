/**
 * Upkeep: the reaper (the liveness backstop), the retention purge, and idle expiry of a
 * session's keys in Redis (they reload from PostgreSQL when the session is next needed).
 * @module
 */
import { randomUUID } from 'node:crypto';
import {
  DEFAULT_RETENTION_SEC,
  REDACTED_REASON,
  emptyPurgeReport,
  handInDoses,
  handOver,
  PURGE_BATCH,
  SESSION_SWEEP,
  purgeHorizons,
  yieldToLoop,
  type PurgeReport,
  type SweptSession,
} from '../retention.ts';
import { logSessionId } from '../../model/message.ts';
import { UNSENT_RETRY_MS, type Context } from './context.ts';
import type { SessionKeys } from './keys.ts';
import { masterNodes, onNodeChange } from './redis-client.ts';
import { asNumber, followUp, notifyOps, pipeline, r, scheduleOps, wakeOp } from './redis-calls.ts';
import type { PipelineOp } from './scripts.ts';
import type { StatementName } from './sql.ts';
import { TOMBSTONE_MS, figuresAt } from './global-feed.ts';
import { ingest } from './intake.ts';
import { recoverIntake, recoverOutbox } from './intake-log.ts';

/**
 * Starts this process's share of the upkeep, with its first `nextReady`: a reaper pass at once,
 * then one per `reaperIntervalMs`, and the retention purge every `purgeIntervalMs`.
 */
export function startMaintenance(ctx: Context): void {
  const interval = ctx.opts.reaperIntervalMs ?? 30_000;
  // A process starting up takes stock at once: messages Redis lost go back, and unless another
  // process walked the key space lately, sessions left with pending messages or unsent replies
  // and no lease (nor ready entry) get scheduled.
  chore(
    ctx,
    'reaping',
    () => reapOnce(ctx, interval, { force: true, sweep: false }),
    'start-up reaper pass failed',
  );
  if (interval > 0) {
    ctx.reaperTimer = every(interval, () =>
      chore(ctx, 'reaping', () => reapOnce(ctx, interval), 'reaper pass failed'),
    );
  }
  walkAfterFailovers(ctx, interval);
  const stallEvery = ctx.opts.stallCheckIntervalMs ?? 2000;
  if (stallEvery > 0) {
    ctx.stallTimer = every(stallEvery, () =>
      chore(ctx, 'stallChecking', () => checkStalled(ctx, stallEvery), 'stall check failed'),
    );
  }
  const purgeEvery = ctx.opts.purgeIntervalMs ?? defaultPurgeInterval(ctx.opts.messageRetentionSec);
  if (purgeEvery > 0) {
    // At start too, as the embedded backend does (one process per interval: the lock).
    const run = (): void =>
      chore(ctx, 'purging', () => purge(ctx, { lockMs: purgeEvery }), 'retention purge failed');
    run();
    ctx.purgeTimer = every(purgeEvery, run);
  }
}

/** How long after a change of a cluster's masters the walk starts, ms (the topology settles). */
const FAILOVER_WALK_DELAY_MS = 1000;

/**
 * On a Redis Cluster, a change of masters (a replica promoted, a master restarted) may take back
 * the last writes of the global keys' master (a replica that lagged lacks them) while the
 * sessions' own keys, on other masters, keep theirs: messages stored and acknowledged, in their
 * mailboxes, with no ready-queue entry nor pending figures (which the stall check reads), and
 * not lost (the intake log's restore leaves them). Only the reaper's walk finds those, and it
 * rests for minutes between walks (outside test QA116-F3: 65 messages waited 4 minutes, with no
 * log line). So one process (a lock in Redis) walks at once, a second after the change; and
 * every process forgets which figures it posted, so the stall check's repair posts go again.
 */
function walkAfterFailovers(ctx: Context, intervalMs: number): void {
  let timer: NodeJS.Timeout | null = null;
  onNodeChange(ctx.redis, () => {
    if (!ctx.initialized || ctx.closed) return;
    ctx.globalFeed.forgetPosted();
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      void walkOnce(ctx, intervalMs);
    }, FAILOVER_WALK_DELAY_MS);
    timer.unref();
  });
}

/** Tries of the walk after a change of masters (a cluster still settling may refuse the first). */
const FAILOVER_WALK_TRIES = 5;

/** The walk (see walkAfterFailovers); `locked`: this process holds the walk's lock already. */
async function walkOnce(ctx: Context, intervalMs: number, attempt = 1, locked = false): Promise<void> {
  try {
    if (!locked) {
      const mine = await r('reaper', () =>
        ctx.redis.set(ctx.keys.failoverWalk, randomUUID(), 'PX', FAILOVER_WALK_DELAY_MS * 5, 'NX'),
      );
      if (mine !== 'OK' || ctx.closed) return;
      locked = true;
    }
    // After the pass under way, if any (its walk may have begun before the change).
    while (ctx.reaping !== null) await ctx.reaping;
    const pass = reapOnce(ctx, intervalMs, { force: true });
    ctx.reaping = pass.then(
      () => undefined,
      () => undefined,
    );
    void ctx.reaping.finally(() => (ctx.reaping = null));
    const { rescheduled } = await pass;
    // (Entries already there are left as they are: the count is of every session found waiting.)
    ctx.log.info(
      { sessions: rescheduled },
      "the Redis Cluster's masters changed (a failover or a restart): the key space was walked, and every session with messages or replies waiting and no lease has its ready-queue entry",
    );
  } catch (err) {
    if (attempt < FAILOVER_WALK_TRIES && !ctx.closed) {
      const again = setTimeout(
        () => void walkOnce(ctx, intervalMs, attempt + 1, locked),
        2 * FAILOVER_WALK_DELAY_MS,
      );
      again.unref();
      return;
    }
    ctx.log.warn({ err: String(err) }, 'walk after a change of masters failed; the reaper walks later');
  }
}

/** Runs one of the upkeep's jobs unless its last run is still going; a failure is logged. */
function chore(
  ctx: Context,
  slot: 'reaping' | 'stallChecking' | 'purging',
  job: () => Promise<unknown>,
  failed: string,
): void {
  ctx[slot] ??= job()
    .then(
      () => undefined,
      (err: unknown) => ctx.log.warn({ err: String(err) }, failed),
    )
    .finally(() => (ctx[slot] = null));
}

/** A timer that does not keep the process alive. */
function every(ms: number, fn: () => void): NodeJS.Timeout {
  const timer = setInterval(fn, ms);
  timer.unref();
  return timer;
}

/**
 * How often the purge runs: every 10 minutes, or as often as half the message retention, but not
 * more than once a minute (a texts' retention of seconds was kept for up to 10 minutes).
 */
export function defaultPurgeInterval(messageRetentionSec: number | undefined): number {
  const half = ((messageRetentionSec ?? DEFAULT_RETENTION_SEC) * 1000) / 2;
  return Math.min(600_000, Math.max(60_000, half));
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
  const h = purgeHorizons(ctx.now(), ctx.opts.dedupeTtlSec, ctx.opts);
  const steps: Array<readonly [StatementName, readonly unknown[], keyof PurgeReport]> = [
    ['retention-transitions-purge', [new Date(h.transitions)], 'transitions'],
    // Outbound records live as long as the transitions (they tell an old button's prompt from
    // the current one, SPEC 1.7); their texts go with the message retention.
    ['retention-outbound-purge', [new Date(h.transitions)], 'outbound'],
    ...(h.outbound > h.transitions
      ? [
          ['retention-outbound-redact', [REDACTED_REASON, new Date(h.outbound)], 'redacted'] as const,
          ['retention-outbound-failed-purge', [new Date(h.outbound)], 'outbound'] as const,
        ]
      : []),
    // Inbound rows outlive the texts while they may recognise a redelivery (SPEC 1.2).
    ['retention-inbound-purge', [new Date(h.inbound)], 'inbound'],
    ...(h.redact !== null
      ? [['retention-inbound-redact', [REDACTED_REASON, new Date(h.redact)], 'redacted'] as const]
      : []),
    ['retention-dead-letters-purge', [new Date(h.outbound)], 'deadLetters'],
  ];
  for (const [statement, args, field] of steps) {
    for (;;) {
      if (ctx.closed) return report;
      const n = await ctx.pg.execute(statement, [...args, PURGE_BATCH]);
      report[field] += n;
      if (n < PURGE_BATCH) break;
      await yieldToLoop();
    }
  }
  if (h.sessions !== null && !ctx.closed)
    report.sessions = await expireDueSessions(ctx, new Date(h.sessions));
  // Without autovacuum, deleted rows keep their space and their texts on disk: a QA run's tables
  // held 236 MB with no live row (outside test QA12-F1). Said at start (lifecycle.ts).
  if (ctx.autovacuumOff === true && !ctx.closed) await ctx.pg.execute('retention-vacuum');
  return report;
}

/** The queue depth as the stats keep it (see admin-reads.ts `stats`), with this process's figures posted. */
async function queueDepth(ctx: Context): Promise<number> {
  await ctx.globalFeed.settled();
  const depth = await r('purge', () => ctx.redis.get(ctx.keys.pendingDepth));
  return depth === null ? 0 : Math.max(0, Number(depth));
}

/** Where each backend's sweep of sessions for expiry stopped (see expireDueSessions). */
const sessionsSwept = new WeakMap<Context, { channel: string; user: string }>();

/**
 * Expires the sessions written last before `cutOff` (expired, and past the message retention:
 * see `../retention.ts`) through the engine: each gets the purge's expiry event, stored as any
 * message is and applied under its baton by a worker (a new version, recorded `expired`, no step,
 * no data), so Redis and PostgreSQL change together, fenced and journaled, and a worker that has
 * the session in hand sees the change (outside tests QA71-R1, R3 and QA72-F2). Not a session
 * awaiting an effect or with a reply left to send: it is still at work (QA71-R2). Looks at
 * {@link SESSION_SWEEP} sessions in key order from where this process's last purge stopped.
 */
async function expireDueSessions(ctx: Context, cutOff: Date): Promise<number> {
  const from = sessionsSwept.get(ctx) ?? { channel: '', user: '' };
  const page = await ctx.pg.query('retention-sessions-page', [
    from.channel,
    from.user,
    cutOff,
    SESSION_SWEEP,
  ]);
  const { batch, resumeAfter } = handOver(
    page as unknown as Array<SweptSession & { due: boolean }>,
    (r) => r.due,
    ctx.now(),
  );
  const { handed, expired } = await handInDoses(batch, {
    ingest: (b) => ingest(ctx, b),
    depth: () => queueDepth(ctx),
    now: ctx.now,
    closed: () => ctx.closed,
  });
  const resume = resumeAfter(handed);
  if (resume === undefined) sessionsSwept.delete(ctx);
  else if (resume !== null) sessionsSwept.set(ctx, { channel: resume.channel, user: resume.user });
  return expired;
}

/**
 * The reaper's walk over the key space rests at least this many times as long as its last walk
 * took, so that it costs Redis at most about 1% of its time whatever else Redis holds: SCAN
 * visits every key of the database, other deployments' and other applications' too (a million
 * keys: about a thousand calls of 1-1.5 ms each), not just this prefix's.
 */
export const SWEEP_REST_FACTOR = 100;

/**
 * The liveness backstop, one process per interval: puts back what Redis lost from the intake
 * log (every interval), then walks the key space (at most every interval, and resting
 * {@link SWEEP_REST_FACTOR} times as long as the walk took) to reschedule sessions that have
 * pending messages or unsent replies and neither a lease nor a ready entry (a crash between a
 * script and its follow-up), and to re-announce journals that still owe PostgreSQL entries.
 * Walks every master of a cluster. `force` takes the reaper's turn (and, unless `sweep` is
 * false, the walk's) even if another process has it.
 */
export async function reapOnce(
  ctx: Context,
  intervalMs = 30_000,
  opts: { force?: boolean; sweep?: boolean } = {},
): Promise<{ rescheduled: number; journals: number }> {
  const ttl = Math.max(1000, intervalMs - 100);
  const got = await r('reaper', () =>
    opts.force
      ? ctx.redis.set(ctx.keys.reaper, randomUUID(), 'PX', ttl)
      : ctx.redis.set(ctx.keys.reaper, randomUUID(), 'PX', ttl, 'NX'),
  );
  if (got !== 'OK') return { rescheduled: 0, journals: 0 };
  // Expired tombstones of the pending figures: posts drop a few each, none come without traffic.
  await followUp(ctx, [ctx.globalFeed.trimOp()]);
  // Messages Redis lost (a restart without AOF) go back first, so the pass below schedules them.
  if (ctx.intakeLog !== null) await recoverIntake(ctx);
  // (Sessions Redis lost are scheduled again where the intake log restores their messages.)
  await recoverOutbox(ctx, undefined, { lost: ctx.intakeLog !== null });
  let rescheduled = 0;
  let journals = 0;
  const forceSweep = opts.sweep ?? opts.force === true;
  const walk = randomUUID();
  const due = await r('reaper', () =>
    forceSweep
      ? ctx.redis.set(ctx.keys.sweep, walk, 'PX', ttl)
      : ctx.redis.set(ctx.keys.sweep, walk, 'PX', ttl, 'NX'),
  );
  if (due !== 'OK') return { rescheduled, journals };
  const began = performance.now();
  const now = Math.floor(ctx.now());
  for await (const page of sweep(ctx)) {
    if (page.sessions.length > 0) {
      const schedules = await reap(ctx, 'reap', page.sessions, now);
      rescheduled += schedules.length;
      await followUp(ctx, scheduleOps(ctx, schedules, true));
    }
    if (page.journals.length > 0) {
      journals += page.journals.length;
      await followUp(ctx, notifyOps(ctx, page.journals));
    }
  }
  const rest = Math.max(ttl, Math.ceil(SWEEP_REST_FACTOR * (performance.now() - began)));
  await r('reaper', () => ctx.redis.set(ctx.keys.sweep, walk, 'PX', rest));
  return { rescheduled, journals };
}

/**
 * One walk over the key space (every master of a cluster), in pages: the sessions having a
 * mailbox or unsent replies, and those having a journal, each session once per kind.
 */
async function* sweep(ctx: Context): AsyncGenerator<{ sessions: string[]; journals: string[] }> {
  const seenSessions = new Set<string>();
  const seenJournals = new Set<string>();
  for (const node of masterNodes(ctx.redis)) {
    let cursor = '0';
    do {
      const [next, found] = await r('scan', () =>
        node.scan(cursor, 'MATCH', ctx.keys.reapPattern(), 'COUNT', 1000),
      );
      cursor = next;
      const page = { sessions: [] as string[], journals: [] as string[] };
      for (const key of found) {
        const member = ctx.keys.memberOf(key);
        if (member === null) continue;
        const [seen, into] = key.endsWith(':journal')
          ? [seenJournals, page.journals]
          : key.endsWith(':mbox') || key.endsWith(':unsent')
            ? [seenSessions, page.sessions]
            : [null, null];
        if (seen === null || seen.has(member)) continue;
        seen.add(member);
        into.push(member);
      }
      if (page.sessions.length > 0 || page.journals.length > 0) yield page;
    } while (cursor !== '0');
  }
}

/**
 * Runs the reaper's script on these sessions (one pipeline): each one with no lease and something
 * waiting is flagged as scheduled. Returns those, with the due time to put in the ready queue.
 */
async function reap(
  ctx: Context,
  what: string,
  members: readonly string[],
  now: number,
): Promise<Array<[string, number]>> {
  const replies = await pipeline(
    ctx,
    what,
    members.map((m) => {
      const sk = ctx.keys.forMember(m);
      return {
        script: 'reap' as const,
        keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
        args: [ctx.opts.bufferMs, now, UNSENT_RETRY_MS],
      };
    }),
  );
  return members.flatMap((m, i): Array<[string, number]> => {
    const at = asNumber(replies[i]);
    return at > 0 ? [[m, at]] : [];
  });
}

/** Most sessions one stall check looks at (the longest waiting first). */
const STALL_CHECK_MAX = 100;

/**
 * The fast liveness backstop, one process per interval (a few seconds, where the reaper's walk
 * over the key space comes every half minute at best): the sessions whose oldest message has
 * waited past its buffer window by `stallAfterMs` (the global pending figures have them, longest
 * waiting first, without a scan) are looked up in the ready queue; those without an entry and
 * without a lease are a lost wake-up (a follow-up write lost to a crash or a timed-out command):
 * they are rescheduled at once, and said so in a warning. A session waiting its turn in a backlog
 * has its entry, and costs one `ZSCORE`.
 */
export async function checkStalled(ctx: Context, intervalMs = 2000): Promise<string[]> {
  const got = await r('stall check', () =>
    ctx.redis.set(ctx.keys.stallCheck, '1', 'PX', Math.max(50, intervalMs - 50), 'NX'),
  );
  if (got !== 'OK') return [];
  const now = Math.floor(ctx.now());
  const before = now - ctx.opts.bufferMs - (ctx.opts.stallAfterMs ?? 3000);
  const waiting = await r('stall check', () =>
    ctx.redis.zrangebyscore(ctx.keys.pendingOldest, '-inf', before, 'LIMIT', 0, STALL_CHECK_MAX),
  );
  if (waiting.length === 0) return [];
  const entries = await pipeline(
    ctx,
    'stall check',
    waiting.map((m) => ({ command: 'ZSCORE', args: [ctx.keys.ready, m] })),
  );
  const unqueued = waiting.filter((_, i) => entries[i] === null);
  if (unqueued.length === 0) return [];
  const schedules = await reap(ctx, 'stall check', unqueued, now);
  const scheduled = new Set(schedules.map(([m]) => m));
  await repairFigures(
    ctx,
    unqueued.filter((m) => !scheduled.has(m)),
  );
  if (schedules.length === 0) return [];
  // NX, one entry at a time: an entry written meanwhile (a release's follow-up) wins, and only a
  // session still without one was lost. A release takes the lease and its watchdog entry away in
  // one round trip and schedules the session in the next: a session met between the two is not
  // lost, and was reported so, a hundred times in a rolling deploy whose older workers left
  // sessions every 200 ms (outside test QA109-F4).
  let added: unknown[];
  try {
    added = await pipeline(
      ctx,
      'stall check',
      schedules.map(([m, due]) => ({ command: 'ZADD', args: [ctx.keys.ready, 'NX', due, m] })),
    );
  } catch (err) {
    ctx.log.warn(
      { err: String(err) },
      'ready-queue/flush follow-up failed; the stall check or the reaper will repair it',
    );
    return [];
  }
  const lost = schedules.filter((_, i) => asNumber(added[i]) === 1).map(([m]) => m);
  if (lost.length === 0) return [];
  await followUp(ctx, [wakeOp(ctx)]);
  ctx.log.warn(
    { sessions: lost.slice(0, 5).map((m) => logSessionId(ctx.keys.parseMember(m))), count: lost.length },
    'messages waited with neither a lease nor a ready-queue entry (a lost wake-up): rescheduled',
  );
  return lost;
}

/**
 * Posts the mailbox figures of sessions the global stats say have waited long, yet neither a
 * lease holder nor the ready queue will serve: a worker holding the lease posts its own, so
 * what is left are figures of a mailbox that is gone. A Redis Cluster master that restarted
 * empty lost sessions' mailboxes while the stats, in another slot, kept their counts: without
 * this they counted in `queue_depth` and `oldest_pending` for ever (the mailbox's version
 * starts again from the clock, above the counts' own, so the post replaces them).
 */
async function repairFigures(ctx: Context, members: readonly string[]): Promise<void> {
  if (members.length === 0) return;
  const replies = await pipeline(
    ctx,
    'stall check',
    members.map((m) => {
      const sk = ctx.keys.forMember(m);
      return { script: 'pending' as const, keys: [sk.mbox, sk.msgs, sk.pv], args: [0, 2 * TOMBSTONE_MS] };
    }),
  );
  members.forEach((m, i) => {
    const reply = replies[i];
    if (Array.isArray(reply)) ctx.globalFeed.post(figuresAt(m, reply, 0), true);
  });
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
