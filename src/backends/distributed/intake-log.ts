/**
 * The intake log: where Redis would not keep an acknowledged webhook across a restart (no AOF
 * with `appendfsync always`), each message is also written to PostgreSQL before the webhook is
 * answered, so SPEC 1.1 holds ("stored durably: Redis with AOF, or PostgreSQL").
 *
 * - Intake writes the log first, then runs the Redis intake script, and answers `200` once both
 *   have the messages. One `INSERT` runs at a time per process, and the rows that arrive
 *   meanwhile gather for the next one (a group commit: under load, one statement and one WAL
 *   flush carry many webhooks). A redelivered message is logged again (`ON CONFLICT DO
 *   NOTHING`): its first write may be the one that failed. The same statement names the
 *   messages PostgreSQL has consumed already (`inbound`): redeliveries that Redis no longer
 *   recognises once a restart lost its dedupe markers; intake takes them for duplicates and does
 *   not store them again (SPEC 1.2).
 * - The reaper (one process at a time, at start and every interval) sweeps the rows of messages
 *   PostgreSQL has consumed (in `inbound`) or that are older than the dedupe window, then checks
 *   the remaining rows older than {@link RECOVER_AFTER_MS} against Redis: a message whose dedupe
 *   marker is gone was lost with Redis's memory, and goes back into its session's mailbox with
 *   its first storage time, so it keeps its place in the order. Unless a journal copy to
 *   PostgreSQL in flight consumes it: the check waits for the copies of those sessions first
 *   (their fence block rows), and a new fence block waits for them too, so the session's next
 *   holder goes on from what they wrote, without applying those messages again.
 *
 * `BATON_INTAKE_LOG`: `auto` (on when a Redis master does not persist every write), `on`, `off`.
 * @module
 */
import { StorageUnavailableError } from '../../errors.ts';
import { within } from '../../sleep.ts';
import type { InboundMessage } from '../../model/message.ts';
import { PURGE_BATCH, yieldToLoop } from '../retention.ts';
import type { Context } from './context.ts';
import type { PgStore } from './pg-store.ts';
import { figuresAt } from './global-feed.ts';
import {
  afterIntakeOps,
  asArray,
  asNumber,
  asString,
  followUp,
  pipeline,
  notifyOps,
  scheduleOps,
} from './redis-calls.ts';
import { reservationKey } from './fence-reserver.ts';
import { consumedKey, intakeOp } from './intake.ts';
import { onNodeChange } from './redis-client.ts';

/**
 * A logged message not consumed this long after it was stored is checked against Redis: the log
 * is written before Redis, so a younger one may be on its way there (one checked too early is
 * stored once all the same: the intake script's dedupe marker decides between the two writers).
 */
export const RECOVER_AFTER_MS = 500;

/** Longest a webhook waits for its messages to be logged before it is answered 503, ms. */
export const INTAKE_LOG_WAIT_MS = 5000;

/** Where the arrival counter starts again (an integer column; a millisecond never holds that many). */
const ARRIVAL_WRAP = 2 ** 31 - 1;

/** Most rows one reaper pass checks against Redis (the oldest first). */
const RECOVER_MAX = 20 * PURGE_BATCH;

/** What PostgreSQL said of a webhook's messages (see {@link IntakeLog.append}). */
export interface Logged {
  /** The keys ({@link consumedKey}) of those PostgreSQL has consumed already: duplicates. */
  readonly consumed: ReadonlySet<string>;
  /** Each message's place in the log, [stored_at ms, arrival]: its first delivery's (StoredMessage.logged). */
  readonly places: ReadonlyArray<readonly [number, number]>;
}

/** Rows logged before: their key ({@link consumedKey}) -> their place in the log. */
type Earlier = ReadonlyMap<string, readonly [number, number]>;

interface Waiter {
  resolve(consumed: ReadonlySet<string>, earlier: Earlier): void;
  reject(err: unknown): void;
}

