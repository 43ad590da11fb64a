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
 *   token ever granted (see scripts/lease-acquire-7.lua).
 * - Commits are checked and applied atomically in Redis (token, fence, version), and in the
 *   same script appended to the session's journal. `write-through` then copies the journal to
 *   PostgreSQL through the group committer before `commit` resolves; `write-behind` leaves it
 *   to the stream flusher. PostgreSQL refuses a write whose fence is older than the row's.
 *
 * Each role lives in its own module, a function of one shared {@link Context} (context.ts):
 * intake.ts, scheduling.ts, leases.ts, mailbox.ts (pending, load, restore), commit.ts (and the
 * journal copy to PostgreSQL), outbox.ts, admin-reads.ts, maintenance.ts (reaper, purge, idle
 * expiry) and lifecycle.ts; redis-calls.ts is how they all reach Redis. This class only builds
 * the context and delegates.
 * @module
 */
import type { SessionKey, StoredMessage, WebhookBatch } from '../../model/message.ts';
import type {
  DeadLetter,
  OutboundRecord,
  PromptRef,
  SessionSnapshot,
  TransitionRecord,
} from '../../model/session.ts';
import type { PurgeReport } from '../retention.ts';
import type {
  Backend,
  AlertStore,
  BackendStats,
  BatchCommit,
  ClearedLease,
  CommitResult,
  DeadLetterCursor,
  FailedReply,
  IngestResult,
  LeaseGrant,
  LeaseInfo,
  OutboundPatch,
  OutboundUpdate,
  SessionCount,
  SessionQuery,
  ServedFlow,
} from '../types.ts';
import * as adminReads from './admin-reads.ts';
import * as commits from './commit.ts';
import { createContext, type Context } from './context.ts';
import * as intake from './intake.ts';
import * as leases from './leases.ts';
import * as lifecycle from './lifecycle.ts';
import * as mailbox from './mailbox.ts';
import * as maintenance from './maintenance.ts';
import type { DistributedBackendOptions } from './options.ts';
import * as outbox from './outbox.ts';
import * as scheduling from './scheduling.ts';
import type { GlobalFeed } from './global-feed.ts';

export { migrate } from './migrate.ts';
export type { BackendLogger, DistributedBackendOptions } from './options.ts';

export class DistributedBackend implements Backend {
  readonly kind = 'distributed' as const;

  private readonly ctx: Context;

  constructor(options: DistributedBackendOptions) {
    this.ctx = createContext(options, commits.copyJournals);
  }

  /**
   * Intake watermarks across ingress and worker processes (intake-watermark.ts); none with
   * `bufferMs` 0.
   */
  get intake(): Context['intake'] {
    return this.ctx.intake;
  }

  /** The schema migrations this process applied when it started (empty: the schema was up to date). */
  get migrationsApplied(): readonly string[] {
    return this.ctx.migrationsApplied ?? [];
  }

  /** Redis's clock, which every process of the deployment shares (store-clock.ts). */
  get clock(): () => number {
    return this.ctx.now;
  }

  /** Shared by every process of the deployment (see alerts-lead-1.lua). */
  readonly alerts: AlertStore = {
    lead: (id, ttlMs) => adminReads.alertsLead(this.ctx, id, ttlMs),
    firing: () => adminReads.alertsFiring(this.ctx),
    setFiring: (alert, firing, at) => adminReads.setAlertFiring(this.ctx, alert, firing, at),
  };

  /** The global feed (tests queue stats posts on it). */
  private get globalFeed(): GlobalFeed {
    return this.ctx.globalFeed;
  }

  // --- lifecycle -----------------------------------------------------------------------

  init(): Promise<void> {
    return lifecycle.init(this.ctx);
  }

  close(): Promise<void> {
    return lifecycle.close(this.ctx);
  }

  health(): Promise<Record<string, boolean>> {
    return lifecycle.health(this.ctx);
  }

  /** Group-commit and flush counters, for tests and benchmarks. */
  diagnostics(): { groups: number; flushRequests: number; pgTransactions: number; pgEntries: number } {
    return lifecycle.diagnostics(this.ctx);
  }

  // --- intake --------------------------------------------------------------------------

  ingest(batch: WebhookBatch): Promise<IngestResult> {
    return intake.ingest(this.ctx, batch);
  }

  countStored(n: number): void {
    this.ctx.rate.add(n);
  }

  // --- scheduling ----------------------------------------------------------------------

  nextReady(signal: AbortSignal): Promise<SessionKey | null> {
    return scheduling.nextReady(this.ctx, signal);
  }

  // --- leases --------------------------------------------------------------------------

  acquireLease(key: SessionKey, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    return leases.acquireLease(this.ctx, key, holder, ttlMs);
  }

  wantLease(key: SessionKey, ttlMs: number): Promise<void> {
    return leases.wantLease(this.ctx, key, ttlMs);
  }

  leaseWanted(key: SessionKey): Promise<boolean> {
    return leases.leaseWanted(this.ctx, key);
  }

  renewLease(lease: LeaseGrant, ttlMs: number): Promise<boolean> {
    return leases.renewLease(this.ctx, lease, ttlMs);
  }

  releaseLease(lease: LeaseGrant, notBeforeMs?: number, first?: boolean): Promise<void> {
    return leases.releaseLease(this.ctx, lease, notBeforeMs, first);
  }

