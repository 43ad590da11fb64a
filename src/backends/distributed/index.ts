/**
 * The distributed backend: Redis for hot state (mailboxes, ready queue, leases, snapshots,
 * unsent outbound records), PostgreSQL for the durable copy (sessions, transition log,
 * outbound records, consumed inbound messages, dead letters).
 *
 * Design, in short (details beside each part):
 * - Every key of one session shares the hash tag `{<channel>:<user>}` (see keys.ts), so each
 *   per-session script touches one slot: Redis Cluster ready. The ready queue, the wake
 *   channel and the flush stream are global keys in their own slots; scripts never touch
 *   them together with session keys. Instead a session script raises a flag in the session's
 *   slot and returns what to add to the ready queue, and the caller does that follow-up
 *   ZADD (pipelined for a whole webhook). A crash between the two is repaired by the flag's
 *   expiry and by the reaper, which scans mailboxes and journals and reschedules sessions
 *   that have pending messages and no lease.
 * - Single node or Redis Cluster (`cluster: true`, redis-client.ts): on a cluster, pipelines
 *   spanning sessions are split into one pipeline per node (scripts.ts), and node-level work
 *   (script preload, persistence check, the reaper's SCAN, health) runs on every master. The
 *   fencing epoch below is then the run_id of the node serving the session's slot: a slot that
 *   moves to another node, or fails over, changes it like a restart does.
 * - The ready queue holds every live session: scheduled ones by due time, claimed ones by a
 *   visibility deadline, leased ones by a watchdog deadline (lease expiry + grace). So a
 *   worker that dies holding a lease needs no scan: its session becomes due when the lease
 *   has expired.
 * - Fencing tokens: Redis hands them out from blocks reserved in PostgreSQL; a Redis restart
 *   or failover (a new run_id) or lost keys force a fresh block, which starts above every
 *   token ever granted (see scripts/lease-acquire-3.lua).
 * - Commits are checked and applied atomically in Redis (token, fence, version), and in the
 *   same script appended to the session's journal. `write-through` then copies the journal to
 *   PostgreSQL through the group committer before `commit` resolves; `write-behind` leaves it
 *   to the stream flusher. PostgreSQL refuses a write whose fence is older than the row's.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import pino from 'pino';
import type {
  Backend,
  BackendStats,
  BatchCommit,
  CommitResult,
  IngestResult,
  LeaseGrant,
  LeaseInfo,
  OutboundPatch,
  SessionQuery,
} from '../types.ts';
import { FencedError, StorageUnavailableError, VersionConflictError } from '../../errors.ts';
import type { SessionKey, StoredMessage, WebhookBatch } from '../../model/message.ts';
import { sessionId } from '../../model/message.ts';
import type {
  DeadLetter,
  OutboundRecord,
  PromptRef,
  SessionSnapshot,
  TransitionRecord,
} from '../../model/session.ts';
import {
  DEFAULT_RETENTION_SEC,
  PURGE_BATCH,
  purgeHorizons,
  yieldToLoop,
  type PurgeReport,
  type RetentionOptions,
} from '../retention.ts';
import { ScriptCode, scriptCodeName } from './codes.ts';
import { GroupCommitter } from './committer.ts';
import { IntakeWatermarks } from './intake-watermark.ts';
import { StreamFlusher } from './flusher.ts';
import type { JournalEntry, OutboundBodyRecord, OutboundState } from './journal.ts';
import { entryPrefix, joinOutbound, splitOutbound } from './journal.ts';
import { Keys, type SessionKeys } from './keys.ts';
import { assertSchemaName, migrate } from './migrate.ts';
import { persistenceWarning } from './persistence.ts';
import { PgStore, type StoredOutbound, type StoredSession } from './pg-store.ts';
import {
  createRedisClient,
  masterNodes,
  nodeAddress,
  readerClient,
  subscriberClient,
  type RedisClient,
} from './redis-client.ts';
import { isRedisUnavailable } from './redis-errors.ts';
import { ReadyScheduler, type ClaimResult } from './scheduler.ts';
import { ScriptSet, type Arg, type PipelineOp, type ScriptName } from './scripts.ts';
import { figuresAt, StatsFeed, TOMBSTONE_MS, type MailboxFigures } from './stats-feed.ts';
import type { StatementName } from './sql.ts';

export { migrate } from './migrate.ts';

/** The logger methods the backend uses; a pino logger fits. */
export interface BackendLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DistributedBackendOptions extends RetentionOptions {
  /** One Redis URL; with `cluster`, one or more seed-node URLs separated by commas. */
  readonly redisUrl: string;
  /** `BATON_REDIS_CLUSTER`: `redisUrl` names nodes of a Redis Cluster (default false). */
  readonly cluster?: boolean;
  readonly databaseUrl: string;
  /** `BATON_BUFFER_MS`. */
  readonly bufferMs: number;
  /** `BATON_DEDUPE_TTL`, seconds. */
  readonly dedupeTtlSec: number;
  readonly syncMode: 'write-through' | 'write-behind';
  /** Redis key prefix, default `baton`. */
  readonly prefix?: string;
  /** PostgreSQL schema, default `baton`. */
  readonly schema?: string;
  /** Clock, epoch ms (storage times, due times). */
  readonly now?: () => number;
  readonly logger?: BackendLogger;

  // --- tuning; the defaults suit production -------------------------------------------
  /** Run migrations in `init` (default true). */
  readonly migrate?: boolean;
  /** Run the stream flusher in this process (default true). */
  readonly flusher?: boolean;
  /** How long a claimed session stays invisible before another caller may claim it (5000). */
  readonly claimTimeoutMs?: number;
  /** Added to a lease's expiry before its watchdog makes the session due again (250). */
  readonly leaseGraceMs?: number;
  /** How often one process scans for sessions to reschedule (30000; 0 disables). */
  readonly reaperIntervalMs?: number;
  /**
   * Seconds an idle session's keys stay in Redis before they expire (they reload from
   * PostgreSQL when it is next needed); default 24 h, the app passes `BATON_SESSION_TTL`.
   */
  readonly idleTtlSec?: number;
  /** Fencing tokens reserved in PostgreSQL at a time (1000). */
  readonly fenceBlockSize?: number;
  /** Outbound records kept in Redis per session besides unsent ones (100). */
  readonly outboundKeep?: number;
  /** Redis command timeout, ms (3000). */
  readonly commandTimeoutMs?: number;
  /** How long write-through `commit` retries PostgreSQL before it gives up (2000). */
  readonly pgRetryMs?: number;
  /** Most sessions copied in one PostgreSQL transaction (500). */
  readonly maxGroup?: number;
  /** Group-commit transactions running at once, over disjoint sessions (2). */
  readonly maxInFlightGroups?: number;
  /** Longest `nextReady` sleep without news, ms (1000). */
  readonly maxIdleMs?: number;
  /** PostgreSQL pool size (10). */
  readonly poolSize?: number;
}

/** Every store the mode writes through has the commit. */
const DURABLE: CommitResult = Object.freeze({ durable: true });
/** Applied and journaled in Redis; PostgreSQL's copy is pending. */
const JOURNALED: CommitResult = Object.freeze({ durable: false });

