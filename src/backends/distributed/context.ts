/**
 * The one object every part of the distributed backend works with: its clients and stores,
 * its options with their defaults applied, the little this process remembers between calls,
 * and the background work it runs. The role modules (intake.ts, scheduling.ts, leases.ts,
 * mailbox.ts, commit.ts, outbox.ts, admin-reads.ts, maintenance.ts, lifecycle.ts) are
 * functions of it; index.ts builds it and delegates to them.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pino from 'pino';
import type { SessionKey } from '../../model/message.ts';
import { GroupCommitter, type GroupCopy } from './committer.ts';
import { DeferredCopies } from './deferred-copies.ts';
import type { StreamFlusher } from './flusher.ts';
import { Keys } from './keys.ts';
import { assertSchemaName } from './migrate.ts';
import type { BackendLogger, DistributedBackendOptions } from './options.ts';
import { PgStore } from './pg-store.ts';
import { IntakeWatermarks, type WatermarkRead } from './intake-watermark.ts';
import { createRedisClient, subscriberClient, type RedisClient } from './redis-client.ts';
import { copySoon, followUp, pipeline, redisError, scheduleOps, wakeOp } from './redis-calls.ts';
import type { ReadyScheduler } from './scheduler.ts';
import { ScriptSet } from './scripts.ts';
import { SharedRate } from './throughput.ts';
import { GlobalFeed, type MailboxFigures } from './global-feed.ts';
import type { IntakeLog } from './intake-log.ts';
import { StoreClock } from './store-clock.ts';

/** Delay before a session whose replies were left unsent is taken up again (as in embedded mode). */
export const UNSENT_RETRY_MS = 1000;

/** How long an outbound status change may wait for its session's next journal copy, ms. */
export const DEFERRED_COPY_MS = 1000;

/**
 * The same where Redis keeps nothing across a restart (the intake log on): a reply whose `sent`
 * is in Redis alone goes again once Redis restarts empty, so the copy waits only long enough
 * to gather the sends of a moment into one group commit (an outside test: 12-29 replies repeated
 * per restart under load with a second's wait, sent up to 0.7 s before it).
 */
export const VOLATILE_DEFERRED_COPY_MS = 50;

/** The distributed backend's clients, options and per-process state, shared by its role modules. */
export interface Context {
  readonly opts: DistributedBackendOptions;
  readonly keys: Keys;
  readonly scripts: ScriptSet;
  readonly redis: RedisClient;
  readonly pg: PgStore;
  readonly committer: GroupCommitter;
  /** Status changes whose journal copy may wait for the session's next copy (deferred-copies.ts). */
  readonly deferred: DeferredCopies;
  readonly globalFeed: GlobalFeed;
  /** Epoch ms: Redis's clock (store-clock.ts), unless the options give one. */
  readonly now: () => number;
  /** The clock `now` reads when it is Redis's, synced by `init`; null when the options give one. */
  readonly clock: StoreClock | null;
  readonly log: BackendLogger;
  readonly writeThrough: boolean;
  readonly schema: string;

  // --- options, defaults applied ---------------------------------------------------------
  readonly claimTimeoutMs: number;
  readonly leaseGraceMs: number;
  readonly fenceBlockSize: number;
  readonly outboundKeep: number;
  readonly pgRetryMs: number;
  /** How long an idle session's keys stay in Redis. */
  readonly idleTtlMs: number;

