/**
 * The narrow interface every storage backend satisfies with the same semantics:
 * embedded (SQLite, in-process leases) and distributed (Redis + PostgreSQL).
 * The conformance suite in `test/conformance/` runs against each.
 * @module
 */
import type { IntakeGate, IntakeTracker } from '../engine/intake-gate.ts';
import type { SessionKey, StoredMessage, WebhookBatch } from '../model/message.ts';
import type {
  DeadLetter,
  OutboundRecord,
  OutboundStatus,
  PromptRef,
  SessionSnapshot,
  TransitionRecord,
} from '../model/session.ts';

/** See {@link Backend.alerts}. */
export interface AlertStore {
  /** Whether process `id` evaluates the alerts now: takes or extends a lead of `ttlMs`. */
  lead(id: string, ttlMs: number): Promise<boolean>;
  /** The alerts whose `firing` was delivered and whose `resolved` was not yet. */
  firing(): Promise<Set<string>>;
  /** Records a delivered `firing` (true) or `resolved` (false). */
  setFiring(alert: string, firing: boolean, at: number): Promise<void>;
}

/** A granted lease ("the baton") on one session. */
export interface LeaseGrant extends SessionKey {
  /** Random per grant; renew and release compare it. */
  readonly token: string;
  /** Fencing token: strictly greater than every earlier grant's for this session. */
  readonly fence: number;
  /** The worker that holds it. */
  readonly holder: string;
}

/** Who holds a session's lease, for the dashboard. */
export interface LeaseInfo {
  /** The worker that took it; null when the store does not know. */
  readonly holder: string | null;
  /** Epoch milliseconds when it expires unless renewed. */
  readonly expiresAt: number;
}

/** Everything one batch changes, committed atomically or not at all. */
export interface BatchCommit {
  /** The version the batch was computed from (0 for a session never stored). */
  readonly expectedVersion: number;
  readonly snapshot: SessionSnapshot;
  readonly records: readonly TransitionRecord[];
  readonly outbound: readonly OutboundRecord[];
  /** Inbound message ids this batch consumed: they leave the mailbox in the same commit. */
  readonly consumed: readonly string[];
  /** Inbound messages dead-lettered by this batch (also consumed). */
  readonly deadLetters: readonly DeadLetter[];
}

/** A commit that took effect. */
export interface CommitResult {
  /**
   * `true` when every store the mode writes through has it (embedded: SQLite; distributed
   * write-through: Redis and PostgreSQL; write-behind: Redis, journaled). `false` when it is
   * applied and journaled in Redis but PostgreSQL could not take its copy yet: the flusher
   * copies it when PostgreSQL is back. Either way the state moved on and its replies may go.
   */
  readonly durable: boolean;
}

export interface IngestResult {
  /** Messages stored for the first time. */
  readonly accepted: number;
  /** Messages whose id was already seen within the dedupe TTL (no second effect). */
  readonly duplicates: number;
  /** Status updates applied. */
  readonly statuses: number;
}

export interface OutboundPatch {
  readonly status: OutboundStatus;
  readonly attempts?: number;
  /** Sets the record's claim count (see `OutboundRecord.claims`): 0 when a replay starts it afresh. */
  readonly claims?: number;
  readonly providerMessageId?: string;
  readonly lastError?: string;
  /** Sets `OutboundRecord.notBefore`. */
  readonly notBefore?: number;
}

/** A status change of one outbound record, as `updateOutbound` takes it. */
export interface OutboundUpdate {
  readonly id: string;
  readonly patch: OutboundPatch;
}

export interface SessionQuery {
  readonly step?: string;
  readonly needsAgent?: boolean;
  readonly channel?: string;
  readonly limit: number;
  /** Opaque cursor from the previous page. */
  readonly cursor?: string;
}

/** Whether lease holder `holder` is process `processId`'s: its id, or its id and a role (`<id>:agent`). */
export function heldBy(holder: string, processId: string): boolean {
  return holder === processId || holder.startsWith(`${processId}:`);
}

/** How long a store remembers that an agent cleared a session's lease, ms (past any send's timeout). */
export const CLEARED_LEASE_MEMORY_MS = 60_000;

/** How long a store remembers the flows of a worker that stopped or went silent (see flowServedUntil), ms. */
export const SERVED_FLOW_MEMORY_MS = 600_000;

