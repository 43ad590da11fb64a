/**
 * Embedded backend: one process, one SQLite file (WAL), in-process leases. Every webhook is
 * committed to SQLite, and the WAL synced, before `ingest` resolves; concurrent ingests share one
 * transaction (group commit) and one sync, made off the event loop (`sqlite.ts`, `wal-sync.ts`),
 * and WAL checkpoints run on a thread of their own (`checkpointer.ts`). Fencing tokens are
 * persisted with each session, and the grant counter starts above every stored one, so a restart
 * never reuses a token that wrote (`leases.ts`). This file is the facade: the intake
 * (`intake.ts`), the admin reads (`admin-reads.ts`) and the retention pass (`purge.ts`) are
 * rooms of their own; the turn's writes (commit, outbox) and the scheduling of due sessions are
 * here.
 * @module
 */
import { ensureDataDir, lockDataDir, type DirLock } from './dir-lock.ts';
import { join } from 'node:path';
import { FencedError, StorageUnavailableError, VersionConflictError } from '../../errors.ts';
import {
  laterStatus,
  SENT_DESPITE_RESET,
  sentDespiteReset,
  sessionId,
  type SessionKey,
  type StoredMessage,
  type WebhookBatch,
} from '../../model/message.ts';
import type {
  DeadLetter,
  OutboundRecord,
  OutboundStatus,
  PromptRef,
  SessionSnapshot,
  TransitionRecord,
} from '../../model/session.ts';
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
import { WRITE_FAILURE_HOLD_MS } from '../types.ts';
import { DueQueue } from './due-queue.ts';
import { TurnPacer, type TurnPacerOptions } from './turn-pacer.ts';
import type { CheckpointStats } from './checkpointer.ts';
import { MIGRATIONS } from './schema.ts';
import { StoredRate } from '../throughput.ts';
import { EmbeddedPurge } from './purge.ts';
import type { PurgeReport, RetentionOptions } from '../retention.ts';
import * as reads from './admin-reads.ts';
import { EmbeddedIntake, type Touched } from './intake.ts';
import { LeaseTable } from './leases.ts';
import { activeAt, OUTBOUND_ROW, outboundRecord, type OutboundRow, type Row } from './rows.ts';
import { SqliteStore } from './sqlite.ts';

/** The store's file in its data directory. */
export const EMBEDDED_FILE = 'baton.sqlite';

/** SQLite is the only store: a commit is durable once its transaction is. */
const DURABLE: CommitResult = Object.freeze({ durable: true });

export interface EmbeddedOptions extends RetentionOptions {
  /** Directory of `baton.sqlite`; or pass `file` (`:memory:` for unit tests only). */
  readonly dataDir?: string;
  readonly file?: string;
  readonly bufferMs: number;
  readonly dedupeTtlSec: number;
  /** Epoch milliseconds. */
  readonly now?: () => number;
  /**
   * How the engine's claims on due sessions are dosed between event-loop turns, so webhooks are
   * read and answered while a backlog is worked off (see `turn-pacer.ts`); `false`: not at all.
   */
  readonly pacing?: TurnPacerOptions | false;
  /** After this long without a write, the WAL file is cut to nothing (ms; see `checkpointer.ts`). */
  readonly walIdleMs?: number;
  /**
   * What the store must tell an operator while it runs (a checkpoint failing on a full disk, its
   * file deleted): default, a Node process warning. `onInfo`: what is over again.
   */
  readonly onWarning?: (message: string) => void;
  readonly onInfo?: (message: string) => void;
  /**
   * `false`: a store of an older schema is refused, not upgraded (a one-shot command such as
   * `baton session show` changes nothing; an upgraded store is refused by the older Baton).
   * Default: upgraded.
   */
  readonly migrate?: boolean;
}

/** Delay before a session whose replies were left unsent is taken up again. */
const UNSENT_RETRY_MS = 1000;

/** Stores up to this size are checked page by page at start (`PRAGMA quick_check`). */
const QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024;

/** A store SQLite finds damaged, said in one line naming it; null for any other error. */
function damaged(file: string, err: unknown): StorageUnavailableError | null {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return null;
  const why = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
  return new StorageUnavailableError(
    `the SQLite store ${file} is damaged (${why}): restore it from a backup, or move it aside (BATON_DATA_DIR) to start an empty store`,
    err,
  );
}