const JOURNAL_PAGE = 500;
/** Delay before a session whose replies were left unsent is taken up again (as in embedded mode). */
const UNSENT_RETRY_MS = 1000;
const TOMBSTONE_TTL_SEC = 3600;
const FLUSH_GROUP = 'flushers';

function asArray(v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
  return v as unknown[];
}

function asNumber(v: unknown): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
  return n;
}

function asString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The sessions an outbound id may belong to, most likely first, when Baton's id scheme
 * (`<channel>:<user>:<...>`) is followed: user ids may hold colons, so every split is a
 * candidate. Each is only a guess, checked against Redis.
 */
function outboundIdCandidates(id: string): SessionKey[] {
  const parts = id.split(':');
  const out: SessionKey[] = [];
  for (let end = parts.length - 1; end >= 2; end--) {
    out.push({ channel: parts[0]!, user: parts.slice(1, end).join(':') });
  }
  return out;
}

/** Most outbound ids remembered per process (id -> session), for updateOutbound. */
const OUTBOUND_CACHE_MAX = 50_000;

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

export class DistributedBackend implements Backend {
  readonly kind = 'distributed' as const;

  private readonly opts: DistributedBackendOptions;
  private readonly keys: Keys;
  private readonly scripts: ScriptSet;
  private readonly redis: RedisClient;
  private readonly pg: PgStore;
  private readonly committer: GroupCommitter;
  private readonly statsFeed: StatsFeed;
  private readonly now: () => number;
  private readonly log: BackendLogger;
  private readonly writeThrough: boolean;
  private readonly schema: string;

  private readonly claimTimeoutMs: number;
  private readonly leaseGraceMs: number;
  private readonly fenceBlockSize: number;
  private readonly outboundKeep: number;
  private readonly pgRetryMs: number;

  private sub: RedisClient | null = null;
  private scheduler: ReadyScheduler | null = null;
  private flusher: StreamFlusher | null = null;
  private reaperTimer: NodeJS.Timeout | null = null;
  private reaping: Promise<void> | null = null;
  private purgeTimer: NodeJS.Timeout | null = null;
  /** How long an idle session's keys stay in Redis. */
  private readonly idleTtlMs: number;
  private purging: Promise<unknown> | null = null;
  /** lease token -> the watchdog score this process set for it in the ready queue. */
  private readonly watchdogs = new Map<string, string>();
  /**
   * session member -> its state as read with its mailbox by the lease holder's `pending`, for
   * that holder's next `load` (one round trip for both; used once, dropped on release).
   */
  private readonly prefetched = new Map<string, { token: string; s: string | null; v: string | null }>();
  /**
   * session member -> its unsent replies as read right after the lease holder's commit (same
   * round trip), for that holder's next `unsent` (used once; dropped on release).
   */
  private readonly unsentAfterCommit = new Map<string, { token: string; reply: unknown }>();
  /** outbound id -> its session, for records this process committed or read (bounded). */
  private readonly outboundSessions = new Map<string, SessionKey>();
  private initialized = false;
  private closed = false;
  private lastRedisError = 0;
  /**
   * Intake watermarks (intake-watermark.ts): ingresses publish, workers wait on them before
   * closing a batch. None with `bufferMs` 0: no window, nothing to wait for.
   */
  readonly intake: IntakeWatermarks | undefined;

  constructor(options: DistributedBackendOptions) {
    this.opts = options;
    this.schema = options.schema ?? 'baton';
    assertSchemaName(this.schema);
    this.keys = new Keys(options.prefix ?? 'baton');
    this.scripts = ScriptSet.load();
    this.now = options.now ?? Date.now;
    this.log = options.logger ?? pino({ name: 'baton' });
    this.writeThrough = options.syncMode !== 'write-behind';
    this.claimTimeoutMs = options.claimTimeoutMs ?? 5000;
    this.leaseGraceMs = options.leaseGraceMs ?? 250;
    this.fenceBlockSize = options.fenceBlockSize ?? 1000;
    this.idleTtlMs = Math.round((options.idleTtlSec ?? 86_400) * 1000);
    this.outboundKeep = options.outboundKeep ?? 100;
    this.pgRetryMs = options.pgRetryMs ?? 2000;
    // Fail fast instead of queueing while disconnected: intake must answer 503, not hang.
    this.redis = createRedisClient({
      url: options.redisUrl,
      cluster: options.cluster ?? false,
      commandTimeoutMs: options.commandTimeoutMs ?? 3000,
    });
    this.redis.on('error', (err: Error) => this.redisError(err));
    this.pg = new PgStore({
      databaseUrl: options.databaseUrl,
      schema: this.schema,
      poolSize: options.poolSize,
      applyPoolSize: options.maxInFlightGroups ?? 2,
    });
    this.statsFeed = new StatsFeed(this.keys, (ops) => this.followUp(ops), this.now);
    this.committer = new GroupCommitter((members) => this.copyJournals(members), {
      maxGroup: options.maxGroup ?? 500,
      maxInFlight: options.maxInFlightGroups ?? 2,
    });
    this.intake =
      options.bufferMs > 0
        ? new IntakeWatermarks({
            key: this.keys.intake,
            askChannel: this.keys.intakeAsk,
            ingressId: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
            send: (ops) => this.pipeline('intake watermark', ops),
            subscribe: (channel, onMessage) => {
              const sub = subscriberClient(this.redis);
              sub.on('error', (err: Error) => this.redisError(err));
              sub.on('message', onMessage);
              sub.subscribe(channel).catch((err: unknown) => this.redisError(err as Error));
              return () => sub.disconnect();
            },
            cluster: options.cluster ?? false,
            now: this.now,
            onError: (err) => this.redisError(err instanceof Error ? err : new Error(String(err))),
          })
        : undefined;
  }

  private redisError(err: Error): void {
    // Connection errors repeat on every reconnect attempt: log at most one per 5 s.
    const t = Date.now();
    if (t - this.lastRedisError < 5000) return;
    this.lastRedisError = t;
    this.log.warn({ err: err.message }, 'Redis connection error');
  }

  // --- lifecycle -----------------------------------------------------------------------

  async init(): Promise<void> {
    if (this.initialized) return;
    if (this.redis.status === 'wait' || this.redis.status === 'end') {
      try {
        await this.redis.connect();
      } catch (err) {
        throw new StorageUnavailableError('Redis is unreachable', err);
      }
    }
    if (this.opts.migrate !== false) await migrate(this.opts.databaseUrl, this.schema);
    await this.r('init', () => this.scripts.preload(this.redis));
    const nodes = masterNodes(this.redis);
    for (const node of nodes) {
      const warning = await persistenceWarning(node);
      if (!warning) continue;
      const where = nodes.length > 1 ? ` (cluster node ${nodeAddress(node)})` : '';
      this.log.warn({ redis: 'persistence' }, `DURABILITY WARNING: ${warning}${where}`);
    }
    if (this.opts.flusher !== false) {
      const conn = await readerClient(this.redis, 10_000);
      conn.on('error', (err: Error) => this.redisError(err));
      this.flusher = new StreamFlusher({
        conn,
        stream: this.keys.flush,
        group: FLUSH_GROUP,
        consumer: `flusher-${randomUUID()}`,
        flush: async (members) => {
          await Promise.all(members.map((m) => this.committer.flush(m)));
        },
        onError: (err) => this.log.warn({ err: String(err) }, 'journal flush failed; will retry'),
        claimIdleMs: 30_000,
        blockMs: 1000,
      });
      this.flusher.start();
    }
    this.initialized = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // This ingress's watermark entry goes: it receives nothing more.
    const leaving = this.intake?.close();
    if (leaving) await this.followUp([leaving]);
    this.scheduler?.close();
    if (this.reaperTimer) clearInterval(this.reaperTimer);
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    await this.reaping;
    await this.purging;
    await this.flusher?.stop(this.redis);
    await this.committer.drain();
    await this.statsFeed.settled();
    this.sub?.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
    await this.pg.close();
  }