/** An agent's clear of a session's lease (see `Backend.leaseCleared`). */
export interface ClearedLease {
  /** When, epoch ms. */
  readonly at: number;
  /** The worker id of the holder it was taken from; null when there was none, or not known. */
  readonly holder: string | null;
}

/** Where a page of dead letters ends (`listDeadLetters`): its last letter. */
export interface DeadLetterCursor {
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly id: string;
}

/** How many sessions stand at one step of one flow (`countSessions`). */
export interface SessionCount {
  readonly flow: string;
  /** null: a session at no step (new, or reset by an agent). */
  readonly step: string | null;
  readonly needsAgent: boolean;
  readonly sessions: number;
  /** The earliest last interaction among them (the creation time where none), epoch ms. */
  readonly oldestAt: number;
}

/** A reply whose delivery failed, with when its failure was recorded (ms). */
export type FailedReply = OutboundRecord & { readonly failedAt: number };

/**
 * After a write is refused (a webhook the store turned down, or the disk under SQLite refusing
 * a group commit), readiness says `writes: false` this long, or until a write begun after the
 * refusal is durable.
 */
export const WRITE_FAILURE_HOLD_MS = 5000;

/** A flow a worker runs, as its heartbeat says (see {@link Backend.flowServedUntil}). */
export interface ServedFlow {
  readonly id: string;
  readonly version: number;
  /** The worker's first flow, where its new sessions start (when no router picks another). */
  readonly starts?: boolean;
}

export interface BackendStats {
  /** Messages stored and not yet consumed. */
  readonly queueDepth: number;
  /** Age of the oldest of them, milliseconds (0 when none). */
  readonly oldestPendingMs: number;
  readonly locksHeld: number;
  readonly deadLetters: number;
  /** Worker processes (engines) that sent a heartbeat within their TTL. */
  readonly workers: number;
  /** New messages stored from webhooks per second over the last minute, by every process. */
  readonly messagesPerSecond: number;
  /**
   * Outbound work committed and not done: replies not yet accepted by the provider (waiting,
   * being sent, or retrying after a throttle) and effect calls not yet answered. A backlog of
   * sends that the queue depth does not show. Costs a count of the unsent rows (a partial index
   * of the durable store), not of what is stored; in distributed mode the durable copy it
   * reads may lag Redis by a flush.
   */
  readonly unsent: number;
  /** Age of the oldest of them, milliseconds (0 when none). */
  readonly oldestUnsentMs: number;
  /**
   * Figures that are the last ones this process read (0 if it has read none yet), not fresh:
   * the durable store did not answer in time (distributed mode: PostgreSQL stalled or away while
   * Redis answered, whose figures are fresh), or `queue`: the store did not answer at all and the
   * queue depth is RabbitMQ's count of the webhooks waiting in it added to the store's last
   * (the other queue figures the last read). Absent when every figure is fresh.
   */
  readonly stale?: ReadonlyArray<'queue' | 'deadLetters' | 'unsent'>;
}

/**
 * Every operation says whether the store checks it against the caller's lease:
 *
 * - **Fenced**: takes the caller's {@link LeaseGrant}, and the store compares its token (and,
 *   for `commit`, its fence) with the session's current lease in the same atomic step as the
 *   write. A grant that lost the lease (expired, cleared, or superseded by a newer grant) is
 *   refused: `commit` rejects with `FencedError`, `renewLease` answers `false`, `releaseLease`
 *   changes nothing of the lease. The durable store (SQLite, PostgreSQL) also refuses a commit
 *   whose fence is older than the session row's.
 * - **Unfenced**: not checked against any lease. Either no lease is involved (intake,
 *   scheduling, admin reads), or the caller usually holds one but the store does not ask
 *   (reads of the mailbox, state and outbox; `updateOutbound`, ordered by the status rule
 *   instead; `deadLetter`). A reader may pass its `LeaseGrant` as the `SessionKey`: a backend
 *   may then answer from what that same holder's previous call already read (never from
 *   another holder's).
 * - **Admin**: unfenced operations for the admin API, the dashboard and the CLI; some write
 *   (`clearLease`, `replayDeadLetter`), most read.
 */
export interface Backend {
  readonly kind: 'embedded' | 'distributed';
  /**
   * The clock of a store that several processes share (epoch ms; valid once `init` resolved):
   * what one process stamps (storage times, due times, watermarks) another compares with its
   * own time, so every process of a deployment reads this one. None: the process's own clock.
   */
  readonly clock?: () => number;