export class EmbeddedBackend implements Backend {
  readonly kind = 'embedded' as const;
  private readonly store: SqliteStore;
  private readonly now: () => number;
  private readonly due: DueQueue;
  private readonly pacer: TurnPacer | null;
  private readonly leases: LeaseTable;
  private readonly webhooks: EmbeddedIntake;
  /** New messages stored from webhooks, per second (messages_per_s). */
  private readonly rate = new StoredRate();
  private purgeTimer: NodeJS.Timeout | null = null;
  /** Checks every second that the store's file and the directory's lock are still this process's. */
  private watchTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The retention pass (purge.ts). */
  private readonly purger: EmbeddedPurge;
  /** The data directory's lock (none for an explicit `file`, such as `:memory:`). */
  private readonly dirLock: DirLock | null = null;
  /** The store's file (`opts.file`, or `baton.sqlite` in the data directory). */
  private readonly file: string;
  /** The schema `init` found and the one it left (the same when nothing was applied). */
  schemaChange: { readonly from: number; readonly to: number } | null = null;

  constructor(private readonly opts: EmbeddedOptions) {
    this.now = opts.now ?? Date.now;
    let file = opts.file;
    if (file === undefined) {
      const dir = opts.dataDir ?? './data';
      ensureDataDir(dir);
      this.dirLock = lockDataDir(dir);
      file = join(dir, EMBEDDED_FILE);
    }
    this.file = file;
    try {
      this.store = new SqliteStore(file, {
        ownerOnly: opts.file === undefined,
        walIdleMs: opts.walIdleMs,
        onWarning: opts.onWarning,
        onInfo: opts.onInfo,
      });
    } catch (err) {
      this.dirLock?.release();
      throw damaged(file, err) ?? err;
    }
    this.due = new DueQueue(this.now);
    this.leases = new LeaseTable(this.now);
    this.webhooks = new EmbeddedIntake(this.store, this.now);
    this.purger = new EmbeddedPurge({
      sql: (text) => this.store.sql(text),
      secureDelete: (on) => this.store.secureDelete(on),
      now: () => this.now(),
      options: this.opts,
      closed: () => this.closed,
      countDeadLetters: () => this.countDeadLetters(),
      written: () => this.store.written(),
      ingest: (batch) => this.ingest(batch),
      queueDepth: () => this.store.counts.pending,
    });
    this.pacer = opts.pacing === false ? null : new TurnPacer(opts.pacing ?? {});
  }

  async init(): Promise<void> {
    try {
      this.open();
    } catch (err) {
      throw damaged(this.file, err) ?? err;
    }
    const purge = (): void => void this.purge().catch(() => undefined);
    purge();
    const every = this.opts.purgeIntervalMs ?? 60_000;
    if (every > 0) {
      this.purgeTimer = setInterval(purge, every);
      this.purgeTimer.unref();
    }
  }