/** Gathers rows into one `INSERT` at a time: those of a turn, and those that came while one ran. */
export class IntakeLog {
  private rows: string[] = [];
  private waiters: Waiter[] = [];
  /** An `INSERT` runs, or one is scheduled for the end of this turn. */
  private busy = false;
  /**
   * The last message's place in the order this process logged them: the restore puts messages
   * stored in one millisecond (a webhook's) back in that order, which their ids are not (outside
   * test QA43-F1). Only its order within a millisecond counts.
   */
  private arrival = 0;

  constructor(private readonly pg: PgStore) {}

  /**
   * Logs these messages, stored at `storedAt` as `stored` (their JSON, as Redis keeps them).
   * Resolves with those PostgreSQL has consumed already, and each message's place in the log
   * (a message logged before keeps its first place).
   */
  append(messages: readonly InboundMessage[], stored: readonly string[], storedAt: number): Promise<Logged> {
    const at = JSON.stringify(new Date(storedAt).toISOString());
    const places = messages.map((m, i): readonly [number, number] => {
      this.arrival = (this.arrival + 1) % ARRIVAL_WRAP;
      this.rows.push(
        `{"channel":${JSON.stringify(m.channel)},"user_id":${JSON.stringify(m.user)},"id":${JSON.stringify(m.id)},"stored_at":${at},"arrival":${this.arrival},"message":${stored[i]!}}`,
      );
      return [storedAt, this.arrival];
    });
    return new Promise<Logged>((resolve, reject) => {
      // A PostgreSQL that hangs (frozen, not down: no error comes) must not hold the webhook for
      // the query timeout: past this wait it is answered 503 and Meta sends it again. If the
      // INSERT lands after all, the reaper restores the logged messages once (the dedupe
      // marker decides between it and the redelivery).
      const timer = setTimeout(
        () =>
          reject(
            new StorageUnavailableError(
              `PostgreSQL did not log the webhook within ${INTAKE_LOG_WAIT_MS} ms (intake log)`,
            ),
          ),
        INTAKE_LOG_WAIT_MS,
      );
      timer.unref();
      this.waiters.push({
        resolve: (consumed, earlier) => {
          clearTimeout(timer);
          if (earlier.size > 0)
            messages.forEach((m, i) => {
              const first = earlier.get(consumedKey(m));
              if (first !== undefined) places[i] = first;
            });
          resolve({ consumed, places });
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      });
      if (!this.busy) {
        this.busy = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const rows = this.rows;
    const waiters = this.waiters;
    this.rows = [];
    this.waiters = [];
    this.pg
      .query('intake-log-insert', [`[${rows.join(',')}]`])
      .then(
        (found) => {
          const consumed = new Set<string>();
          const earlier = new Map<string, readonly [number, number]>();
          for (const r of found) {
            const key = consumedKey({
              channel: String(r.channel),
              user: String(r.user_id),
              id: String(r.id),
            });
            if (r.consumed === true) consumed.add(key);
            else {
              const [at, arrival] = r.first as [number, number];
              earlier.set(key, [Number(at), Number(arrival)]);
            }
          }
          waiters.forEach((w) => w.resolve(consumed, earlier));
        },
        (err: unknown) => waiters.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        if (this.waiters.length > 0) this.flush();
        else this.busy = false;
      });
  }
}

/**
 * One pass over the intake log: sweeps what PostgreSQL has consumed, then puts back into Redis
 * what Redis lost. Returns how many messages went back. With `sweepWaitMs` (the pass that follows
 * an outage, which every lease grant waits for), the restore waits for the sweep that long at
 * most, and whatever the sweep comes to: the sweep is housekeeping (it keeps the restore's scan
 * short), and one that waited on rows another statement held kept the lost messages out of their
 * mailboxes, with every session's next batch waiting for the pass (outside test QA108-F1: after
 * quick Redis restarts, three passes failed on the sweep's timeout, 15 s each, and the messages
 * came back only at the reaper's pass a minute later).
 */
export async function recoverIntake(
  ctx: Context,
  minAgeMs = RECOVER_AFTER_MS,
  o: { sweepWaitMs?: number } = {},
): Promise<number> {
  const dedupeFrom = new Date(ctx.now() - ctx.opts.dedupeTtlSec * 1000);
  // A sweep that fails leaves its rows to the next one: the restore goes on all the same.
  const swept = sweepLog(ctx, dedupeFrom).catch((err: unknown) =>
    ctx.log.warn({ err: String(err) }, 'intake log sweep failed; the reaper retries'),
  );
  await (o.sweepWaitMs === undefined ? swept : within(o.sweepWaitMs, swept, undefined));
  // Messages are as old as they are when the restore begins (a sweep waited for a second would
  // otherwise leave out those logged in the moment before the outage).
  return restoreLost(ctx, ctx.now(), minAgeMs, dedupeFrom);
}

/** Deletes the log's rows of messages PostgreSQL has consumed or older than the dedupe window. */
async function sweepLog(ctx: Context, dedupeFrom: Date): Promise<void> {
  for (;;) {
    if (ctx.closed) return;
    const n = await ctx.pg.execute('intake-log-sweep', [dedupeFrom, PURGE_BATCH]);
    if (n < PURGE_BATCH) return;
    await yieldToLoop();
  }
}

/**
 * Puts back into their mailboxes the logged messages stored `minAgeMs` before `now` or earlier
 * that Redis no longer has and PostgreSQL has not consumed; a row older than the dedupe window
 * (`dedupeFrom`) is the sweep's, never restored. Returns how many went back.
 */
async function restoreLost(ctx: Context, now: number, minAgeMs: number, dedupeFrom: Date): Promise<number> {
  const restored = { lostByRedis: 0, neverStored: 0 };
  let after: [Date, number, string, string, string] = [new Date(0), 0, '', '', ''];
  for (let checked = 0; checked < RECOVER_MAX;) {
    if (ctx.closed) break;
    const rows = await ctx.pg.query('intake-log-page', [
      new Date(now - minAgeMs),
      ...after,
      PURGE_BATCH,
      dedupeFrom,
    ]);
    if (rows.length === 0) break;
    checked += rows.length;
    const page = rows.map((r) => ({
      channel: String(r.channel),
      user: String(r.user_id),
      id: String(r.id),
      storedAt: r.stored_at as Date,
      arrival: Number(r.arrival),
      message: r.message as Record<string, unknown>,
    }));
    const last = page.at(-1)!;
    after = [last.storedAt, last.arrival, last.channel, last.user, last.id];
    const seen = await pipeline(
      ctx,
      'intake log check',
      page.map((m) => ({ command: 'exists', args: [ctx.keys.session(m).seen(m.id)] })),
    );
    const missing = page.filter((_m, i) => asNumber(seen[i]) === 0);
    // A copy in flight to PostgreSQL (its commit lost with Redis, or slow) may consume some of
    // them yet: wait for those copies, then leave out what they consumed. A copy of a session
    // Redis lost that has not reached PostgreSQL yet is refused when it does (its era ends).
    const redis = await sessionsInRedis(ctx, missing);
    const consumed = new Set(
      (await ctx.pg.consumedAfterCopies(missing, redis.lost)).map((r) =>
        consumedKey({ channel: String(r.channel), user: String(r.user_id), id: String(r.id) }),
      ),
    );
    const lost = missing.filter((m) => !consumed.has(consumedKey(m)));
    const stored = lost.length > 0 ? await restore(ctx, lost) : [];
    for (const m of stored) {
      // Logged while the Redis that serves its session was up already: it never got there.
      const upSince = redis.startedAt.get(reservationKey(m)) ?? Number.POSITIVE_INFINITY;
      if (upSince <= m.storedAt.getTime()) restored.neverStored++;
      else restored.lostByRedis++;
    }
    if (rows.length < PURGE_BATCH) break;
  }
  // Two causes, told apart so that an operator looks for the right one: a Redis that restarted
  // (or failed over) since the messages were logged lost them; or they never reached Redis at
  // all, because the ingress that logged them stopped, timed out, or fell behind by more than
  // `minAgeMs` between the log and Redis (it then finds them stored already: duplicates).
  // Logged before the restart, a message may also be one whose webhook was answered 503 while
  // Redis was away, not acknowledged: said too, and not as a Redis without AOF (outside test
  // QA116-F1: six webhooks refused during an outage, an AOF that lost nothing).
  if (restored.lostByRedis > 0)
    ctx.log.warn(
      { restored: restored.lostByRedis },
      'intake log: messages logged before Redis restarted or failed over, and missing from it, went back into their mailboxes (lost by Redis: a restart without AOF, or a replica promoted behind its master; or never stored there: their webhook was answered 503 while Redis was away, and its redelivery will be a duplicate)',
    );
  if (restored.neverStored > 0)
    ctx.log.warn(
      { restored: restored.neverStored, afterMs: minAgeMs },
      'intake log: messages logged but not in Redis this long after (their ingress stopped, timed out or fell behind before storing them there, or a replica promoted in a failover never had them) were stored from the log',
    );
  return restored.lostByRedis + restored.neverStored;
}

/** What Redis holds of some sessions, by `reservationKey` (see {@link sessionsInRedis}). */
interface SessionsInRedis {
  /** Sessions whose fences Redis no longer has (lost, and not granted since), each with the Redis lifetime (run_id) that answered for it. */
  readonly lost: Map<string, string>;
  /** When the Redis serving each session started (epoch ms, to the second, never earlier than it did). */
  readonly startedAt: Map<string, number>;
}

/** Asks the Redis serving each of these messages' sessions what it holds of the session. */
async function sessionsInRedis(
  ctx: Context,
  messages: ReadonlyArray<{ channel: string; user: string }>,
): Promise<SessionsInRedis> {
  const sessions = new Map(messages.map((m) => [reservationKey(m), m]));
  const keys = [...sessions.keys()];
  const replies = await pipeline(
    ctx,
    'intake log check',
    [...sessions.values()].map((m) => ({
      script: 'session-era',
      keys: [ctx.keys.session(m).fence],
      args: [],
    })),
  );
  const now = ctx.now();
  const lost = new Map<string, string>();
  const startedAt = new Map<string, number>();
  replies.forEach((reply, i) => {
    const [kept, era, uptime] = asArray(reply);
    if (asNumber(kept) === 0) lost.set(keys[i]!, asString(era));
    startedAt.set(keys[i]!, now - asNumber(uptime) * 1000);
  });
  return { lost, startedAt };
}

/** Stores logged messages in their mailboxes again, with their first storage times; returns those stored. */
async function restore<
  M extends {
    channel: string;
    user: string;
    id: string;
    storedAt: Date;
    arrival: number;
    message: Record<string, unknown>;
  },
>(ctx: Context, lost: readonly M[]): Promise<M[]> {
  const ops = lost.map((m) => {
    const { seq: _seq, ...stored } = m.message;
    const logged = [m.storedAt.getTime(), m.arrival];
    return intakeOp(ctx, m, m.id, JSON.stringify({ ...stored, restored: true, logged }));
  });
  const replies = await pipeline(ctx, 'intake log restore', ops);
  const schedules: Array<[string, number]> = [];
  const stored: M[] = [];
  lost.forEach((m, i) => {
    const reply = asArray(replies[i]);
    const code = asNumber(reply[0]);
    if (code < 0) return; // stored meanwhile (a redelivery, or its own ingress)
    stored.push(m);
    const member = ctx.keys.member(m);
    ctx.globalFeed.post(figuresAt(member, reply, 1));
    if (code > 0) schedules.push([member, code]);
  });
  await followUp(ctx, afterIntakeOps(ctx, schedules, true));
  // Stored now (again): messages_per_s counts them here; their redelivery will be a duplicate.
  ctx.rate.add(stored.length);
  return stored;
}

/** Most replies one pass looks at (the oldest first). */
const OUTBOX_RECOVER_MAX = 20 * PURGE_BATCH;

/**
 * A reply's record left unsent in PostgreSQL this long while its session's journal in Redis still
 * holds entries is owed a copy: a status change (its send) waits for one at most a second
 * (DEFERRED_COPY_MS) and a write-behind commit a flush, but a process killed in that second takes
 * its deferral with it, and nothing copied the entry until the session's next commit, ms.
 */
export const COPY_OVERDUE_MS = 10_000;

/** A session with replies PostgreSQL records as unsent, and what Redis holds of it. */
interface UnsentSession {
  member: string;
  /** When its oldest unsent reply was committed, epoch ms. */
  oldest: number;
  /** Redis still holds the session's state. */
  held: boolean;
  /** Entries its journal in Redis still owes PostgreSQL. */
  journal: number;
}

/**
 * Replies committed but not sent, as PostgreSQL has them (the oldest first), set right again
 * where Redis and PostgreSQL differ:
 * - a session Redis no longer holds (it lost its memory; with `lost`): see `scheduleLost`;
 * - a session Redis holds whose journal still owes PostgreSQL entries: see `announceOverdue`.
 * Returns how many sessions were scheduled.
 */
export async function recoverOutbox(
  ctx: Context,
  minAgeMs = RECOVER_AFTER_MS,
  { lost = true }: { lost?: boolean } = {},
): Promise<number> {
  if (ctx.closed) return 0;
  const sessions = await unsentSessions(ctx, minAgeMs);
  await announceOverdue(ctx, sessions);
  return lost ? scheduleLost(ctx, sessions) : 0;
}

async function unsentSessions(ctx: Context, minAgeMs: number): Promise<UnsentSession[]> {
  const rows = await ctx.pg.query('outbound-unsent-sessions', [
    new Date(ctx.now() - minAgeMs),
    OUTBOX_RECOVER_MAX,
  ]);
  if (rows.length === 0) return [];
  const members = rows.map((r) => ctx.keys.member({ channel: String(r.channel), user: String(r.user_id) }));
  const held = await pipeline(
    ctx,
    'outbox check',
    members.flatMap((m) => {
      const sk = ctx.keys.forMember(m);
      return [
        { command: 'exists', args: [sk.state] },
        { command: 'llen', args: [sk.journal] },
      ];
    }),
  );
  return members.map((member, i) => ({
    member,
    oldest: Number(rows[i]!.oldest),
    held: asNumber(held[2 * i]) === 1,
    journal: asNumber(held[2 * i + 1]),
  }));
}

/**
 * Past `COPY_OVERDUE_MS`, a session Redis holds whose journal still owes PostgreSQL entries is
 * handed to the flusher. A worker killed within a second of a send kept its reply `pending` in
 * PostgreSQL, so the unsent figures and the `oldest_unsent` alert counted a reply the user had,
 * for as long as nobody opened that session (outside test QA114-F3: over 5 minutes).
 */
async function announceOverdue(ctx: Context, sessions: UnsentSession[]): Promise<void> {
  const overdue = ctx.now() - COPY_OVERDUE_MS;
  const owed = sessions.filter((s) => s.held && s.journal > 0 && s.oldest < overdue).map((s) => s.member);
  if (owed.length > 0) await followUp(ctx, notifyOps(ctx, owed));
}

/**
 * A session Redis lost: nothing would load its replies again before the user's next message, so
 * it is scheduled now; the worker that takes it reloads it from PostgreSQL, unsent replies
 * included, and sends them. Returns how many were scheduled.
 */
async function scheduleLost(ctx: Context, sessions: UnsentSession[]): Promise<number> {
  const lost = sessions.filter((s) => !s.held).map((s) => s.member);
  if (lost.length === 0) return 0;
  await followUp(
    ctx,
    scheduleOps(
      ctx,
      lost.map((m) => [m, Math.floor(ctx.now())] as const),
      true,
    ),
  );
  ctx.log.warn(
    { sessions: lost.length },
    // PostgreSQL's record says unsent; some may have gone out just before Redis lost the record
    // of their send, and go out once more (SPEC 1.6). Not said as "not sent" (outside test QA84-F3).
    'replies committed and not recorded as sent, whose session Redis lost (a restart without AOF, or a failover to a replica behind its master): their sessions are scheduled again, and those replies sent (any that went out just before, once more)',
  );
  return lost.length;
}

/** Longest the restore pass that follows an outage waits for the log's sweep (see recoverIntake), ms. */
const RESTORE_SWEEP_WAIT_MS = 1000;

/** Longest intake waits for the restore pass that follows an outage (see `restoring` in context.ts), ms. */
const RESTORE_GATE_MS = 1000;

/**
 * Longest a holder about to take a session waits for that pass (see `restorePass` in context.ts),
 * ms: a webhook's answer cannot wait long, a batch can, and one closed without the messages Redis
 * lost of its burst splits it (outside test QA72-F1: a pass slowed by a busy machine ended after
 * the burst's window, and its messages were then late or applied at the next step).
 */
const RESTORE_HOLD_MS = 10_000;

/**
 * Restores what Redis lost as soon as it is back from an outage (a restart that may have lost
 * what it held), rather than at the reaper's next pass, so that what the user sent before the
 * restart goes back into the mailbox before what they send after it is processed.
 */
export function restoreAfterOutages(ctx: Context): void {
  // Every logged message counts then but those being stored this very moment (a fifth of a
  // second: the log is written just before Redis); passes a quarter of a second and a second
  // later take those that were that young (stored just before Redis went).
  let pass: Promise<void> | null = null;
  const restore = (): Promise<void> => {
    if (ctx.closed) return Promise.resolve();
    pass ??= recoverIntake(ctx, 200, { sweepWaitMs: RESTORE_SWEEP_WAIT_MS })
      // And the replies owed by sessions Redis lost: nothing else reloads those sessions.
      .then(() => recoverOutbox(ctx, 200))
      .then(
        () => undefined,
        (err: unknown) => ctx.log.warn({ err: String(err) }, 'intake log restore failed; the reaper retries'),
      )
      .finally(() => (pass = null));
    return pass;
  };
  const soon = (): void => {
    // What this process takes in meanwhile waits for the first pass (up to a second): stored
    // first, a user's next message could be processed ahead of those restored, which were then
    // late (a CI run of test/distributed/volatile-redis-crash, as QA56-F2 on a cluster).
    const first = restore();
    const upTo = (ms: number): Promise<void> =>
      Promise.race([first, new Promise<void>((resolve) => setTimeout(resolve, ms).unref())]);
    const gate: Promise<void> = upTo(RESTORE_GATE_MS).finally(() => {
      if (ctx.restoring === gate) ctx.restoring = null;
    });
    ctx.restoring = gate;
    const hold: Promise<void> = upTo(RESTORE_HOLD_MS).finally(() => {
      if (ctx.restorePass === hold) ctx.restorePass = null;
    });
    ctx.restorePass = hold;
    setTimeout(() => void restore(), 250).unref();
    setTimeout(() => void restore(), 1000).unref();
  };
  ctx.redis.on('ready', soon);
  // On a cluster, one master restarting or failing over is no 'ready' of the client: a node's
  // connection ready again (a master restarted, perhaps empty), or another set of masters
  // after a slots refresh (a replica promoted, which may lack the old master's last writes)
  // restores at once too. Waiting for the reaper, the messages came back up to 30 s later,
  // after the user's next ones, and were recorded late (outside test QA56-F2).
  onNodeChange(ctx.redis, () => {
    if (ctx.initialized) soon();
  });
}