  /** Creates tables/loads scripts. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;
  /** Which stores answer. */
  health(): Promise<Record<string, boolean>>;

  // --- intake: unfenced ---------------------------------------------------------------
  /**
   * Unfenced. Stores the batch's messages durably (dedupe by message id within the dedupe TTL),
   * appends each to its session's mailbox, schedules those sessions, and applies the
   * statuses to the outbound records they name. Resolves only once all of it is durable.
   * Rejects with `StorageUnavailableError` when the store cannot be reached.
   */
  ingest(batch: WebhookBatch): Promise<IngestResult>;
  /**
   * Counts `n` new messages stored from webhooks (an ingress's or a RabbitMQ consumer's), for
   * {@link BackendStats.messagesPerSecond}. Effect results, which are stored with `ingest` too,
   * are not counted.
   */
  countStored(n: number): void;

  // --- scheduling: unfenced -----------------------------------------------------------
  /**
   * Unfenced. Waits until a scheduled session is due: its oldest pending message has been stored
   * for at least the buffer window. Each due session is handed to one caller. Resolves `null`
   * when `signal` aborts. Being handed a session grants nothing: `acquireLease` does.
   */
  nextReady(signal: AbortSignal): Promise<SessionKey | null>;

  // --- leases -------------------------------------------------------------------------
  /**
   * Grants the session's lease if free or expired; `null` if another holder has it. The grant's
   * fence is greater than every earlier grant's for the session: what fences its holder's writes.
   */
  acquireLease(key: SessionKey, holder: string, ttlMs: number): Promise<LeaseGrant | null>;
  /** Fenced (token). Extends a lease this grant still holds; `false` if it was lost. */
  renewLease(lease: LeaseGrant, ttlMs: number): Promise<boolean>;
  /**
   * Someone (an agent, an admin reset) is waiting for the session's baton, for `ttlMs` (0: no
   * longer). A holder that is only waiting (a throttled gateway's backoff) yields it.
   */
  wantLease(key: SessionKey, ttlMs: number): Promise<void>;
  /** Whether someone is waiting for the session's baton (see {@link Backend.wantLease}). */
  leaseWanted(key: SessionKey): Promise<boolean>;
  /**
   * Fenced (token): releases the lease only if this grant still holds it; a lease lost to
   * another holder stays theirs (no error). If the session's mailbox is not empty, it is
   * scheduled again (due when its oldest pending message's buffer window ends); if it only has
   * unsent replies, it is scheduled again shortly. Sessions with pending messages or unsent
   * replies are also scheduled when a backend starts (or its reaper finds them unleased).
   * With `notBeforeMs`, it is not due again before that many ms from now: a holder that yields
   * the baton to an agent (see {@link Backend.wantLease}) leaves the agent time to take it,
   * rather than take the session back at once for the messages still waiting.
   * With `first`, a session whose messages are due (their buffer window over) goes to the front of
   * the ready queue instead of taking its place by due time: an agent's take waits for the bot to
   * apply what the user wrote before it, and behind a backlog it waited in vain (see agent.ts).
   */
  releaseLease(lease: LeaseGrant, notBeforeMs?: number, first?: boolean): Promise<void>;
  /**
   * Fenced (token). Optional. Ends a holder's turn in one step: when messages are already due
   * (their buffer window has ended), the lease is kept and they are returned, as `pending`
   * would return them; otherwise the lease is released as by `releaseLease` and the answer is
   * null. Without it the engine calls `pending`, then `releaseLease`.
   *
   * `sent`: the status of the reply the holder sent last, recorded first, exactly as by
   * `updateOutbound` (unfenced, by the status rule), so that the end of the turn does not find
   * that reply unsent. A backend may send both in one round trip; it resolves once both are done.
   */
  releaseOrTake?(lease: LeaseGrant, limit: number, sent?: OutboundUpdate): Promise<StoredMessage[] | null>;
  /**
   * Admin, unfenced: an agent's hand. Drops whatever lease the session has, whoever holds it
   * (the holder's next fenced call is refused). `true` if there was one.
   */
  clearLease(key: SessionKey): Promise<boolean>;
  /**
   * Unfenced read. When an agent last cleared the session's lease, and whom it was taken from
   * (null: nobody, or not known), if within the last {@link CLEARED_LEASE_MEMORY_MS}; else null.
   * The holder it was taken from may still be sending a reply: the next holder waits for that
   * send before repeating it, unless that holder is gone (see Outbox.flush).
   */
  leaseCleared(key: SessionKey): Promise<ClearedLease | null>;
  /**
   * Unfenced read. Whether the process behind a lease holder is alive: a worker (the holder is
   * its id, or its id and a role, `<worker id>:agent`) that sent a heartbeat within its TTL (see
   * {@link heartbeat}), or another process holding batons (see {@link holderBeat}).
   */
  holderAlive(holder: string): Promise<boolean>;