  releaseOrTake(lease: LeaseGrant, limit: number, sent?: OutboundUpdate): Promise<StoredMessage[] | null> {
    return leases.releaseOrTake(this.ctx, lease, limit, sent);
  }

  clearLease(key: SessionKey): Promise<boolean> {
    return leases.clearLease(this.ctx, key);
  }

  leaseCleared(key: SessionKey): Promise<ClearedLease | null> {
    return leases.leaseCleared(this.ctx, key);
  }

  holderAlive(holder: string): Promise<boolean> {
    return leases.holderAlive(this.ctx, holder);
  }

  // --- mailbox and state ---------------------------------------------------------------

  pending(key: SessionKey, limit: number): Promise<StoredMessage[]> {
    return mailbox.pending(this.ctx, key, limit);
  }

  load(key: SessionKey): Promise<SessionSnapshot | null> {
    return mailbox.load(this.ctx, key);
  }

  commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    return commits.commit(this.ctx, lease, batch);
  }

  // --- outbox --------------------------------------------------------------------------

  resolvePrompts(key: SessionKey, providerMessageIds: readonly string[]): Promise<Map<string, PromptRef>> {
    return outbox.resolvePrompts(this.ctx, key, providerMessageIds);
  }

  sendable(key: SessionKey): Promise<boolean> {
    return commits.sendable(this.ctx, key);
  }

  unsent(key: SessionKey): Promise<OutboundRecord[]> {
    return outbox.unsent(this.ctx, key);
  }

  updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    return outbox.updateOutbound(this.ctx, id, patch);
  }

  claimOutbound(lease: LeaseGrant, ids: readonly string[], delta: 1 | -1): Promise<Array<number | null>> {
    return outbox.claimOutbound(this.ctx, lease, ids, delta);
  }

  deadLetter(letter: DeadLetter): Promise<void> {
    return outbox.deadLetter(this.ctx, letter);
  }

  // --- admin ---------------------------------------------------------------------------

  findSessions(user: string, channel?: string): Promise<SessionSnapshot[]> {
    return adminReads.findSessions(this.ctx, user, channel);
  }

  listSessions(query: SessionQuery): Promise<{ sessions: SessionSnapshot[]; nextCursor: string | null }> {
    return adminReads.listSessions(this.ctx, query);
  }

  countSessions(activeSinceMs?: number): Promise<SessionCount[]> {
    return adminReads.countSessions(this.ctx, activeSinceMs);
  }

  transitions(key: SessionKey, newest?: number): Promise<TransitionRecord[]> {
    return adminReads.transitions(this.ctx, key, newest);
  }

  outbound(key: SessionKey, newest?: number): Promise<OutboundRecord[]> {
    return adminReads.outbound(this.ctx, key, newest);
  }

  failedReplies(limit: number): Promise<FailedReply[]> {
    return adminReads.failedReplies(this.ctx, limit);
  }

  listDeadLetters(limit: number, after?: DeadLetterCursor): Promise<DeadLetter[]> {
    return adminReads.listDeadLetters(this.ctx, limit, after);
  }

  getDeadLetter(id: string): Promise<DeadLetter | null> {
    return adminReads.getDeadLetter(this.ctx, id);
  }

  replayDeadLetter(id: string): Promise<boolean> {
    return adminReads.replayDeadLetter(this.ctx, id);
  }

  stats(): Promise<BackendStats> {
    return adminReads.stats(this.ctx);
  }

  heartbeat(workerId: string, ttlMs: number, serves: readonly ServedFlow[] = []): Promise<void> {
    return adminReads.heartbeat(this.ctx, workerId, ttlMs, serves);
  }

  holderBeat(processId: string, ttlMs: number, stops = false): Promise<void> {
    return adminReads.holderBeat(this.ctx, processId, ttlMs, stops);
  }

  flowServedUntil(id: string, version: number): Promise<number> {
    return adminReads.flowServedUntil(this.ctx, id, version);
  }

  liveFlows(): Promise<ReadonlyMap<string, readonly ServedFlow[]>> {
    return adminReads.liveFlows(this.ctx);
  }

  removeWorker(workerId: string): Promise<void> {
    return adminReads.removeWorker(this.ctx, workerId);
  }

  revokeSignIn(id: string, untilMs: number): Promise<void> {
    return adminReads.revokeSignIn(this.ctx, id, untilMs);
  }

  signInRevoked(id: string): Promise<boolean> {
    return adminReads.signInRevoked(this.ctx, id);
  }

  inbound(key: SessionKey, newest?: number): Promise<StoredMessage[]> {
    return adminReads.inbound(this.ctx, key, newest);
  }

  leaseInfo(key: SessionKey): Promise<LeaseInfo | null> {
    return adminReads.leaseInfo(this.ctx, key);
  }

  // --- maintenance ---------------------------------------------------------------------

  /** Retention: deletes history past its retention from PostgreSQL (see maintenance.ts). */
  purge(opts: { lockMs?: number } = {}): Promise<PurgeReport> {
    return maintenance.purge(this.ctx, opts);
  }

  /**
   * One reaper pass (see maintenance.ts); `force` takes the pass even if another process has it,
   * and its walk over the key space even if that rests, unless `sweep` is false.
   */
  reapOnce(
    intervalMs = 30_000,
    opts: { force?: boolean; sweep?: boolean } = {},
  ): Promise<{ rescheduled: number; journals: number }> {
    return maintenance.reapOnce(this.ctx, intervalMs, opts);
  }
}