  // --- what this process remembers between calls -----------------------------------------
  /** lease token -> the watchdog score this process set for it in the ready queue. */
  readonly watchdogs: Map<string, string>;
  /** session member -> the token of the lease this process holds on it (until released). */
  readonly held: Map<string, string>;
  /**
   * session member -> mailbox figures a holder read and has not posted: its commit posts newer
   * ones, so they are posted (as a repair) only if the lease is released without a commit.
   */
  readonly unposted: Map<string, MailboxFigures>;
  /**
   * session member -> its state as read with its mailbox by the lease holder's `pending`, for
   * that holder's next `load` (one round trip for both; used once, dropped on release).
   */
  readonly prefetched: Map<string, { token: string; s: string | null; v: string | null }>;
  /**
   * session member -> its mailbox and state as read right after the grant (same round trip),
   * for the new holder's first `pending` (used once; dropped on release).
   */
  readonly mailboxReads: Map<
    string,
    {
      token: string;
      mailbox: unknown;
      state: unknown;
      /** The intake watermarks, read just before the mailbox. */
      watermark?: { read: WatermarkRead; reply: unknown };
    }
  >;
  /**
   * session member -> the first page of its journal as read right after the lease holder's
   * commit (same round trip), for the journal copy that commit waits for (used once), with the
   * deferred-copy mark taken when that read was sent.
   */
  readonly journalReads: Map<string, { page: unknown; mark: number | undefined }>;
  /**
   * session member -> its unsent replies as read right after the lease holder's commit (same
   * round trip), for that holder's next `unsent` (used once; dropped on release).
   */
  readonly unsentAfterCommit: Map<string, { token: string; reply: unknown }>;
  /**
   * Sessions whose last commit in this process is in Redis only (PostgreSQL was away), where
   * Redis keeps nothing across a restart (the intake log on): their replies wait for the copy.
   */
  readonly notDurable: Set<string>;
  /** When a PostgreSQL copy of a commit last failed in this process (ms; 0: never). */
  pgCopyFailedAt: number;
  /** outbound id -> its session, for records this process committed or read (bounded). */
  readonly outboundSessions: Map<string, SessionKey>;

  // --- background work and lifecycle: set by init and the first nextReady, ended by close --
  sub: RedisClient | null;
  scheduler: ReadyScheduler | null;
  flusher: StreamFlusher | null;
  reaperTimer: NodeJS.Timeout | null;
  reaping: Promise<void> | null;
  stallTimer: NodeJS.Timeout | null;
  stallChecking: Promise<void> | null;
  purgeTimer: NodeJS.Timeout | null;
  purging: Promise<unknown> | null;
  initialized: boolean;
  closed: boolean;
  /** When the last Redis connection error was logged (they are logged at most one per 5 s). */
  lastRedisError: number;
  /** PostgreSQL's autovacuum will not run (read at init): the purge vacuums after itself. */
  autovacuumOff?: boolean;
  /** The schema migrations this process applied at init (none when the schema was up to date). */
  migrationsApplied?: readonly string[];
  /** The last Redis connection error's message ("connect ECONNREFUSED ..."), for `init`'s error. */
  lastRedisErrorMessage?: string;
  /**
   * Intake watermarks (intake-watermark.ts): ingresses publish, workers wait on them before
   * closing a batch. None with `bufferMs` 0: no window, nothing to wait for.
   */
  readonly intake: IntakeWatermarks | undefined;
  /** Messages stored per second across processes (the admin's messages_per_s). */
  readonly rate: SharedRate;
  /** The intake log, when on (decided in `init`: see intake-log.ts). */
  intakeLog: IntakeLog | null;
  /**
   * While Redis is back from an outage and this process restores what it lost from the intake
   * log (lifecycle.ts), the pass intake waits for first; null otherwise.
   */
  restoring: Promise<void> | null;
  /**
   * The same pass, for a holder about to take a session: it waits longer (see `restoreAfterOutages`
   * in intake-log.ts), so that a batch does not close without what Redis lost of it; null otherwise.
   */
  restorePass: Promise<void> | null;
  /**
   * With `BATON_INTAKE_LOG=auto` and the log off (Redis kept every write at start): the watch on
   * Redis's persistence settings (lifecycle.ts), and the check intake waits for after Redis was
   * away (it may be back with other settings); null otherwise.
   */
  persistenceTimer: NodeJS.Timeout | null;
  persistenceCheck: Promise<void> | null;
  /** The look for the prefix's claim, gone with a cluster master that restarted empty (lifecycle.ts). */
  ownerTimer: NodeJS.Timeout | null;
}

/** The group committer's work (commit.ts): copy these sessions' journals to PostgreSQL. */
export type CopyJournals = (ctx: Context, members: readonly string[]) => Promise<GroupCopy>;