  // --- mailbox and state --------------------------------------------------------------
  /** Unfenced read. The session's unconsumed messages, in arrival (`seq`) order. */
  pending(key: SessionKey, limit: number): Promise<StoredMessage[]>;
  /**
   * Unfenced read. The session's snapshot, `null` for a session never committed. Given its
   * `Lease`, the holder's read: a store that keeps a fast copy may fill it from the durable one
   * (distributed: only a holder does, see mailbox.ts); given a bare key, a read that changes
   * nothing.
   */
  load(key: SessionKey): Promise<SessionSnapshot | null>;
  /**
   * Fenced (token and fence). Commits a batch atomically: refused with `FencedError` unless
   * `lease` is still the session's current lease (its fence not superseded, not expired), and with
   * `VersionConflictError` unless the stored version equals `expectedVersion`; rejected with
   * `StorageUnavailableError` when it was not applied. Resolves once it has taken effect, saying
   * whether every copy the mode promises is written yet (see `CommitResult`).
   */
  commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult>;
  /**
   * Unfenced read. For the given provider message ids, the prompts Baton sent with them
   * (unknown ids absent).
   */
  resolvePrompts(key: SessionKey, providerMessageIds: readonly string[]): Promise<Map<string, PromptRef>>;

  // --- outbox -------------------------------------------------------------------------
  /**
   * Unfenced read. The session's outbound records not yet sent (status pending or sending), in
   * `seq` order.
   */
  unsent(key: SessionKey): Promise<OutboundRecord[]>;
  /**
   * Whether the session's unsent replies may go now: the state that made them is durable. False
   * while it is only in a fast store that keeps nothing across a restart (the durable store
   * away); the engine then treats the send as refused and tries again later. Absent: always.
   */
  sendable?(key: SessionKey): Promise<boolean>;
  /**
   * Unfenced, though the engine calls it while it holds the session's lease: whoever asks, the
   * store's status rule keeps a record's status from going back (a delivery reported by a
   * status webhook is not undone by a late `sent`). Unknown ids are ignored.
   */
  updateOutbound(id: string, patch: OutboundPatch): Promise<void>;
  /**
   * Fenced (token and fence). Adds `delta` to the claim count (`OutboundRecord.claims`) of each
   * of the session's records `ids` that is still unsent, in one atomic step, and answers each
   * one's count after the change (never below 0), or `null` for a record that is not unsent (sent,
   * failed, or no such record): nothing to send. `+1` claims a send attempt before it is made;
   * `-1` gives back a claim no attempt used (a holder leaving a throttled reply unsent). A claim
   * rejects with `FencedError` when `lease` no longer holds the session: a holder that lost its
   * baton neither claims nor sends. A give-back is not fenced: a holder whose lease expired
   * before it made the attempt it claimed (a starved process) gives the claim back when it
   * wakes, even after another holder took over (which waits a moment for it, see
   * Engine.recordedByLiveClaimer); fenced, two such holders in a row dead-lettered a reply nobody
   * sent (outside test QA20-F1). The caller gives back only claims of its own that no attempt
   * used, so the count never falls below the attempts that may have reached the user.
   */
  claimOutbound(lease: LeaseGrant, ids: readonly string[], delta: 1 | -1): Promise<Array<number | null>>;
  /** Unfenced. Stores a dead letter on its own (a batch's dead letters go with its commit). */
  deadLetter(letter: DeadLetter): Promise<void>;