  /** Checks and upgrades the schema, and reads what the store resumes from. */
  private open(): void {
    const db = this.store.db;
    const current = db.pragma('user_version', { simple: true }) as number;
    // A store a newer Baton migrated: this one would write it without what the newer schema
    // keeps (an index's columns, say), and leave it inconsistent for that Baton.
    if (current > MIGRATIONS.length)
      throw new Error(
        `the SQLite store in ${this.opts.dataDir ?? './data'} has schema ${current}, written by a newer Baton; this one knows schemas up to ${MIGRATIONS.length}: run the newer Baton (or restore a backup from before it)`,
      );
    // A store file just created has schema 0: nothing to refuse, nothing to keep.
    if (current > 0 && current < MIGRATIONS.length && this.opts.migrate === false)
      throw new Error(
        `the SQLite store in ${this.opts.dataDir ?? './data'} has schema ${current}, older than this Baton's ${MIGRATIONS.length}: upgrade it with baton migrate (or by starting Baton there), after copying the directory if you may go back to the older Baton`,
      );
    // A damaged page is found now, in one line naming the file, rather than by the webhooks and
    // turns that read it (outside test QA94-F4: one answered 200 to webhooks it could not
    // process). It reads the whole file: skipped above QUICK_CHECK_MAX_BYTES.
    if (current > 0 && this.store.size() <= QUICK_CHECK_MAX_BYTES) {
      const verdict = db.pragma('quick_check(1)', { simple: true }) as string;
      if (verdict !== 'ok') throw Object.assign(new Error(verdict), { code: 'SQLITE_CORRUPT' });
    }
    for (let v = current; v < MIGRATIONS.length; v += 1) {
      db.transaction(() => {
        db.exec(MIGRATIONS[v]!);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
    this.schemaChange = { from: current, to: MIGRATIONS.length };
    const sql = (text: string) => this.store.sql(text);
    this.store.seq = (sql('SELECT COALESCE(MAX(seq), 0) AS s FROM inbound').get() as { s: number }).s;
    this.leases.startAbove(
      (sql('SELECT COALESCE(MAX(fence), 0) AS f FROM sessions').get() as { f: number }).f,
    );
    // Counted once here; from now on every write that changes them keeps them.
    this.store.counts.pending = (
      sql(`SELECT COUNT(*) AS n FROM inbound WHERE state = 'pending'`).get() as { n: number }
    ).n;
    this.countDeadLetters();
    // Whatever was pending when the process stopped is due now.
    const rows = sql(
      `SELECT channel, user, MIN(stored_at) AS first FROM inbound WHERE state = 'pending' GROUP BY channel, user`,
    ).all() as Array<{ channel: string; user: string; first: number }>;
    for (const r of rows)
      this.due.schedule({ channel: r.channel, user: r.user }, r.first + this.opts.bufferMs);
    // Replies committed but not yet sent when the process stopped: their sessions are due too.
    const unsent = sql(
      `SELECT DISTINCT channel, user FROM outbound WHERE status IN ('pending', 'sending')`,
    ).all() as Array<{ channel: string; user: string }>;
    for (const r of unsent) this.due.schedule({ channel: r.channel, user: r.user }, this.now());
    if (this.dirLock !== null) {
      this.watchTimer = setInterval(() => this.watch(), 1000);
      this.watchTimer.unref();
    }
  }

  /**
   * The data directory still this process's: its store file not deleted or replaced (the store
   * checks at every group commit too), its lock not taken by another process. Else nothing more
   * is written (see SqliteStore.detachedFrom).
   */
  private watch(): void {
    if (this.closed || this.store.detachedFrom() !== null) return;
    const other = this.dirLock?.check() ?? null;
    if (other !== null)
      this.store.detach(
        `the data directory ${this.opts.dataDir ?? './data'} (BATON_DATA_DIR) was taken by ${other} after its baton.lock was removed: two processes on one store would apply messages twice; this one writes nothing more: stop one of them`,
      );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    if (this.watchTimer) clearInterval(this.watchTimer);
    await this.store.close();
    this.due.close();
    this.dirLock?.release();
  }

  /** What the checkpoint thread has done; null when it is not running (`:memory:`, or it failed). */
  get checkpoints(): Readonly<CheckpointStats> | null {
    return this.store.checkpoints;
  }

  async health(): Promise<Record<string, boolean>> {
    if (this.store.detachedFrom() !== null) return { sqlite: false };
    try {
      this.store.sql('SELECT 1').get();
      // Reachable is not enough: a full disk answers reads and refuses writes.
      return this.store.writesFailing(WRITE_FAILURE_HOLD_MS)
        ? { sqlite: true, writes: false }
        : { sqlite: true };
    } catch {
      return { sqlite: false };
    }
  }

  // --- intake --------------------------------------------------------------------------

  ingest(batch: WebhookBatch): Promise<IngestResult> {
    const touched: Touched = new Map();
    return this.store.write(
      () => this.webhooks.store(batch, touched),
      () => {
        for (const { key, storedAt } of touched.values()) {
          if (!this.leases.isHeld(key) && !this.due.has(key))
            this.due.schedule(key, storedAt + this.opts.bufferMs);
        }
      },
    );
  }

  /** Counts the dead letters not replayed (at start, and after a purge deleted some). */
  private countDeadLetters(): void {
    this.store.counts.deadLetters = (
      this.store.sql('SELECT COUNT(*) AS n FROM dead_letters WHERE replayed_at IS NULL').get() as {
        n: number;
      }
    ).n;
  }

  /**
   * Deletes what retention no longer keeps (`purge.ts`). Runs at start and every
   * `purgeIntervalMs`; also callable (tests, with an injected clock).
   */
  purge(): Promise<PurgeReport> {
    return this.purger.run();
  }

  // --- scheduling ----------------------------------------------------------------------

  /** The next due session, in the pacer's doses: a claim that must wait for the next dose waits here. */
  async nextReady(signal: AbortSignal): Promise<SessionKey | null> {
    const key = await this.due.next(signal);
    if (key === null || this.pacer === null) return key;
    await this.pacer.slot(signal);
    return signal.aborted ? null : key;
  }

  // --- leases --------------------------------------------------------------------------

  async acquireLease(key: SessionKey, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    const grant = this.leases.grant(key, holder, ttlMs);
    // The holder takes whatever is pending; its release schedules the session again if need be
    // (as the distributed backend's grant replaces the session's ready entry).
    if (grant !== null) this.due.unschedule(key);
    return grant;
  }

  async wantLease(key: SessionKey, ttlMs: number): Promise<void> {
    this.leases.want(key, ttlMs);
  }

  async leaseWanted(key: SessionKey): Promise<boolean> {
    return this.leases.isWanted(key);
  }

  async renewLease(lease: LeaseGrant, ttlMs: number): Promise<boolean> {
    return this.leases.renew(lease, ttlMs);
  }

  async releaseLease(lease: LeaseGrant, notBeforeMs = 0, first = false): Promise<void> {
    this.leases.drop(lease);
    this.rescheduleIfPending(lease, this.now() + notBeforeMs, first);
  }

  async releaseOrTake(
    lease: LeaseGrant,
    limit: number,
    sent?: OutboundUpdate,
  ): Promise<StoredMessage[] | null> {
    if (sent) await this.updateOutbound(sent.id, sent.patch);
    if (!this.leases.current(lease) || this.closed) {
      this.leases.drop(lease);
      this.rescheduleIfPending(lease);
      return null;
    }
    // One mailbox read decides: due messages keep the lease; otherwise it is released and the
    // read says when the session is due again (as `rescheduleIfPending` would find).
    const due = await this.pending(lease, limit);
    const first = due[0];
    if (first !== undefined && first.storedAt + this.opts.bufferMs <= this.now()) return due;
    this.leases.drop(lease);
    const key: SessionKey = { channel: lease.channel, user: lease.user };
    if (first !== undefined) this.due.schedule(key, first.storedAt + this.opts.bufferMs);
    else this.rescheduleIfUnsent(key);
    return null;
  }

  async clearLease(key: SessionKey): Promise<boolean> {
    const had = this.leases.clear(key);
    this.rescheduleIfPending(key);
    return had;
  }

  async leaseCleared(key: SessionKey): Promise<ClearedLease | null> {
    return this.leases.cleared(key);
  }

  async holderAlive(holder: string): Promise<boolean> {
    return this.leases.holderAlive(holder);
  }

  /** Schedules the session if messages or replies wait, due no earlier than `notBefore` (epoch ms). */
  private rescheduleIfPending(k: SessionKey, notBefore = 0, first = false): void {
    if (this.closed) return;
    const key: SessionKey = { channel: k.channel, user: k.user };
    const row = this.store
      .sql(
        `SELECT MIN(stored_at) AS first FROM inbound INDEXED BY inbound_pending
         WHERE channel = ? AND user = ? AND state = 'pending'`,
      )
      .get(key.channel, key.user) as { first: number | null };
    if (row.first !== null) {
      const due = Math.max(row.first + this.opts.bufferMs, notBefore);
      // (Due time 0: before every session due by its messages' time.)
      this.due.schedule(key, first && due <= this.now() ? 0 : due);
      return;
    }
    this.rescheduleIfUnsent(key, notBefore);
  }

  /** Replies whose sending was cut short (lease lost, shutdown): try again shortly. */
  private rescheduleIfUnsent(key: SessionKey, notBefore = 0): void {
    const unsent = this.store
      .sql(
        `SELECT 1 FROM outbound WHERE channel = ? AND user = ? AND status IN ('pending', 'sending') LIMIT 1`,
      )
      .get(key.channel, key.user);
    if (unsent !== undefined) this.due.schedule(key, Math.max(this.now() + UNSENT_RETRY_MS, notBefore));
  }

  // --- mailbox and state ---------------------------------------------------------------

  async pending(key: SessionKey, limit: number): Promise<StoredMessage[]> {
    // The limit is written into the SQL (one statement per limit; the engine uses one): a bound
    // LIMIT is a value the query planner looks at, so SQLite prepared the statement again at every
    // call (measured: 6-7 us instead of 0.7 for an empty mailbox).
    if (!Number.isSafeInteger(limit)) throw new RangeError(`mailbox limit ${limit} is not an integer`);
    const rows = this.store
      .sql(
        // The partial index holds only pending rows: the session's history is not read row by row.
        `SELECT body FROM inbound INDEXED BY inbound_pending
         WHERE channel = ? AND user = ? AND state = 'pending' ORDER BY seq LIMIT ${limit}`,
      )
      .all(key.channel, key.user) as Array<{ body: string }>;
    return rows.map((r) => JSON.parse(r.body) as StoredMessage);
  }

  async load(key: SessionKey): Promise<SessionSnapshot | null> {
    const row = this.store
      .sql('SELECT snapshot FROM sessions WHERE channel = ? AND user = ?')
      .get(key.channel, key.user) as { snapshot: string } | undefined;
    return row ? (JSON.parse(row.snapshot) as SessionSnapshot) : null;
  }

  commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    const id = sessionId(lease);
    return this.store.write(() => {
      const now = this.now();
      if (!this.leases.current(lease)) throw new FencedError(id, lease.fence);
      const s = batch.snapshot;
      const snapshot = JSON.stringify(s);
      if (!this.updateSession(lease, batch.expectedVersion, s, snapshot, now)) {
        const row = this.store
          .sql('SELECT version, fence FROM sessions WHERE channel = ? AND user = ?')
          .get(lease.channel, lease.user) as { version: number; fence: number } | undefined;
        if (row && row.fence > lease.fence) throw new FencedError(id, lease.fence);
        if ((row?.version ?? 0) !== batch.expectedVersion)
          throw new VersionConflictError(id, batch.expectedVersion);
        this.store
          .sql(
            `INSERT INTO sessions (channel, user, wa_id, user_id, step, needs_agent, version, fence, updated_at,
               snapshot, flow, active_at)
             VALUES (@channel, @user, @wa_id, @user_id, @step, @needs_agent, @version, @fence, @updated_at,
               @snapshot, @flow, @active_at)
             ON CONFLICT (channel, user) DO UPDATE SET wa_id = excluded.wa_id, user_id = excluded.user_id,
               step = excluded.step, needs_agent = excluded.needs_agent, version = excluded.version,
               fence = excluded.fence, updated_at = excluded.updated_at, snapshot = excluded.snapshot,
               flow = excluded.flow, active_at = excluded.active_at`,
          )
          .run({
            channel: s.channel,
            user: s.user,
            wa_id: s.waId ?? null,
            user_id: s.userId ?? null,
            step: s.step,
            needs_agent: s.needsAgent ? 1 : 0,
            version: s.version,
            fence: lease.fence,
            updated_at: now,
            snapshot,
            flow: s.flow,
            active_at: activeAt(s),
          });
      }
      const rec = this.store.sql(
        'INSERT INTO transitions (channel, user, version, record) VALUES (?, ?, ?, ?)',
      );
      for (const r of batch.records) rec.run(s.channel, s.user, r.version, JSON.stringify(r));
      const out = this.store.sql(
        `INSERT INTO outbound (id, channel, user, seq, status, attempts, claims, provider_message_id,
           last_error, created_at, updated_at, record)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      for (const o of batch.outbound)
        out.run(
          o.id,
          o.channel,
          o.user,
          o.seq,
          o.status,
          o.attempts,
          o.claims ?? 1,
          o.providerMessageId ?? null,
          o.lastError ?? null,
          now,
          now,
          JSON.stringify(o),
        );
      const done = this.store.sql(`UPDATE inbound SET state = 'done' WHERE id = ? AND state = 'pending'`);
      for (const m of batch.consumed) this.store.staged.pending -= done.run(m).changes;
      const deadPending = this.store.sql(
        `UPDATE inbound SET state = 'dead' WHERE id = ? AND state = 'pending'`,
      );
      const dead = this.store.sql(`UPDATE inbound SET state = 'dead' WHERE id = ?`);
      for (const d of batch.deadLetters) {
        this.insertDeadLetter(d);
        if (d.kind !== 'inbound') continue;
        const changed = deadPending.run(d.ref).changes;
        this.store.staged.pending -= changed;
        if (changed === 0) dead.run(d.ref);
      }
      return DURABLE;
    });
  }

  /**
   * A batch's state write in one statement, for the usual case: the session's row exists at the
   * expected version, no newer fence wrote it, and its wa_id and user id stay. Those two are
   * indexed, and SQLite rewrites the index entry of every column an UPDATE assigns, changed or
   * not: leaving them out spares two index pages per commit. False when the row did not match
   * (first commit, new ids, or a refusal): the caller checks and upserts.
   */
  private updateSession(
    lease: LeaseGrant,
    expectedVersion: number,
    s: SessionSnapshot,
    snapshot: string,
    now: number,
  ): boolean {
    if (s.channel !== lease.channel || s.user !== lease.user) return false;
    return (
      this.store
        .sql(
          `UPDATE sessions SET step = ?, needs_agent = ?, version = ?, fence = ?, updated_at = ?, snapshot = ?,
             flow = ?, active_at = ?
           WHERE channel = ? AND user = ? AND version = ? AND fence <= ? AND wa_id IS ? AND user_id IS ?`,
        )
        .run(
          s.step,
          s.needsAgent ? 1 : 0,
          s.version,
          lease.fence,
          now,
          snapshot,
          s.flow,
          activeAt(s),
          s.channel,
          s.user,
          expectedVersion,
          lease.fence,
          s.waId ?? null,
          s.userId ?? null,
        ).changes === 1
    );
  }

  async resolvePrompts(key: SessionKey, ids: readonly string[]): Promise<Map<string, PromptRef>> {
    const out = new Map<string, PromptRef>();
    const q = this.store.sql(
      'SELECT record FROM outbound WHERE provider_message_id = ? AND channel = ? AND user = ?',
    );
    const alias = this.store.sql(
      `SELECT o.record FROM outbound_aliases a JOIN outbound o ON o.id = a.outbound_id
         WHERE a.provider_message_id = ? AND a.channel = ? AND o.user = ?`,
    );
    for (const id of ids) {
      const row = (q.get(id, key.channel, key.user) ?? alias.get(id, key.channel, key.user)) as
        { record: string } | undefined;
      if (!row) continue;
      const r = JSON.parse(row.record) as OutboundRecord;
      if (r.isPrompt) out.set(id, { step: r.step, version: r.version });
    }
    return out;
  }

  // --- outbox --------------------------------------------------------------------------

  async unsent(key: SessionKey): Promise<OutboundRecord[]> {
    const rows = this.store
      .sql(
        `SELECT ${OUTBOUND_ROW} FROM outbound
         WHERE channel = ? AND user = ? AND status IN ('pending', 'sending') ORDER BY seq`,
      )
      .all(key.channel, key.user) as OutboundRow[];
    return rows.map(outboundRecord);
  }

  updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    return this.store.write(() => this.patchOutbound(id, patch));
  }

  private patchOutbound(id: string, patch: OutboundPatch): void {
    const row = this.store
      .sql(
        'SELECT status, provider_message_id AS pmid, channel, last_error AS err FROM outbound WHERE id = ?',
      )
      .get(id) as
      { status: OutboundStatus; pmid: string | null; channel: string; err: string | null } | undefined;
    if (!row) return;
    // A status webhook may have moved it on already (delivered before we recorded `sent`).
    let status = laterStatus(row.status, patch.status);
    let lastError = patch.lastError ?? null;
    const cur = { status: row.status, lastError: row.err, providerMessageId: row.pmid };
    if (sentDespiteReset(cur, patch.status, patch.providerMessageId)) {
      status = 'sent';
      lastError = SENT_DESPITE_RESET;
    }
    // Or arrived before the send was recorded at all: parked, it applies now.
    const early =
      patch.providerMessageId === undefined
        ? undefined
        : this.webhooks.earlyStatus(patch.providerMessageId, row.channel);
    if (early) {
      status = laterStatus<OutboundStatus>(status, early.status);
      lastError = early.last_error ?? lastError;
      this.store.sql('DELETE FROM early_statuses WHERE provider_message_id = ?').run(patch.providerMessageId);
    }
    // The send that counts is one recorded while the record waited: a second send recorded after
    // one already was (a holder that lost its lease) keeps the first id.
    const waiting = row.status === 'pending' || row.status === 'sending';
    const pmid = row.pmid === null || waiting ? (patch.providerMessageId ?? row.pmid) : row.pmid;
    // The columns alone: the record's JSON keeps what its commit wrote (see outboundRecord).
    this.store
      .sql(
        `UPDATE outbound SET status = ?, attempts = COALESCE(?, attempts), claims = COALESCE(?, claims),
         provider_message_id = ?, last_error = COALESCE(?, last_error),
         not_before = COALESCE(?, not_before), updated_at = ? WHERE id = ?`,
      )
      .run(
        status,
        patch.attempts ?? null,
        patch.claims ?? null,
        pmid,
        lastError,
        patch.notBefore ?? null,
        this.now(),
        id,
      );
  }

  claimOutbound(lease: LeaseGrant, ids: readonly string[], delta: 1 | -1): Promise<Array<number | null>> {
    return this.store.write(() => {
      // A give-back is not fenced (see Backend.claimOutbound).
      if (delta > 0 && !this.leases.current(lease)) throw new FencedError(sessionId(lease), lease.fence);
      // A claim names its holder (OutboundRecord.claimedBy, in the JSON): rewritten only when
      // another holder claims (a turn's later replies are claimed by the holder that committed them).
      const claim = this.store.sql(
        `UPDATE outbound SET claims = MAX(0, claims + @delta), updated_at = @now,
             record = CASE WHEN @delta > 0 AND json_extract(record, '$.claimedBy') IS NOT @holder
                      THEN json_set(record, '$.claimedBy', @holder) ELSE record END
           WHERE id = @id AND channel = @channel AND user = @user AND status IN ('pending', 'sending')
           RETURNING claims`,
      );
      const now = this.now();
      const { channel, user, holder } = lease;
      return ids.map((id) => {
        const row = claim.get({ delta, now, holder, id, channel, user }) as { claims: number } | undefined;
        return row?.claims ?? null;
      });
    });
  }

  deadLetter(letter: DeadLetter): Promise<void> {
    return this.store.write(() => this.insertDeadLetter(letter));
  }

  /**
   * An id already stored is left as is, unless an agent replayed it and it failed again since:
   * then it is open again with the new failure (the same message or reply fails under one id).
   */
  private insertDeadLetter(d: DeadLetter): void {
    this.store.staged.deadLetters += this.store
      .sql(
        `INSERT INTO dead_letters (id, kind, channel, user, ref, reason, payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
           payload = excluded.payload, created_at = excluded.created_at, replayed_at = NULL
         WHERE dead_letters.replayed_at IS NOT NULL AND excluded.created_at > dead_letters.replayed_at`,
      )
      .run(d.id, d.kind, d.channel, d.user, d.ref, d.reason, JSON.stringify(d.payload), d.createdAt).changes;
  }

  // --- admin ---------------------------------------------------------------------------

  async findSessions(user: string, channel?: string): Promise<SessionSnapshot[]> {
    return reads.findSessions(this.store, user, channel);
  }

  async countSessions(activeSinceMs?: number): Promise<SessionCount[]> {
    return reads.countSessions(this.store, activeSinceMs);
  }

  async listSessions(q: SessionQuery): Promise<{ sessions: SessionSnapshot[]; nextCursor: string | null }> {
    return reads.listSessions(this.store, q);
  }

  async transitions(key: SessionKey, newest?: number): Promise<TransitionRecord[]> {
    return reads.transitions(this.store, key, newest);
  }

  async outbound(key: SessionKey, newest?: number): Promise<OutboundRecord[]> {
    return reads.outbound(this.store, key, newest);
  }

  async inbound(key: SessionKey, newest?: number): Promise<StoredMessage[]> {
    return reads.inbound(this.store, key, newest);
  }

  async failedReplies(limit: number): Promise<FailedReply[]> {
    return reads.failedReplies(this.store, limit);
  }

  async listDeadLetters(limit: number, after?: DeadLetterCursor): Promise<DeadLetter[]> {
    return reads.listDeadLetters(this.store, limit, after);
  }

  async getDeadLetter(id: string): Promise<DeadLetter | null> {
    return reads.getDeadLetter(this.store, id);
  }

  async leaseInfo(key: SessionKey): Promise<LeaseInfo | null> {
    return this.leases.info(key);
  }

  async replayDeadLetter(id: string): Promise<boolean> {
    const row = this.store.sql('SELECT * FROM dead_letters WHERE id = ? AND replayed_at IS NULL').get(id) as
      Row | undefined;
    if (!row || row.kind === 'unreadable') return false;
    const key = { channel: row.channel as string, user: row.user as string };
    await this.store.write(() => {
      if (row.kind === 'inbound') {
        this.store.seq += 1;
        const storedAt = this.now();
        const body = JSON.parse(row.payload as string) as StoredMessage;
        const was = this.store.sql('SELECT state FROM inbound WHERE id = ?').get(body.id) as
          { state: string } | undefined;
        if (was?.state !== 'pending') this.store.staged.pending += 1;
        this.store
          .sql(
            `INSERT INTO inbound (id, channel, user, seq, stored_at, state, body) VALUES (?, ?, ?, ?, ?, 'pending', ?)
             ON CONFLICT (id) DO UPDATE SET state = 'pending', seq = excluded.seq, stored_at = excluded.stored_at,
             body = excluded.body`,
          )
          .run(
            body.id,
            key.channel,
            key.user,
            this.store.seq,
            storedAt,
            JSON.stringify({ ...body, seq: this.store.seq, storedAt, replayed: true }),
          );
      } else {
        // By the status rule (statusAllowed): a reply sent since (its failure never recorded on
        // it, a later holder sent it) is not queued again.
        this.store
          .sql(
            `UPDATE outbound SET status = 'pending', attempts = 0, claims = 0, last_error = NULL, updated_at = ?
             WHERE id = ? AND status NOT IN ('sent', 'delivered', 'read', 'played')`,
          )
          .run(this.now(), row.ref);
      }
      this.store.staged.deadLetters -= this.store
        .sql('UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL')
        .run(this.now(), id).changes;
    });
    if (row.kind === 'outbound') this.due.schedule(key, this.now());
    else if (!this.leases.isHeld(key)) this.rescheduleIfPending(key);
    return true;
  }

  countStored(n: number): void {
    this.rate.add(this.now(), n);
  }

  /**
   * Costs the same whatever is stored: the counts are kept by the writes, the oldest pending
   * message is one step down a partial index; unsent sends are counted on theirs.
   */
  async stats(): Promise<BackendStats> {
    const p = this.store.sql(`SELECT MIN(stored_at) AS first FROM inbound WHERE state = 'pending'`).get() as {
      first: number | null;
    };
    const u = this.store
      .sql(
        `SELECT COUNT(*) AS n, MIN(created_at) AS first FROM outbound WHERE status IN ('pending', 'sending')`,
      )
      .get() as { n: number; first: number | null };
    const now = this.now();
    return {
      queueDepth: this.store.counts.pending,
      oldestPendingMs: p.first === null ? 0 : Math.max(0, now - p.first),
      locksHeld: this.leases.count(),
      deadLetters: this.store.counts.deadLetters,
      workers: this.leases.workers(),
      messagesPerSecond: this.rate.perSecond(now),
      unsent: u.n,
      oldestUnsentMs: u.first === null ? 0 : Math.max(0, now - u.first),
    };
  }

  async holderBeat(processId: string, ttlMs: number, stops = false): Promise<void> {
    this.leases.holderBeat(processId, ttlMs, stops);
  }

  async heartbeat(workerId: string, ttlMs: number, serves: readonly ServedFlow[] = []): Promise<void> {
    this.leases.heartbeat(workerId, ttlMs, serves);
  }

  async flowServedUntil(id: string, version: number): Promise<number> {
    return this.leases.flowServedUntil(id, version);
  }

  async removeWorker(workerId: string): Promise<void> {
    this.leases.removeWorker(workerId);
  }

  revokeSignIn(id: string, untilMs: number): Promise<void> {
    return this.store.write(() => {
      this.store
        .sql('INSERT OR REPLACE INTO signed_out (id, until) VALUES (?, ?)')
        .run(id, Math.ceil(untilMs));
    });
  }

  async signInRevoked(id: string): Promise<boolean> {
    return (
      this.store.sql('SELECT 1 FROM signed_out WHERE id = ? AND until > ?').get(id, this.now()) !== undefined
    );
  }

  /** One process holds the data directory: it always leads; what it announced survives a restart. */
  readonly alerts: AlertStore = {
    lead: async () => true,
    firing: async () =>
      new Set(
        (this.store.sql('SELECT alert FROM alerts_firing').all() as Array<{ alert: string }>).map(
          (r) => r.alert,
        ),
      ),
    setFiring: (alert, firing, at) =>
      this.store.write(() => {
        if (firing)
          this.store.sql('INSERT OR REPLACE INTO alerts_firing (alert, since) VALUES (?, ?)').run(alert, at);
        else this.store.sql('DELETE FROM alerts_firing WHERE alert = ?').run(alert);
      }),
  };
}