  async health(): Promise<Record<string, boolean>> {
    // Every master must answer: on a cluster, each one serves a share of the sessions.
    const nodes = masterNodes(this.redis);
    const redis = Promise.all(nodes.map((n) => n.ping()))
      .then((p) => p.length > 0 && p.every((x) => x === 'PONG'))
      .catch(() => false);
    return { redis: await redis, postgres: await this.pg.ping() };
  }

  /** Group-commit and flush counters, for tests and benchmarks. */
  diagnostics(): { groups: number; flushRequests: number; pgTransactions: number; pgEntries: number } {
    return {
      groups: this.committer.groups,
      flushRequests: this.committer.requests,
      pgTransactions: this.pg.applyTransactions,
      pgEntries: this.pg.appliedEntries,
    };
  }

  // --- Redis helpers -------------------------------------------------------------------

  /** Runs a Redis operation, turning "Redis is not there" into StorageUnavailableError. */
  private async r<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isRedisUnavailable(err)) throw new StorageUnavailableError(`Redis is unavailable (${what})`, err);
      throw err;
    }
  }

  private run(
    what: string,
    op: { script: ScriptName; keys: readonly string[]; args: readonly Arg[] },
  ): Promise<unknown> {
    const post = this.piggyback();
    if (post !== null) return this.pipeline(what, [op], [post]).then((replies) => replies[0]);
    return this.r(what, () => this.scripts.run(this.redis, op.script, op.keys, op.args));
  }

  /** `after`: notices that must reach Redis after `ops` (see ScriptSet.pipeline). */
  private pipeline(
    what: string,
    ops: readonly PipelineOp[],
    after: readonly PipelineOp[] = [],
  ): Promise<unknown[]> {
    const post = this.piggyback();
    if (post === null) return this.r(what, () => this.scripts.pipeline(this.redis, ops, after));
    // The post's own reply is not the caller's business.
    return this.r(what, () => this.scripts.pipeline(this.redis, ops, [...after, post])).then((replies) =>
      replies.slice(0, -1),
    );
  }

  /**
   * Queued stats posts, to send with the command about to go (single node: same round trip,
   * so they cost none). On a cluster they would wait for the command's answer: they go alone.
   */
  private piggyback(): PipelineOp | null {
    return this.opts.cluster === true ? null : this.statsFeed.take();
  }

  private scheduleOps(
    schedules: ReadonlyArray<readonly [member: string, due: number]>,
    nx = false,
  ): PipelineOp[] {
    const ops: PipelineOp[] = schedules.map(([member, due]) => ({
      command: 'ZADD',
      args: nx ? [this.keys.ready, 'NX', due, member] : [this.keys.ready, due, member],
    }));
    if (ops.length > 0) ops.push({ command: 'PUBLISH', args: [this.keys.wake, '1'] });
    return ops;
  }

  private notifyOps(members: Iterable<string>): PipelineOp[] {
    return [...new Set(members)].map((m) => ({
      command: 'XADD',
      args: [this.keys.flush, 'MAXLEN', '~', 100_000, '*', 'm', m],
    }));
  }

  /**
   * Follow-up writes to global keys (ready queue, wake channel, flush stream). Losing them
   * delays work but loses nothing (flag expiry and the reaper repair it), so a failure is logged.
   */
  private async followUp(ops: readonly PipelineOp[]): Promise<void> {
    if (ops.length === 0) return;
    try {
      await this.scripts.pipeline(this.redis, ops);
    } catch (err) {
      this.log.warn({ err: String(err) }, 'ready-queue/flush follow-up failed; the reaper will repair it');
    }
  }

  private watchdogScore(ttlMs: number): string {
    return `${Math.ceil(this.now() + ttlMs + this.leaseGraceMs)}.5`;
  }

  // --- intake --------------------------------------------------------------------------

  async ingest(batch: WebhookBatch): Promise<IngestResult> {
    const now = Math.min(this.now(), batch.receivedAt ?? Number.POSITIVE_INFINITY);
    const ops: PipelineOp[] = [];
    for (const m of batch.messages) {
      const sk = this.keys.session(m);
      const stored = JSON.stringify({ ...m, storedAt: now });
      ops.push({
        script: 'intake',
        keys: [sk.seen(m.id), sk.mbox, sk.msgs, sk.seq, sk.lock, sk.sched, sk.pv],
        args: [m.id, stored.slice(0, -1), this.opts.dedupeTtlSec, this.opts.bufferMs, '0'],
      });
    }
    for (const s of batch.statuses) {
      const key = { channel: s.channel, user: s.recipient };
      const sk = this.keys.session(key);
      const err = s.errors?.[0];
      const lastError =
        s.status === 'failed' && err ? `${err.code}: ${err.message ?? err.title ?? ''}`.trim() : '';
      ops.push({
        script: 'outbound-update',
        keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal],
        args: [
          'pmid',
          s.messageId,
          s.status,
          '',
          '',
          lastError,
          entryPrefix({ id: randomUUID(), t: 'o', ...key }),
        ],
      });
    }
    // This ingress's intake watermark rides first (before the messages it may be about to store).
    const watermark = this.intake?.take();
    const replies = (await this.pipeline('ingest', watermark ? [watermark, ...ops] : ops)).slice(
      watermark ? 1 : 0,
    );

    let accepted = 0;
    let duplicates = 0;
    let statuses = 0;
    const schedules: Array<[string, number]> = [];
    const figures = new Map<string, MailboxFigures>();
    batch.messages.forEach((m, i) => {
      const reply = asArray(replies[i]);
      const code = asNumber(reply[0]);
      if (code === ScriptCode.Duplicate) {
        duplicates++;
        return;
      }
      accepted++;
      const member = this.keys.member(m);
      if (code > 0) schedules.push([member, code]);
      const f = figuresAt(member, reply, 1);
      if ((figures.get(member)?.version ?? -1) < f.version) figures.set(member, f);
    });
    const journaled: string[] = [];
    const unknown: number[] = [];
    batch.statuses.forEach((s, i) => {
      const reply = asArray(replies[batch.messages.length + i]);
      if (asNumber(reply[0]) === ScriptCode.NotFound) unknown.push(i);
      else {
        statuses++;
        journaled.push(this.keys.member({ channel: s.channel, user: s.recipient }));
      }
    });
    // Status changes reach PostgreSQL through the flusher, in both modes: a PostgreSQL outage
    // must not make intake answer 503 (Redis holds them in the journal meanwhile).
    const post = this.statsFeed.op(figures.values());
    await this.followUp([
      ...this.scheduleOps(schedules),
      ...this.notifyOps(journaled),
      ...(post ? [post] : []),
    ]);
    for (const i of unknown) {
      const s = batch.statuses[i]!;
      const err = s.errors?.[0];
      const lastError =
        s.status === 'failed' && err ? `${err.code}: ${err.message ?? err.title ?? ''}`.trim() : null;
      const hit = await this.pg.statusByProviderId(s.messageId, s.status, lastError);
      if (!hit) continue;
      statuses++;
      // Keep Redis's copy (if any, e.g. under the user's other id) in step; PostgreSQL has it already.
      const sk = this.keys.session(hit.key);
      await this.run('status', {
        script: 'outbound-update',
        keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal],
        args: ['id', hit.id, s.status, '', '', lastError ?? '', ''],
      });
    }
    return { accepted, duplicates, statuses };
  }

  // --- scheduling ----------------------------------------------------------------------

  async nextReady(signal: AbortSignal): Promise<SessionKey | null> {
    const member = await this.ensureScheduler().next(signal);
    return member === null ? null : this.keys.parseMember(member);
  }

  private ensureScheduler(): ReadyScheduler {
    if (this.scheduler) return this.scheduler;
    const scheduler = new ReadyScheduler({
      claim: () => this.claim(),
      unclaim: async (member, claimScore) => {
        await this.run('unclaim', {
          script: 'ready-cas',
          keys: [this.keys.ready],
          args: [member, claimScore, Math.floor(this.now())],
        });
      },
      now: this.now,
      onError: (err) => this.log.warn({ err: String(err) }, 'nextReady: claim failed; retrying'),
      maxIdleMs: this.opts.maxIdleMs ?? 1000,
    });
    this.scheduler = scheduler;
    if (this.closed) scheduler.close();
    // Wake-ups from other processes; without them the scheduler still looks every maxIdleMs.
    const sub = subscriberClient(this.redis);
    sub.on('error', (err: Error) => this.redisError(err));
    sub.on('message', () => scheduler.wake());
    // A wake-up published before the subscription took effect would be missed: look once more
    // as soon as it has (and after every reconnect, which re-subscribes).
    sub.on('ready', () => scheduler.wake());
    sub
      .subscribe(this.keys.wake)
      .then(() => scheduler.wake())
      .catch((err: unknown) => this.log.warn({ err: String(err) }, 'wake subscription failed'));
    this.sub = sub;
    const interval = this.opts.reaperIntervalMs ?? 30_000;
    // A worker starting up takes stock at once: sessions left with pending messages or unsent
    // replies and no lease (nor ready entry) get scheduled.
    this.reaping = this.reapOnce(interval, { force: true })
      .then(
        () => undefined,
        (err: unknown) => this.log.warn({ err: String(err) }, 'start-up reaper pass failed'),
      )
      .finally(() => (this.reaping = null));
    if (interval > 0) {
      this.reaperTimer = setInterval(() => {
        this.reaping ??= this.reapOnce(interval)
          .then(
            () => undefined,
            (err: unknown) => this.log.warn({ err: String(err) }, 'reaper pass failed'),
          )
          .finally(() => (this.reaping = null));
      }, interval);
      this.reaperTimer.unref();
    }
    const purgeEvery = this.opts.purgeIntervalMs ?? 600_000;
    if (purgeEvery > 0) {
      this.purgeTimer = setInterval(() => {
        this.purging ??= this.purge({ lockMs: purgeEvery })
          .catch((err: unknown) => this.log.warn({ err: String(err) }, 'retention purge failed'))
          .finally(() => (this.purging = null));
      }, purgeEvery);
      this.purgeTimer.unref();
    }
    return scheduler;
  }

  private async claim(): Promise<ClaimResult> {
    const now = this.now();
    const claimScore = `${Math.ceil(now + this.claimTimeoutMs)}.25`;
    const reply = asArray(
      await this.run('claim', {
        script: 'ready-claim',
        keys: [this.keys.ready],
        args: [Math.floor(now), claimScore],
      }),
    );
    const member = asString(reply[0]);
    if (member !== '') {
      return { member, claimScore };
    }
    const earliest = asString(reply[1]);
    return { earliest: earliest === '' ? null : Number(earliest) };
  }

  /**
   * The liveness backstop, one process per interval: reschedules sessions that have pending
   * messages and neither a lease nor a ready entry (a crash between a script and its
   * follow-up), and re-announces journals that still owe PostgreSQL entries.
   * Scans every master of a cluster.
   */
  /**
   * Retention (see `../retention.ts`): deletes transitions, outbound records and inbound
   * messages past their retention from PostgreSQL, in batches. Workers run it every
   * `purgeIntervalMs` (10 min); with `lockMs`, only one process per interval does (a Redis
   * lock). Redis keeps no history: its outbound copies are capped per session and a session's
   * keys expire with it.
   */
  async purge(opts: { lockMs?: number } = {}): Promise<PurgeReport> {
    const report: PurgeReport = { transitions: 0, outbound: 0, inbound: 0, redacted: 0 };
    if (opts.lockMs !== undefined) {
      const got = await this.r('purge', () =>
        this.redis.set(this.keys.purge, randomUUID(), 'PX', Math.max(1000, opts.lockMs! - 100), 'NX'),
      );
      if (got !== 'OK') return report;
    }
    const now = this.now();
    const h = purgeHorizons(now, this.opts.dedupeTtlSec, this.opts);
    const messagesBefore = now - (this.opts.messageRetentionSec ?? DEFAULT_RETENTION_SEC) * 1000;
    const steps: Array<[StatementName, number, keyof PurgeReport]> = [
      ['retention-transitions-purge', h.transitions, 'transitions'],
      ['retention-outbound-purge', h.outbound, 'outbound'],
      ['retention-inbound-purge', messagesBefore, 'inbound'],
    ];
    for (const [statement, before, field] of steps) {
      for (;;) {
        if (this.closed) return report;
        const n = await this.pg.execute(statement, [new Date(before), PURGE_BATCH]);
        report[field] += n;
        if (n < PURGE_BATCH) break;
        await yieldToLoop();
      }
    }
    return report;
  }

  async reapOnce(
    intervalMs = 30_000,
    opts: { force?: boolean } = {},
  ): Promise<{ rescheduled: number; journals: number }> {
    const ttl = Math.max(1000, intervalMs - 100);
    const got = await this.r('reaper', () =>
      opts.force
        ? this.redis.set(this.keys.reaper, randomUUID(), 'PX', ttl)
        : this.redis.set(this.keys.reaper, randomUUID(), 'PX', ttl, 'NX'),
    );
    if (got !== 'OK') return { rescheduled: 0, journals: 0 };
    let rescheduled = 0;
    let journals = 0;
    const now = Math.floor(this.now());
    for await (const members of this.scanMembers(['mbox', 'unsent'])) {
      const ops: PipelineOp[] = members.map((m) => {
        const sk = this.keys.forMember(m);
        return {
          script: 'reap',
          keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
          args: [this.opts.bufferMs, now, UNSENT_RETRY_MS],
        };
      });
      const replies = await this.pipeline('reap', ops);
      const schedules = members.flatMap((m, i): Array<[string, number]> => {
        const due = asNumber(replies[i]);
        return due > 0 ? [[m, due]] : [];
      });
      rescheduled += schedules.length;
      await this.followUp(this.scheduleOps(schedules, true));
    }
    for await (const members of this.scanMembers(['journal'])) {
      journals += members.length;
      await this.followUp(this.notifyOps(members));
    }
    return { rescheduled, journals };
  }

  /** Members of the sessions having one of these keys, in pages, each member once. */
  private async *scanMembers(kinds: ReadonlyArray<'mbox' | 'unsent' | 'journal'>): AsyncGenerator<string[]> {
    const seen = new Set<string>();
    for (const kind of kinds) {
      for (const node of masterNodes(this.redis)) yield* this.scanNode(node, kind, seen);
    }
  }

  private async *scanNode(
    node: Redis,
    kind: 'mbox' | 'unsent' | 'journal',
    seen: Set<string>,
  ): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const [next, found] = await this.r('scan', () =>
        node.scan(cursor, 'MATCH', this.keys.scanPattern(kind), 'COUNT', 1000),
      );
      cursor = next;
      const members = found
        .map((k) => this.keys.memberOf(k))
        .filter((m): m is string => m !== null && !seen.has(m));
      for (const m of members) seen.add(m);
      if (members.length > 0) yield members;
    } while (cursor !== '0');
  }

  // --- leases --------------------------------------------------------------------------

  async acquireLease(key: SessionKey, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    const sk = this.keys.session(key);
    // The holder rides in the token (compared whole), so the dashboard can say who holds it.
    const token = `${randomUUID()}~${holder}`;
    const acquire = (base: Arg, ceiling: Arg): PipelineOp => ({
      script: 'lease-acquire',
      keys: [sk.lock, sk.fence, sk.sched],
      args: [token, ttlMs, base, ceiling],
    });
    // The grant's watchdog entry rides in the same round trip: a granted lease needs it, and in
    // the rare other cases it is put right below.
    let wd = this.watchdogScore(ttlMs);
    const watchdog = (): PipelineOp => ({ command: 'ZADD', args: [this.keys.ready, wd, sk.member] });
    // So is its entry among the leases held (by token; taken out again if not granted).
    const held = (): PipelineOp => ({ command: 'ZADD', args: [this.keys.leases, wd, token] });
    let reply = asArray((await this.pipeline('acquire', [acquire('', ''), watchdog(), held()]))[0]);
    if (asNumber(reply[0]) === ScriptCode.NeedFenceBlock) {
      // A session new to this Redis (or to this Redis's lifetime): reserve fences and fetch
      // its PostgreSQL row in one go, and put the row (or a tombstone) in Redis with the grant.
      const { ceiling, session } = await this.pg.reserveFenceBlock(key, this.fenceBlockSize);
      wd = this.watchdogScore(ttlMs);
      const ops = [acquire(ceiling - this.fenceBlockSize, ceiling), watchdog(), held()];
      if (!session) ops.push(this.restoreOp(sk, null, []));
      reply = asArray((await this.pipeline('acquire', ops))[0]);
      if (session && asNumber(reply[0]) > 0) await this.restore(key, sk, session);
    }
    const code = asNumber(reply[0]);
    if (code === ScriptCode.Locked) {
      // Someone holds it: turn our entry into that holder's watchdog (unless it changed meanwhile).
      const holderWd = this.watchdogScore(asNumber(reply[1]));
      await this.followUp([
        { script: 'ready-cas', keys: [this.keys.ready], args: [sk.member, wd, holderWd] },
        { command: 'ZREM', args: [this.keys.leases, token] },
      ]);
      return null;
    }
    if (code < 0) {
      await this.followUp([{ command: 'ZREM', args: [this.keys.leases, token] }]);
      throw new Error(`lease-acquire returned ${scriptCodeName(code)}`);
    }
    this.watchdogs.set(token, wd);
    return { channel: key.channel, user: key.user, token, fence: code, holder };
  }

  async renewLease(lease: LeaseGrant, ttlMs: number): Promise<boolean> {
    const sk = this.keys.session(lease);
    const code = asNumber(
      await this.run('renew', { script: 'lease-renew', keys: [sk.lock], args: [lease.token, ttlMs] }),
    );
    const old = this.watchdogs.get(lease.token);
    if (code !== 1) {
      this.watchdogs.delete(lease.token);
      await this.followUp([{ command: 'ZREM', args: [this.keys.leases, lease.token] }]);
      return false;
    }
    const wd = this.watchdogScore(ttlMs);
    const ops: PipelineOp[] = [{ command: 'ZADD', args: [this.keys.leases, 'XX', wd, lease.token] }];
    if (old !== undefined)
      ops.push({ script: 'ready-cas', keys: [this.keys.ready], args: [sk.member, old, wd] });
    const replies = await this.pipeline('renew', ops);
    if (old !== undefined) {
      if (asNumber(replies[1]) === 1) this.watchdogs.set(lease.token, wd);
      else this.watchdogs.delete(lease.token);
    }
    return true;
  }

  async releaseLease(lease: LeaseGrant): Promise<void> {
    const sk = this.keys.session(lease);
    this.prefetched.delete(sk.member);
    this.unsentAfterCommit.delete(sk.member);
    const wd = this.watchdogs.get(lease.token);
    this.watchdogs.delete(lease.token);
    // Our watchdog entry goes in the same round trip (compare-and-delete: an entry rescheduled
    // meanwhile by intake has another score and stays).
    const ops: PipelineOp[] = [
      {
        script: 'lease-release',
        keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
        args: [lease.token, this.opts.bufferMs, Math.floor(this.now()), UNSENT_RETRY_MS],
      },
    ];
    if (wd !== undefined)
      ops.push({ script: 'ready-cas', keys: [this.keys.ready], args: [sk.member, wd, ''] });
    ops.push(this.idleOp(sk));
    ops.push({ command: 'ZREM', args: [this.keys.leases, lease.token] });
    const due = asNumber((await this.pipeline('release', ops))[0]);
    if (due > 0) await this.followUp(this.scheduleOps([[sk.member, due]]));
    else if (due === ScriptCode.Fenced && wd !== undefined) {
      // The lease had expired: if nobody took it, the watchdog we just removed was what would
      // bring the session back. Put it back as due now (NX: a newer entry wins).
      await this.followUp(this.scheduleOps([[sk.member, Math.floor(this.now())]], true));
    }
  }

  /** The `session-idle` call for `sk`: its keys expire once it is idle (see the script). */
  private idleOp(sk: SessionKeys): PipelineOp {
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
      ],
      args: [this.idleTtlMs, 2 * TOMBSTONE_MS],
    };
  }

  async clearLease(key: SessionKey): Promise<boolean> {
    const sk = this.keys.session(key);
    // The token read just before the clear is the one it drops (same connection, in order).
    const [token, reply] = await this.pipeline('clear', [
      { command: 'GET', args: [sk.lock] },
      {
        script: 'lease-clear',
        keys: [sk.lock, sk.mbox, sk.msgs, sk.sched, sk.unsent],
        args: [this.opts.bufferMs, Math.floor(this.now()), UNSENT_RETRY_MS],
      },
    ]);
    const due = asNumber(reply);
    if (due === ScriptCode.NotFound) return false;
    await this.followUp([
      ...(due > 0 ? this.scheduleOps([[sk.member, due]]) : []),
      ...(token !== null ? [{ command: 'ZREM', args: [this.keys.leases, asString(token)] }] : []),
    ]);
    return true;
  }

  // --- mailbox and state ---------------------------------------------------------------

  async pending(key: SessionKey, limit: number): Promise<StoredMessage[]> {
    const sk = this.keys.session(key);
    const op: PipelineOp = { script: 'pending', keys: [sk.mbox, sk.msgs, sk.pv], args: [limit] };
    // Called with a lease (the engine's turn): the state comes in the same round trip, for the
    // `load` that follows when there is something to do.
    const token = 'token' in key && typeof key.token === 'string' ? key.token : null;
    // So do the intake watermarks, read just before the mailbox (see intake-watermark.ts).
    const watermark = token === null ? null : (this.intake?.beforeRead() ?? null);
    let replies =
      token === null
        ? [await this.run('pending', op), null]
        : await this.pipeline('pending', [
            ...(watermark ? [watermark.op] : []),
            op,
            { command: 'HMGET', args: [sk.state, 's', 'v'] },
          ]);
    if (watermark) {
      this.intake!.afterRead(key, watermark, replies[0]);
      replies = replies.slice(1);
    }
    const [raw, state] = replies;
    const reply = asArray(raw);
    // The worker reading a mailbox posts its figures again: repairs a post lost in a crash.
    this.statsFeed.post(figuresAt(sk.member, reply, 0), true);
    const messages = reply.slice(3).map((j) => JSON.parse(asString(j)) as StoredMessage);
    if (token !== null && messages.length > 0) {
      const [s, v] = asArray(state).map((x) => (x === null ? null : asString(x)));
      if (s !== null || v !== null) this.prefetched.set(sk.member, { token, s: s ?? null, v: v ?? null });
    }
    return messages;
  }

  async load(key: SessionKey): Promise<SessionSnapshot | null> {
    const sk = this.keys.session(key);
    const pre = this.prefetched.get(sk.member);
    if (pre !== undefined) {
      this.prefetched.delete(sk.member);
      // Only the lease holder writes the state, and its commit checks the version anyway.
      if ('token' in key && key.token === pre.token) {
        if (pre.s !== null) return JSON.parse(pre.s) as SessionSnapshot;
        return null; // tombstone: PostgreSQL has no such session either
      }
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const [s, v] = await this.r('load', () => this.redis.hmget(sk.state, 's', 'v'));
      if (s) return JSON.parse(s) as SessionSnapshot;
      if (v !== null) return null; // tombstone: PostgreSQL has no such session either
      await this.restore(key, sk);
    }
    throw new Error(`session ${sessionId(key)} could not be loaded`);
  }

  /**
   * Puts a session missing from Redis back from PostgreSQL (or a tombstone if it has none);
   * `row` when the caller has already read it.
   */
  private async restore(key: SessionKey, sk: SessionKeys, row?: StoredSession | null): Promise<void> {
    const stored = row !== undefined ? row : await this.pg.getSession(key);
    const unsent = stored ? await this.pg.outboundOf(key, true) : [];
    if (stored)
      this.log.info({ session: sessionId(key), version: stored.version }, 'session reloaded from PostgreSQL');
    await this.pipeline('restore', [this.restoreOp(sk, stored, unsent)]);
  }

  private restoreOp(
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

  async commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    const sk = this.keys.session(lease);
    this.prefetched.delete(sk.member); // read before this commit: stale after it
    const id = randomUUID();
    const outbound = batch.outbound.map((o) => splitOutbound(o, 1));
    const prefix = entryPrefix({
      id,
      t: 'c',
      channel: lease.channel,
      user: lease.user,
      fence: lease.fence,
      expectedVersion: batch.expectedVersion,
      at: this.now(),
      snapshot: batch.snapshot,
      records: batch.records,
      outbound,
      deadLetters: batch.deadLetters,
    });
    const consumed = [
      ...new Set([
        ...batch.consumed,
        ...batch.deadLetters.filter((d) => d.kind === 'inbound').map((d) => d.ref),
      ]),
    ];
    const args: Arg[] = [
      lease.token,
      lease.fence,
      batch.expectedVersion,
      batch.snapshot.version,
      JSON.stringify(batch.snapshot),
      prefix,
      this.outboundKeep,
      consumed.length,
      ...consumed,
      outbound.length,
    ];
    for (const o of outbound) {
      const unsent = o.state.status === 'pending' || o.state.status === 'sending';
      args.push(
        o.record.id,
        o.record.seq,
        JSON.stringify(o.record),
        JSON.stringify(o.state),
        unsent ? '1' : '0',
      );
    }
    const op: PipelineOp = {
      script: 'commit',
      keys: [
        sk.lock,
        sk.fence,
        sk.state,
        sk.mbox,
        sk.msgs,
        sk.out,
        sk.outState,
        sk.outIndex,
        sk.unsent,
        sk.pmid,
        sk.journal,
        sk.pv,
      ],
      args,
    };
    // Write-behind announces the journal in the same round trip (on a cluster, right after);
    // if the commit is refused, the flusher finds nothing new and moves on.
    const notice = this.writeThrough ? [] : this.notifyOps([sk.member]);
    // The replies left to send, read in the same round trip (right after the commit, in its slot):
    // the outbox asks for them next.
    const ops = [op, this.unsentOp(sk)];
    let replies = await this.pipeline('commit', ops, notice);
    let reply = asArray(replies[0]);
    if (asNumber(reply[0]) === ScriptCode.NeedLoad) {
      await this.restore(lease, sk);
      replies = await this.pipeline('commit', ops, notice);
      reply = asArray(replies[0]);
    }
    const code = asNumber(reply[0]);
    if (code === 0) this.unsentAfterCommit.set(sk.member, { token: lease.token, reply: replies[1] });
    if (code === ScriptCode.Fenced) throw new FencedError(sessionId(lease), lease.fence);
    if (code === ScriptCode.VersionConflict)
      throw new VersionConflictError(sessionId(lease), batch.expectedVersion);
    if (code !== 0) throw new Error(`commit returned ${scriptCodeName(code)}`);
    this.statsFeed.post(figuresAt(sk.member, reply, 2));
    this.rememberOutbound(batch.outbound);
    if (!this.writeThrough) return DURABLE;
    try {
      await this.makeDurable(lease, sk.member, id, lease.fence);
      return DURABLE;
    } catch (err) {
      // Applied and journaled in Redis; PostgreSQL takes its copy when it is back (the flusher
      // was told). The commit took effect: say so rather than fail it.
      if (!(err instanceof StorageUnavailableError)) throw err;
      this.log.warn({ session: sessionId(lease) }, 'commit applied in Redis; PostgreSQL copy pending');
      return JOURNALED;
    }
  }

  /**
   * Write-through: copies the session's journal to PostgreSQL (group commit), retrying for
   * `pgRetryMs`. If PostgreSQL stays away, the entry stays in the journal, the flusher is told,
   * and the caller gets StorageUnavailableError (the Redis part is applied; reload before retrying).
   */
  private async makeDurable(key: SessionKey, member: string, entryId: string, fence = 0): Promise<void> {
    const deadline = Date.now() + this.pgRetryMs;
    for (let delay = 50; ; delay *= 2) {
      try {
        const fenced = await this.committer.flush(member);
        if (fenced.has(entryId)) {
          this.log.error(
            { session: sessionId(key), fence },
            'PostgreSQL refused a commit: its row has a newer fence',
          );
          throw new FencedError(sessionId(key), fence);
        }
        return;
      } catch (err) {
        if (!(err instanceof StorageUnavailableError)) throw err;
        if (Date.now() + delay > deadline) {
          await this.followUp(this.notifyOps([member]));
          throw err;
        }
        await sleep(delay);
      }
    }
  }

  /** The group committer's work: copy these sessions' journals to PostgreSQL, then trim them. */
  private async copyJournals(members: readonly string[]): Promise<ReadonlySet<string>> {
    const fenced = new Set<string>();
    let todo = [...members];
    while (todo.length > 0) {
      const sks = todo.map((m) => this.keys.forMember(m));
      const pages = await this.pipeline(
        'journal read',
        sks.map((sk) => ({ command: 'LRANGE', args: [sk.journal, 0, JOURNAL_PAGE - 1] })),
      );
      const entries: JournalEntry[] = [];
      const trims: PipelineOp[] = [];
      const again: string[] = [];
      pages.forEach((page, i) => {
        const raw = asArray(page).map(asString);
        if (raw.length === 0) return;
        const parsed = raw.map((j) => JSON.parse(j) as JournalEntry);
        entries.push(...parsed);
        trims.push({ script: 'journal-trim', keys: [sks[i]!.journal], args: parsed.map((e) => e.id) });
        if (raw.length === JOURNAL_PAGE) again.push(todo[i]!);
      });
      if (entries.length === 0) break;
      for (const id of await this.pg.apply(entries)) fenced.add(id);
      // A session released before its journal reached PostgreSQL may now expire.
      const idle = pages.flatMap((p, k) => (asArray(p).length > 0 ? [this.idleOp(sks[k]!)] : []));
      await this.pipeline('journal trim', [...trims, ...idle]);
      todo = again;
    }
    return fenced;
  }

  /**
   * Read-your-writes for admin reads that span sessions: copies the journals of every session
   * still announced on the flush stream (entries stay there until a flusher has copied them).
   * Cheap when the flusher keeps up: the stream is then (nearly) empty.
   */
  private async barrier(): Promise<void> {
    const entries = await this.r('barrier', () =>
      this.redis.xrange(this.keys.flush, '-', '+', 'COUNT', 10_000),
    );
    const members = new Set(
      entries.map(([, fields]) => fields[1]).filter((m): m is string => typeof m === 'string'),
    );
    await Promise.all([...members].map((m) => this.committer.flush(m)));
  }

  /** Admin reads go to PostgreSQL: first copy whatever the session's journal still holds. */
  private async flushSession(key: SessionKey): Promise<void> {
    const sk = this.keys.session(key);
    const len = await this.r('journal', () => this.redis.llen(sk.journal));
    if (len > 0) await this.committer.flush(sk.member);
  }

  async resolvePrompts(
    key: SessionKey,
    providerMessageIds: readonly string[],
  ): Promise<Map<string, PromptRef>> {
    const found = new Map<string, PromptRef>();
    if (providerMessageIds.length === 0) return found;
    const sk = this.keys.session(key);
    const reply = asArray(
      await this.run('prompts', {
        script: 'outbound-read',
        keys: [sk.unsent, sk.out, sk.outState, sk.pmid],
        args: ['pmid', ...providerMessageIds],
      }),
    ).map(asString);
    const missing: string[] = [];
    providerMessageIds.forEach((pmid, i) => {
      const json = reply[i * 2]!;
      if (json === '') missing.push(pmid);
      else {
        const r = JSON.parse(json) as OutboundBodyRecord;
        if (r.isPrompt) found.set(pmid, { step: r.step, version: r.version });
      }
    });
    if (missing.length > 0) {
      for (const [pmid, r] of await this.pg.outboundByProviderIds(key, missing)) {
        if (r.isPrompt) found.set(pmid, { step: r.step, version: r.version });
      }
    }
    return found;
  }

  // --- outbox --------------------------------------------------------------------------

  /** The `outbound-read` call listing the session's unsent replies. */
  private unsentOp(sk: SessionKeys): PipelineOp {
    return { script: 'outbound-read', keys: [sk.unsent, sk.out, sk.outState, sk.pmid], args: ['unsent'] };
  }

  async unsent(key: SessionKey): Promise<OutboundRecord[]> {
    const sk = this.keys.session(key);
    const cached = this.unsentAfterCommit.get(sk.member);
    if (cached !== undefined) {
      this.unsentAfterCommit.delete(sk.member);
      // Read with the lease holder's commit, and only that holder changes them since.
      if ('token' in key && key.token === cached.token) {
        const records = this.parseUnsent(cached.reply);
        this.rememberOutbound(records);
        return records;
      }
    }
    const read = async (): Promise<OutboundRecord[]> =>
      this.parseUnsent((await this.pipeline('unsent', [this.unsentOp(sk)]))[0]);
    const records = await read();
    this.rememberOutbound(records);
    if (records.length > 0) return records;
    // Nothing unsent, or Redis lost the session: make sure it is loaded.
    if ((await this.r('unsent', () => this.redis.exists(sk.state))) === 1) return records;
    await this.load(key);
    const reloaded = await read();
    this.rememberOutbound(reloaded);
    return reloaded;
  }

  /** The records of an `outbound-read unsent` reply (pairs of record and state JSON). */
  private parseUnsent(raw: unknown): OutboundRecord[] {
    const reply = asArray(raw).map(asString);
    const out: OutboundRecord[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      if (reply[i] === '' || reply[i + 1] === '') continue;
      out.push(
        joinOutbound(JSON.parse(reply[i]!) as OutboundBodyRecord, JSON.parse(reply[i + 1]!) as OutboundState),
      );
    }
    return out;
  }

  /** Remembers which session an outbound id belongs to (records this process committed or read). */
  private rememberOutbound(records: readonly OutboundRecord[]): void {
    for (const r of records) {
      if (this.outboundSessions.size >= OUTBOUND_CACHE_MAX) {
        this.outboundSessions.delete(this.outboundSessions.keys().next().value!);
      }
      this.outboundSessions.set(r.id, { channel: r.channel, user: r.user });
    }
  }

  async updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    const apply = async (key: SessionKey): Promise<boolean> => {
      const sk = this.keys.session(key);
      this.unsentAfterCommit.delete(sk.member); // no longer as of the commit
      // Durable in Redis once this answers (journaled); PostgreSQL gets it from the flusher in
      // both modes, so that a PostgreSQL outage never makes the outbox take a done send for a
      // failed one. The notice rides in the same round trip, on a cluster right after (a miss
      // makes it a no-op).
      const [reply] = await this.pipeline(
        'outbound',
        [
          {
            script: 'outbound-update',
            keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal],
            args: [
              'id',
              id,
              patch.status,
              patch.attempts ?? '',
              patch.providerMessageId ?? '',
              patch.lastError ?? '',
              entryPrefix({ id: randomUUID(), t: 'o', channel: key.channel, user: key.user }),
            ],
          },
        ],
        this.notifyOps([sk.member]),
      );
      return asNumber(asArray(reply)[0]) !== ScriptCode.NotFound;
    };
    const cached = this.outboundSessions.get(id);
    const candidates = cached ? [cached] : outboundIdCandidates(id);
    for (const key of candidates) if (await apply(key)) return;
    // Redis no longer keeps this record (or the id says nothing): PostgreSQL knows its session.
    const stored = await this.pg.getOutbound(id);
    if (!stored) return;
    const key = { channel: stored.channel, user: stored.user };
    if (await apply(key)) return;
    const sk = this.keys.session(key);
    const unsent = stored.state.status === 'pending' || stored.state.status === 'sending';
    await this.run('outbound', {
      script: 'outbound-restore',
      keys: [sk.out, sk.outState, sk.outIndex, sk.unsent],
      args: [id, stored.seq, JSON.stringify(stored.record), JSON.stringify(stored.state), unsent ? '1' : '0'],
    });
    await apply(key);
  }

  async deadLetter(letter: DeadLetter): Promise<void> {
    await this.pg.insertDeadLetters([letter]);
  }

  // --- admin ---------------------------------------------------------------------------

  async findSessions(user: string, channel?: string): Promise<SessionSnapshot[]> {
    await this.barrier();
    const found = await this.pg.findSessions(user, channel);
    // Redis is ahead of PostgreSQL in write-behind mode: prefer its snapshot.
    return Promise.all(found.map(async (s) => (await this.load(s)) ?? s));
  }

  async listSessions(
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
    await this.barrier();
    const rows = await this.pg.listSessions({
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

  async transitions(key: SessionKey): Promise<TransitionRecord[]> {
    await this.flushSession(key);
    return this.pg.transitions(key);
  }

  async outbound(key: SessionKey): Promise<OutboundRecord[]> {
    await this.flushSession(key);
    return this.pg.outboundRecords(key);
  }

  async listDeadLetters(limit: number): Promise<DeadLetter[]> {
    await this.barrier();
    return this.pg.listDeadLetters(limit);
  }

  async replayDeadLetter(id: string): Promise<boolean> {
    await this.barrier();
    const letter = await this.pg.getDeadLetter(id);
    if (!letter || letter.replayedAt !== undefined) return false;
    const key = { channel: letter.channel, user: letter.user };
    if (letter.kind === 'inbound') {
      const stored = (await this.pg.inboundMessage(key, letter.ref)) ?? letter.payload;
      if (!isStoredMessageLike(stored)) return false;
      const { seq: _seq, storedAt: _storedAt, ...message } = stored;
      const sk = this.keys.session(key);
      const json = JSON.stringify({ ...message, storedAt: this.now() });
      const reply = asArray(
        await this.run('replay', {
          script: 'intake',
          keys: [sk.seen(message.id), sk.mbox, sk.msgs, sk.seq, sk.lock, sk.sched, sk.pv],
          args: [message.id, json.slice(0, -1), this.opts.dedupeTtlSec, this.opts.bufferMs, '1'],
        }),
      );
      const due = asNumber(reply[0]);
      if (due !== ScriptCode.Duplicate) {
        const post = this.statsFeed.op([figuresAt(sk.member, reply, 1)]);
        await this.followUp([
          ...(due > 0 ? this.scheduleOps([[sk.member, due]]) : []),
          ...(post ? [post] : []),
        ]);
      }
    } else {
      const record = await this.pg.getOutbound(letter.ref);
      if (!record) return false;
      await this.updateOutbound(letter.ref, { status: 'pending', attempts: 0 });
    }
    return this.pg.markReplayed(id, this.now());
  }

  /**
   * Costs the same whatever is stored or queued: the pending figures are kept by the intake,
   * commit and pending scripts' posts (see stats-feed.ts), the leases held by the lease calls;
   * one round trip reads them (plus one indexed count of dead letters in PostgreSQL).
   */
  async stats(): Promise<BackendStats> {
    await this.statsFeed.settled();
    const now = this.now();
    const [depth, oldest, locks, workers] = await this.pipeline('stats', [
      { command: 'GET', args: [this.keys.pendingDepth] },
      { command: 'ZRANGE', args: [this.keys.pendingOldest, 0, 0, 'WITHSCORES'] },
      { command: 'ZCOUNT', args: [this.keys.leases, `(${now + this.leaseGraceMs}`, '+inf'] },
      { command: 'ZCOUNT', args: [this.keys.workers, `(${now}`, '+inf'] },
    ]);
    // [member, score], or [[member, score]] over RESP3.
    const top = asArray(oldest);
    const first = Array.isArray(top[0]) ? (top[0] as unknown[]) : top;
    return {
      queueDepth: Math.max(0, depth === null ? 0 : asNumber(depth)),
      oldestPendingMs: first.length < 2 ? 0 : Math.max(0, now - asNumber(first[1])),
      locksHeld: asNumber(locks),
      deadLetters: await this.pg.countDeadLetters(),
      workers: asNumber(workers),
    };
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<void> {
    const now = this.now();
    await this.r('heartbeat', () =>
      Promise.all([
        this.redis
          .multi()
          .zadd(this.keys.workers, now + ttlMs, workerId)
          .zremrangebyscore(this.keys.workers, '-inf', now)
          .exec(),
        // Entries of leases whose holder died without releasing them: long expired, dropped.
        this.redis.zremrangebyscore(this.keys.leases, '-inf', now - 60_000),
      ]),
    );
  }

  async removeWorker(workerId: string): Promise<void> {
    await this.r('removeWorker', () => this.redis.zrem(this.keys.workers, workerId));
  }

  async inbound(key: SessionKey): Promise<StoredMessage[]> {
    // Consumed ones are in PostgreSQL (once the journal is copied), pending ones in the mailbox.
    await this.flushSession(key);
    const [done, pending] = await Promise.all([this.pg.inboundOf(key), this.pending(key, 10_000)]);
    const byId = new Map<string, StoredMessage>();
    for (const m of [...done, ...pending]) byId.set(m.id, m);
    return [...byId.values()].sort((a, b) => a.storedAt - b.storedAt || a.seq - b.seq);
  }

  async leaseInfo(key: SessionKey): Promise<LeaseInfo | null> {
    const sk = this.keys.session(key);
    const [token, pttl] = await this.r('lease', () =>
      Promise.all([this.redis.get(sk.lock), this.redis.pttl(sk.lock)]),
    );
    if (token === null || pttl <= 0) return null;
    const at = token.indexOf('~');
    return { holder: at >= 0 ? token.slice(at + 1) : null, expiresAt: this.now() + pttl };
  }
}