  // --- admin: unfenced ----------------------------------------------------------------
  /** Sessions whose user is `user` (wa_id or BSUID), on `channel` if given. */
  findSessions(user: string, channel?: string): Promise<SessionSnapshot[]>;
  listSessions(query: SessionQuery): Promise<{ sessions: SessionSnapshot[]; nextCursor: string | null }>;
  /**
   * Every stored session counted, by flow, step and whether it waits for an agent (one query).
   * With `activeSinceMs`, only those whose user last wrote then or later (their creation time
   * where they have no message yet): older ones are idle past the session TTL, and start over
   * with their next message.
   */
  countSessions(activeSinceMs?: number): Promise<SessionCount[]>;
  /** The session's transition log, oldest first; with `newest`, only its newest `newest` records. */
  transitions(key: SessionKey, newest?: number): Promise<TransitionRecord[]>;
  /** The session's outbound records in send order; with `newest`, only the newest `newest`. */
  outbound(key: SessionKey, newest?: number): Promise<OutboundRecord[]>;
  /**
   * Dead letters, newest first, at most `limit`; with `after` (the last letter of the page
   * before), those that come after it in that order.
   */
  listDeadLetters(limit: number, after?: DeadLetterCursor): Promise<DeadLetter[]>;
  /**
   * Replies (not effects) whose delivery failed, newest failure first, at most `limit`: Meta's
   * `failed` status webhook named them, or Baton gave up sending them. For the dashboard.
   */
  failedReplies(limit: number): Promise<FailedReply[]>;
  /** One dead letter, replayed or not; null when there is no such letter. */
  getDeadLetter(id: string): Promise<DeadLetter | null>;
  /**
   * Writes, without a lease: re-stores a dead-lettered inbound message as pending (outbound: as
   * unsent). `false` when there is nothing to replay (no such letter, or replayed already).
   */
  replayDeadLetter(id: string): Promise<boolean>;
  stats(): Promise<BackendStats>;
  /**
   * A worker says it is alive, for `ttlMs`, and which flows it runs (`serves`, see
   * {@link flowServedUntil}); `stats().workers` counts the live ones.
   */
  heartbeat(workerId: string, ttlMs: number, serves?: readonly ServedFlow[]): Promise<void>;
  /** A worker stopping says goodbye (its flows are served by it until now). */
  removeWorker(workerId: string): Promise<void>;
  /**
   * A process that takes batons without being a worker (the admin API of an ingress, the CLI)
   * says it is alive, for `ttlMs`, while it holds one; `stops` ends that at once. For
   * {@link holderAlive} only: `stats().workers` does not count it.
   */
  holderBeat(processId: string, ttlMs: number, stops?: boolean): Promise<void>;
  /**
   * Unfenced read. Until when (epoch ms) a worker that runs flow `id` at `version` or a newer one
   * is known to be alive: the latest expiry of such a worker's heartbeat, or its stop; later than
   * now while one is alive, 0 when none was in the last 10 minutes. A session that flow's
   * `version` wrote has a worker that can serve it (during a rolling deploy, an older worker
   * leaves it for that one, see engine.ts `leaveUnserved`).
   */
  flowServedUntil(id: string, version: number): Promise<number>;
  /**
   * Unfenced read, distributed only: the flows each live worker runs, by worker id (its
   * heartbeat's `serves`).
   */
  liveFlows?(): Promise<ReadonlyMap<string, readonly ServedFlow[]>>;
  /**
   * A dashboard sign-out (admin/auth.ts): the sign-in `id` no longer lets anyone in, on any
   * process sharing this store, until `untilMs` (when its cookie would have expired anyway).
   */
  revokeSignIn(id: string, untilMs: number): Promise<void>;
  /** Whether the dashboard sign-in `id` was signed out. */
  signInRevoked(id: string): Promise<boolean>;
  /**
   * The session's inbound messages as stored (applied, pending or dead-lettered, while intake
   * keeps them), in arrival (`seq`) order: the user's side of the conversation. With `newest`,
   * only the newest `newest` of them.
   */
  inbound(key: SessionKey, newest?: number): Promise<StoredMessage[]>;
  /** The session's live lease, or null when it has none. */
  leaseInfo(key: SessionKey): Promise<LeaseInfo | null>;

  /**
   * Intake watermarks across processes, for a backend shared by several (distributed): the
   * ingress side (`tracker`, it starts publishing) and the engine side (`gate`). Absent: only
   * an ingress in the same process can hold batches back (`LocalIntakeGate`).
   */
  readonly intake?: { tracker(): IntakeTracker; gate(): IntakeGate } | undefined;

  /**
   * Where the queue alerts keep what they announced, shared by every process and kept across
   * restarts, so an episode is announced once (SPEC section 4). Unfenced.
   */
  readonly alerts: AlertStore;
}