/** Builds the context; connects nothing yet (see `init` in lifecycle.ts). */
export function createContext(options: DistributedBackendOptions, copyJournals: CopyJournals): Context {
  const schema = options.schema ?? 'baton';
  assertSchemaName(schema);
  const keys = new Keys(options.prefix ?? 'baton');
  const scripts = ScriptSet.load();
  const log = options.logger ?? pino({ name: 'baton' });
  // Fail fast instead of queueing while disconnected: intake must answer 503, not hang.
  const redis = createRedisClient({
    url: options.redisUrl,
    cluster: options.cluster ?? false,
    commandTimeoutMs: options.commandTimeoutMs ?? 3000,
    onSilent: (address, silentMs) =>
      log.warn(
        { redis: address, silentMs },
        'Redis sent nothing for a while although commands waited (a connection cut without a reset): dropped it, connecting again',
      ),
  });
  const clock = options.now
    ? null
    : new StoreClock(redis, (err) => redisError(ctx, err instanceof Error ? err : new Error(String(err))));
  const now = options.now ?? clock!.now;
  const ctx: Context = {
    opts: options,
    keys,
    scripts,
    redis,
    pg: new PgStore({
      databaseUrl: options.databaseUrl,
      schema,
      poolSize: options.poolSize,
      applyPoolSize: options.maxInFlightGroups ?? 1,
    }),
    committer: new GroupCommitter((members) => copyJournals(ctx, members), {
      maxGroup: options.maxGroup ?? 500,
      maxInFlight: options.maxInFlightGroups ?? 1,
    }),
    deferred: new DeferredCopies((members) => copySoon(ctx, members), DEFERRED_COPY_MS),
    globalFeed: new GlobalFeed(
      keys,
      (ops) => followUp(ctx, ops),
      now,
      (schedules) => scheduleOps(ctx, schedules),
      () => wakeOp(ctx),
    ),
    now,
    clock,
    log,
    writeThrough: options.syncMode !== 'write-behind',
    schema,
    claimTimeoutMs: options.claimTimeoutMs ?? 5000,
    leaseGraceMs: options.leaseGraceMs ?? 250,
    fenceBlockSize: options.fenceBlockSize ?? 1000,
    outboundKeep: options.outboundKeep ?? 100,
    pgRetryMs: options.pgRetryMs ?? 2000,
    idleTtlMs: Math.round((options.idleTtlSec ?? 86_400) * 1000),
    watchdogs: new Map(),
    held: new Map(),
    unposted: new Map(),
    prefetched: new Map(),
    mailboxReads: new Map(),
    journalReads: new Map(),
    unsentAfterCommit: new Map(),
    notDurable: new Set(),
    pgCopyFailedAt: 0,
    rate: new SharedRate(redis, keys.storedIn, now, log),
    outboundSessions: new Map(),
    sub: null,
    scheduler: null,
    flusher: null,
    reaperTimer: null,
    stallTimer: null,
    stallChecking: null,
    reaping: null,
    purgeTimer: null,
    purging: null,
    initialized: false,
    closed: false,
    lastRedisError: 0,
    intakeLog: null,
    restoring: null,
    restorePass: null,
    persistenceTimer: null,
    persistenceCheck: null,
    ownerTimer: null,
    intake:
      options.bufferMs > 0
        ? new IntakeWatermarks({
            key: keys.intake,
            askChannel: keys.intakeAsk,
            ingressId: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
            send: (ops) => pipeline(ctx, 'intake watermark', ops),
            subscribe: (channel, onMessage) => {
              const sub = subscriberClient(ctx.redis);
              sub.on('error', (err: Error) => redisError(ctx, err));
              sub.on('message', onMessage);
              sub.subscribe(channel).catch((err: unknown) => redisError(ctx, err as Error));
              return () => sub.disconnect();
            },
            cluster: options.cluster ?? false,
            now,
            onError: (err) => redisError(ctx, err instanceof Error ? err : new Error(String(err))),
          })
        : undefined,
  };
  redis.on('error', (err: Error) => redisError(ctx, err));
  return ctx;
}
