/**
 * Embedded backend: one process, one SQLite file (WAL), in-process leases. Every webhook is
 * committed to SQLite, and the WAL synced, before `ingest` resolves; concurrent ingests share one
 * transaction (group commit) and one sync, made off the event loop (`wal-sync.ts`), and WAL
 * checkpoints run on a thread of their own (`checkpointer.ts`). Fencing tokens are persisted
 * with each session, and the grant counter starts above every stored one, so a restart never
 * reuses a token that wrote.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { ensureDataDir, lockDataDir, type DirLock } from './dir-lock.ts';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FencedError, StorageUnavailableError, VersionConflictError } from '../../errors.ts';
import {
  ALIAS_SEARCH_DEPTH,
  EARLY_STATUS_TTL_MS,
  laterStatus,
  rekeyed,
  SENT_DESPITE_RESET,
  sentDespiteReset,
  sessionId,
  statusLastError,
  type DeliveryStatus,
  type InboundMessage,
  type SessionKey,
  type StatusUpdate,
  type StoredMessage,
  userIdOnly,
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
} from '../types.ts';
import { CLEARED_LEASE_MEMORY_MS, type ClearedLease } from '../types.ts';
import { DueQueue } from './due-queue.ts';
import { TurnPacer, type TurnPacerOptions } from './turn-pacer.ts';
import { WalSync } from './wal-sync.ts';
import { Checkpointer, SAFETY_NET_PAGES, type CheckpointStats } from './checkpointer.ts';
import { MIGRATIONS } from './schema.ts';
import { StoredRate } from '../throughput.ts';
import { EmbeddedPurge } from './purge.ts';
import type { PurgeReport, RetentionOptions } from '../retention.ts';

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
   * `false`: a store of an older schema is refused, not upgraded (a one-shot command such as
   * `baton session show` changes nothing; an upgraded store is refused by the older Baton).
   * Default: upgraded.
   */
  readonly migrate?: boolean;
}

interface Lease {
  readonly token: string;
  readonly holder: string;
  readonly fence: number;
  expiresAt: number;
}

interface PendingWrite {
  readonly fn: () => unknown;
  readonly after: (() => void) | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: unknown) => void;
}

type Row = Record<string, unknown>;

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The group commit's transaction statements. */
interface TxStatements {
  readonly begin: Database.Statement;
  readonly commit: Database.Statement;
  readonly rollback: Database.Statement;
  readonly savepoint: Database.Statement;
  readonly release: Database.Statement;
  readonly rollbackTo: Database.Statement;
}

/** What `stats` counts, kept up to date by the writes themselves (no scan per read). */
interface Counts {
  /** Inbound messages in state `pending`. */
  pending: number;
  /** Dead letters not replayed. */
  deadLetters: number;
}

/** The columns an outbound record is read from (see {@link outboundRecord}). */
const OUTBOUND_ROW = 'record, status, attempts, claims, provider_message_id, last_error, not_before';

interface OutboundRow {
  readonly record: string;
  readonly status: OutboundStatus;
  readonly attempts: number;
  readonly claims: number;
  readonly provider_message_id: string | null;
  readonly last_error: string | null;
  readonly not_before: number | null;
}

/**
 * An outbound record: its JSON as its commit wrote it, with the status columns over it. Sends and
 * status webhooks write the columns alone (a record's JSON is most of its row, and was rewritten
 * at every change before); rows written before that have the same values in both.
 */
function outboundRecord(row: OutboundRow): OutboundRecord {
  const { providerMessageId: _p, lastError: _e, ...fixed } = JSON.parse(row.record) as OutboundRecord;
  return {
    ...fixed,
    status: row.status,
    attempts: row.attempts,
    claims: row.claims,
    ...(row.provider_message_id !== null ? { providerMessageId: row.provider_message_id } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error } : {}),
    ...(row.not_before !== null ? { notBefore: row.not_before } : {}),
  };
}

/** Delay before a session whose replies were left unsent is taken up again. */
const UNSENT_RETRY_MS = 1000;

export class EmbeddedBackend implements Backend {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly due: DueQueue;
  private readonly pacer: TurnPacer | null;
  private readonly leases = new Map<string, Lease>();
  /** When an agent last cleared each session's lease, and from whom (see `leaseCleared`). */
  private readonly cleared = new Map<string, ClearedLease>();
  /** New messages stored from webhooks, per second (messages_per_s). */
  private readonly rate = new StoredRate();
  /** Worker id -> heartbeat expiry, epoch ms. */
  private readonly workerBeats = new Map<string, number>();
  private fenceCounter = 0;
  private seq = 0;
  private writes: PendingWrite[] = [];
  /** Sessions whose baton an agent waits for, until when (see wantLease). */
  private readonly wanted = new Map<string, number>();
  private readonly statements = new Map<string, Database.Statement>();
  private txStatements: TxStatements | undefined;
  /** A read transaction is open (see `beginRead`). */
  private reading = false;
  /** Makes commits durable off the event loop (a file store); null: SQLite syncs in COMMIT. */
  private readonly walSync: WalSync | null = null;
  /** Runs WAL checkpoints on a thread of their own (a file store); null: SQLite's own, in COMMIT. */
  private checkpointer: Checkpointer | null = null;
  private flushScheduled = false;
  /** Committed counts. */
  private readonly counts: Counts = { pending: 0, deadLetters: 0 };
  /** Changes to `counts` made inside the group transaction being written (applied once it commits). */
  private staged: Counts = { pending: 0, deadLetters: 0 };
  private purgeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The retention pass (purge.ts). */
  private readonly purger: EmbeddedPurge;
  /** The data directory's lock (none for an explicit `file`, such as `:memory:`). */
  private readonly dirLock: DirLock | null = null;
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
    try {
      this.db = new Database(file);
      if (opts.file === undefined) ownerOnly(file);
    } catch (err) {
      this.dirLock?.release();
      throw err;
    }
    this.db.pragma('journal_mode = WAL');
    // Deleted rows (messages past their retention) are overwritten where that costs no extra I/O.
    this.db.pragma('secure_delete = FAST');
    if (file === ':memory:' || file === '') {
      this.db.pragma('synchronous = FULL');
    } else {
      // Durable all the same: no write is reported done before the WAL is synced (`wal-sync.ts`).
      this.db.pragma('synchronous = NORMAL');
      this.walSync = new WalSync(`${file}-wal`);
      this.db.pragma(`wal_autocheckpoint = ${SAFETY_NET_PAGES}`);
      this.checkpointer = new Checkpointer(file, {
        ...(opts.walIdleMs !== undefined ? { idleMs: opts.walIdleMs } : {}),
        onFailure: (err) => {
          this.checkpointer = null;
          if (this.closed) return;
          this.db.pragma('wal_autocheckpoint = 1000');
          process.emitWarning(`Baton: WAL checkpoints are back on the event loop: ${err.message}`);
        },
      });
    }
    this.db.pragma('busy_timeout = 5000');
    // Each write of a group commit runs in a savepoint, whose journal keeps the first copy of
    // every page the write changes: in a temporary file that was two pwrite calls per page, about
    // 13 pages per message, more system calls than the WAL itself. In memory it is a copy.
    this.db.pragma('temp_store = MEMORY');
    this.due = new DueQueue(this.now);
    this.purger = new EmbeddedPurge({
      sql: (text) => this.sql(text),
      secureDelete: (on) => this.db.pragma(`secure_delete = ${on ? 'ON' : 'FAST'}`),
      now: () => this.now(),
      options: this.opts,
      closed: () => this.closed,
      countDeadLetters: () => this.countDeadLetters(),
      written: () => this.checkpointer?.committed(),
      ingest: (batch) => this.ingest(batch),
      queueDepth: () => this.counts.pending,
    });
    this.pacer = opts.pacing === false ? null : new TurnPacer(opts.pacing ?? {});
  }

  /**
   * A prepared statement, compiled once per SQL text. A read joins the open read transaction
   * (see {@link beginRead}); a write outside the group commit (the purge) ends it first.
   */
  private sql(text: string): Database.Statement {
    let stmt = this.statements.get(text);
    if (stmt === undefined) {
      stmt = this.db.prepare(text);
      this.statements.set(text, stmt);
    }
    if (stmt.readonly) this.beginRead();
    else if (this.reading) this.endRead();
    return stmt;
  }

  /** The transaction statements, prepared once. */
  private get tx(): TxStatements {
    return (this.txStatements ??= {
      begin: this.db.prepare('BEGIN'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK'),
      savepoint: this.db.prepare('SAVEPOINT write'),
      release: this.db.prepare('RELEASE write'),
      rollbackTo: this.db.prepare('ROLLBACK TO write'),
    });
  }

  /**
   * Reads made outside a write share one read transaction, ended once the event loop moves on
   * (and before any write). Alone, every statement is a transaction of its own, and each WAL
   * read transaction takes and drops a read lock on the `-shm` file: two fcntl calls. A turn
   * reads the mailbox, the state and the outbox, and the sessions whose group commit settles
   * together read in the same tick. Only this connection writes, and it ends the read
   * transaction before it does, so a read always sees the latest commit.
   */
  private beginRead(): void {
    if (this.reading || this.db.inTransaction) return;
    this.tx.begin.run();
    this.reading = true;
    setImmediate(this.endRead);
  }

  private readonly endRead = (): void => {
    if (!this.reading) return;
    this.reading = false;
    if (this.db.inTransaction) this.tx.commit.run();
  };

  async init(): Promise<void> {
    const current = this.db.pragma('user_version', { simple: true }) as number;
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
    for (let v = current; v < MIGRATIONS.length; v += 1) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
    this.schemaChange = { from: current, to: MIGRATIONS.length };
    this.seq = (this.sql('SELECT COALESCE(MAX(seq), 0) AS s FROM inbound').get() as { s: number }).s;
    this.fenceCounter = (
      this.sql('SELECT COALESCE(MAX(fence), 0) AS f FROM sessions').get() as { f: number }
    ).f;
    // Counted once here; from now on every write that changes them keeps them.
    this.counts.pending = (
      this.sql(`SELECT COUNT(*) AS n FROM inbound WHERE state = 'pending'`).get() as { n: number }
    ).n;
    this.countDeadLetters();
    // Whatever was pending when the process stopped is due now.
    const rows = this.sql(
      `SELECT channel, user, MIN(stored_at) AS first FROM inbound WHERE state = 'pending' GROUP BY channel, user`,
    ).all() as Array<{ channel: string; user: string; first: number }>;
    for (const r of rows)
      this.due.schedule({ channel: r.channel, user: r.user }, r.first + this.opts.bufferMs);
    // Replies committed but not yet sent when the process stopped: their sessions are due too.
    const unsent = this.sql(
      `SELECT DISTINCT channel, user FROM outbound WHERE status IN ('pending', 'sending')`,
    ).all() as Array<{ channel: string; user: string }>;
    for (const r of unsent) this.due.schedule({ channel: r.channel, user: r.user }, this.now());
    const purge = (): void => void this.purge().catch(() => undefined);
    purge();
    const every = this.opts.purgeIntervalMs ?? 60_000;
    if (every > 0) {
      this.purgeTimer = setInterval(purge, every);
      this.purgeTimer.unref();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.flush();
    this.walSync?.close();
    await this.checkpointer?.close();
    this.due.close();
    this.endRead();
    this.db.close();
    this.dirLock?.release();
  }

  /** What the checkpoint thread has done; null when it is not running (`:memory:`, or it failed). */
  get checkpoints(): Readonly<CheckpointStats> | null {
    return this.checkpointer?.stats ?? null;
  }

  async health(): Promise<Record<string, boolean>> {
    try {
      this.sql('SELECT 1').get();
      return { sqlite: true };
    } catch {
      return { sqlite: false };
    }
  }

  // --- intake --------------------------------------------------------------------------

  ingest(batch: WebhookBatch): Promise<IngestResult> {
    const touched = new Map<string, { key: SessionKey; storedAt: number }>();
    return this.write(
      () => {
        // On a busy machine the group commit may come well after the webhook arrived: the
        // arrival is what the buffer window measures.
        const storedAt = Math.min(this.now(), batch.receivedAt ?? Number.POSITIVE_INFINITY);
        const insert = this.sql(
          `INSERT INTO inbound (id, channel, user, seq, stored_at, state, body) VALUES (?, ?, ?, ?, ?, 'pending', ?)
           ON CONFLICT (id) DO NOTHING`,
        );
        let accepted = 0;
        let duplicates = 0;
        const taught = new Map<string, { user: string; at: number }>();
        for (const m of batch.messages) {
          if (m.userId === undefined || m.waId === undefined || m.user !== m.waId) continue;
          const id = `${m.channel}\n${m.userId}`;
          if ((taught.get(id)?.at ?? -1) <= m.timestamp) taught.set(id, { user: m.user, at: m.timestamp });
        }
        for (const given of batch.messages) {
          const m = this.routed(given, taught);
          const stored: StoredMessage = { ...m, seq: this.seq + 1, storedAt };
          const info = insert.run(m.id, m.channel, m.user, stored.seq, storedAt, JSON.stringify(stored));
          if (info.changes === 1) {
            this.bind(m);
            this.seq += 1;
            accepted += 1;
            this.staged.pending += 1;
            const id = sessionId(m);
            if (!touched.has(id)) touched.set(id, { key: { channel: m.channel, user: m.user }, storedAt });
          } else {
            duplicates += 1;
          }
        }
        let statuses = 0;
        for (const st of batch.statuses) statuses += this.applyStatus(st);
        return { accepted, duplicates, statuses };
      },
      () => {
        for (const { key, storedAt } of touched.values()) {
          if (!this.isLeased(key) && !this.due.has(key))
            this.due.schedule(key, storedAt + this.opts.bufferMs);
        }
      },
    );
  }

  /**
   * `m`, if it names its sender by business-scoped user id alone, under the session of the phone
   * number that id last came with (model/message.ts, userIdOnly). Inside the intake's write.
   */
  private routed(
    m: InboundMessage,
    taught: ReadonlyMap<string, { user: string; at: number }>,
  ): InboundMessage {
    const userId = userIdOnly(m);
    if (userId === undefined) return m;
    const bound = this.sql('SELECT user, at FROM user_aliases WHERE channel = ? AND user_id = ?').get(
      m.channel,
      userId,
    ) as { user: string; at: number } | undefined;
    // A number the same webhook names the user id with counts at once, if it is as late.
    const named = taught.get(`${m.channel}\n${userId}`);
    const to = named !== undefined && (bound === undefined || named.at >= bound.at) ? named : bound;
    return to === undefined ? m : rekeyed(m, to.user);
  }

  /**
   * A message stored (not a duplicate) that names its sender by number and user id binds the id
   * to the number, if it is as late or later (by WhatsApp's timestamp) than the message that bound
   * it: a redelivered or late message from an old number does not take the user back there.
   */
  private bind(m: InboundMessage): void {
    if (m.userId === undefined || m.waId === undefined || m.user !== m.waId) return;
    this.sql(
      `INSERT INTO user_aliases (channel, user_id, user, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (channel, user_id) DO UPDATE SET user = excluded.user, at = excluded.at
         WHERE excluded.at >= user_aliases.at`,
    ).run(m.channel, m.userId, m.user, m.timestamp);
  }

  /**
   * Runs `fn` inside the next group transaction: every write requested in the same tick
   * (webhooks, batch commits, send records) shares one SQLite commit, so one fsync serves them
   * all. Each write runs in its own savepoint: one that throws is rolled back alone and its
   * caller gets the error. `after` runs once the group is durable.
   */
  private write<T>(fn: () => T, after?: () => void): Promise<T> {
    if (this.closed) return Promise.reject(new StorageUnavailableError('embedded store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.writes.push({ fn, after, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // While the WAL is being synced, the group grows until the sync is done (`wal-sync.ts`).
        if (this.walSync?.busy) this.walSync.whenIdle(this.flushSoon);
        else setImmediate(this.flushNow);
      }
    });
  }

  private readonly flushNow = (): void => this.flush();
  /** After a sync: in the check phase, so the webhooks read in this poll phase join the group. */
  private readonly flushSoon = (): void => void setImmediate(this.flushNow);

  private flush(): void {
    this.flushScheduled = false;
    const work = this.writes;
    this.writes = [];
    if (work.length === 0) return;
    const seq = this.seq;
    this.staged = { pending: 0, deadLetters: 0 };
    let outcomes: Outcome[];
    try {
      outcomes = this.groupCommit(work);
    } catch (err) {
      this.seq = seq;
      this.staged = { pending: 0, deadLetters: 0 };
      const e = new StorageUnavailableError('could not write to SQLite', err);
      for (const w of work) w.reject(e);
      return;
    }
    this.counts.pending += this.staged.pending;
    this.counts.deadLetters += this.staged.deadLetters;
    this.staged = { pending: 0, deadLetters: 0 };
    this.checkpointer?.committed();
    const settle = (syncError: Error | null): void => {
      const failed = syncError ? new StorageUnavailableError("could not sync SQLite's WAL", syncError) : null;
      work.forEach((w, i) => {
        const o = outcomes[i]!;
        if (failed) return w.reject(failed);
        if (!o.ok) return w.reject(o.error);
        w.after?.();
        w.resolve(o.value);
      });
    };
    if (this.walSync) this.walSync.afterCommit(settle);
    else settle(null);
  }

  /**
   * One transaction for the group; each write in a savepoint of its own (statements prepared
   * once), so one that throws is rolled back alone.
   */
  private readonly groupCommit = (work: readonly PendingWrite[]): Outcome[] => {
    const outcomes: Outcome[] = [];
    this.endRead();
    const sp = this.tx;
    sp.begin.run();
    try {
      for (const w of work) {
        const mark = { ...this.staged };
        sp.savepoint.run();
        try {
          outcomes.push({ ok: true, value: w.fn() });
          sp.release.run();
        } catch (error) {
          this.staged = mark;
          sp.rollbackTo.run();
          sp.release.run();
          outcomes.push({ ok: false, error });
        }
      }
      sp.commit.run();
    } catch (err) {
      if (this.db.inTransaction) sp.rollback.run();
      throw err;
    }
    return outcomes;
  };

  /**
   * A status webhook, by {@link statusAllowed} like the distributed backend: its last error is
   * kept even when the status stays (a failed webhook after delivered), and a record found counts
   * as applied whether or not its status moved.
   */
  private applyStatus(st: StatusUpdate): number {
    // By the channel too: a status names a send of its own gateway and number only (a WASender
    // webhook, authenticated by a shared secret, cannot touch a Cloud API record).
    const row = this.sql('SELECT id, status FROM outbound WHERE provider_message_id = ? AND channel = ?').get(
      st.messageId,
      st.channel,
    ) as { id: string; status: OutboundStatus } | undefined;
    if (!row) {
      this.learnAlias(st);
      this.parkStatus(st);
      return 0;
    }
    const status = laterStatus<OutboundStatus>(row.status, st.status);
    const lastError = statusLastError(st);
    if (status === row.status && lastError === null) return 1;
    this.sql(
      'UPDATE outbound SET status = ?, last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?',
    ).run(status, lastError, this.now(), row.id);
    return 1;
  }

  /**
   * A status about a provider id no record has: when its `biz_opaque_callback_data` names one of
   * the session's recent replies (unique per user, SPEC 3), the id is another copy of that reply,
   * kept as its alias. A copy is sent and not recorded when its holder dies in between; the
   * reply is then sent again, and a button on the first copy must still read as that prompt's
   * (SPEC 1.7). The status itself stays parked: it applies only to the send that reports its id.
   */
  private learnAlias(st: StatusUpdate): void {
    const data = st.bizOpaqueCallbackData;
    if (data === undefined || !data.startsWith('baton:')) return;
    const row = this.sql(
      `SELECT id FROM (SELECT id, record FROM outbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?)
         WHERE json_extract(record, '$.callbackData') = ?`,
    ).get(st.channel, st.recipient, ALIAS_SEARCH_DEPTH, data) as { id: string } | undefined;
    if (!row) return;
    this.sql(
      'INSERT OR IGNORE INTO outbound_aliases (provider_message_id, channel, outbound_id, at) VALUES (?, ?, ?, ?)',
    ).run(st.messageId, st.channel, row.id, this.now());
  }

  /**
   * Keeps a status webhook about a send not recorded yet (WhatsApp may report it before the
   * send's answer is recorded): merged by the status rule with any parked before it, and applied
   * by {@link patchOutbound} when the send is recorded. See EARLY_STATUS_TTL_MS.
   */
  private parkStatus(st: StatusUpdate): void {
    const prev = this.earlyStatus(st.messageId, st.channel);
    this.sql(
      `INSERT INTO early_statuses (provider_message_id, channel, status, last_error, at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (provider_message_id) DO UPDATE
           SET channel = excluded.channel, status = excluded.status, last_error = excluded.last_error`,
    ).run(
      st.messageId,
      st.channel,
      prev ? laterStatus(prev.status, st.status) : st.status,
      statusLastError(st) ?? prev?.last_error ?? null,
      this.now(),
    );
  }

  /**
   * The status parked for `providerMessageId` on `channel`, unless it is older than
   * EARLY_STATUS_TTL_MS.
   */
  private earlyStatus(
    providerMessageId: string,
    channel: string,
  ): { status: DeliveryStatus; last_error: string | null } | undefined {
    return this.sql(
      // '' is a status parked before the channel was kept (migration 8): it expires within minutes.
      "SELECT status, last_error FROM early_statuses WHERE provider_message_id = ? AND channel IN (?, '') AND at >= ?",
    ).get(providerMessageId, channel, this.now() - EARLY_STATUS_TTL_MS) as
      { status: DeliveryStatus; last_error: string | null } | undefined;
  }

  /** Counts the dead letters not replayed (at start, and after a purge deleted some). */
  private countDeadLetters(): void {
    this.counts.deadLetters = (
      this.sql('SELECT COUNT(*) AS n FROM dead_letters WHERE replayed_at IS NULL').get() as { n: number }
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

  private isLeased(key: SessionKey): boolean {
    const l = this.leases.get(sessionId(key));
    return l !== undefined && l.expiresAt > this.now();
  }

  async acquireLease(key: SessionKey, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    if (this.isLeased(key)) return null;
    const lease: Lease = {
      token: randomBytes(12).toString('hex'),
      holder,
      fence: ++this.fenceCounter,
      expiresAt: this.now() + ttlMs,
    };
    this.leases.set(sessionId(key), lease);
    // The holder takes whatever is pending; its release schedules the session again if need be
    // (as the distributed backend's grant replaces the session's ready entry).
    this.due.unschedule(key);
    return { channel: key.channel, user: key.user, token: lease.token, fence: lease.fence, holder };
  }

  private current(lease: LeaseGrant): Lease | undefined {
    const l = this.leases.get(sessionId(lease));
    return l !== undefined && l.token === lease.token && l.expiresAt > this.now() ? l : undefined;
  }

  async wantLease(key: SessionKey, ttlMs: number): Promise<void> {
    if (ttlMs > 0) this.wanted.set(sessionId(key), this.now() + ttlMs);
    else this.wanted.delete(sessionId(key));
  }

  async leaseWanted(key: SessionKey): Promise<boolean> {
    return (this.wanted.get(sessionId(key)) ?? 0) > this.now();
  }

  async renewLease(lease: LeaseGrant, ttlMs: number): Promise<boolean> {
    const l = this.current(lease);
    if (!l) return false;
    l.expiresAt = this.now() + ttlMs;
    return true;
  }

  async releaseLease(lease: LeaseGrant, notBeforeMs = 0): Promise<void> {
    const id = sessionId(lease);
    if (this.leases.get(id)?.token === lease.token) this.leases.delete(id);
    this.rescheduleIfPending(lease, this.now() + notBeforeMs);
  }

  async releaseOrTake(
    lease: LeaseGrant,
    limit: number,
    sent?: OutboundUpdate,
  ): Promise<StoredMessage[] | null> {
    if (sent) await this.updateOutbound(sent.id, sent.patch);
    const id = sessionId(lease);
    const mine = this.leases.get(id)?.token === lease.token;
    if (!mine || !this.current(lease) || this.closed) {
      if (mine) this.leases.delete(id);
      this.rescheduleIfPending(lease);
      return null;
    }
    // One mailbox read decides: due messages keep the lease; otherwise it is released and the
    // read says when the session is due again (as `rescheduleIfPending` would find).
    const due = await this.pending(lease, limit);
    const first = due[0];
    if (first !== undefined && first.storedAt + this.opts.bufferMs <= this.now()) return due;
    this.leases.delete(id);
    const key: SessionKey = { channel: lease.channel, user: lease.user };
    if (first !== undefined) this.due.schedule(key, first.storedAt + this.opts.bufferMs);
    else this.rescheduleIfUnsent(key);
    return null;
  }

  async clearLease(key: SessionKey): Promise<boolean> {
    const had = this.isLeased(key);
    const holder = had ? (this.leases.get(sessionId(key))?.holder ?? null) : null;
    this.cleared.set(sessionId(key), { at: this.now(), holder });
    this.leases.delete(sessionId(key));
    this.rescheduleIfPending(key);
    return had;
  }

  async leaseCleared(key: SessionKey): Promise<ClearedLease | null> {
    const cleared = this.cleared.get(sessionId(key));
    if (cleared === undefined) return null;
    if (cleared.at + CLEARED_LEASE_MEMORY_MS > this.now()) return cleared;
    this.cleared.delete(sessionId(key));
    return null;
  }

  async holderAlive(holder: string): Promise<boolean> {
    const now = this.now();
    for (const [id, until] of this.workerBeats)
      if (until > now && (holder === id || holder.startsWith(`${id}:`))) return true;
    return false;
  }

  /** Schedules the session if messages or replies wait, due no earlier than `notBefore` (epoch ms). */
  private rescheduleIfPending(k: SessionKey, notBefore = 0): void {
    if (this.closed) return;
    const key: SessionKey = { channel: k.channel, user: k.user };
    const row = this.sql(
      `SELECT MIN(stored_at) AS first FROM inbound INDEXED BY inbound_pending
         WHERE channel = ? AND user = ? AND state = 'pending'`,
    ).get(key.channel, key.user) as { first: number | null };
    if (row.first !== null) {
      this.due.schedule(key, Math.max(row.first + this.opts.bufferMs, notBefore));
      return;
    }
    this.rescheduleIfUnsent(key, notBefore);
  }

  /** Replies whose sending was cut short (lease lost, shutdown): try again shortly. */
  private rescheduleIfUnsent(key: SessionKey, notBefore = 0): void {
    const unsent = this.sql(
      `SELECT 1 FROM outbound WHERE channel = ? AND user = ? AND status IN ('pending', 'sending') LIMIT 1`,
    ).get(key.channel, key.user);
    if (unsent !== undefined) this.due.schedule(key, Math.max(this.now() + UNSENT_RETRY_MS, notBefore));
  }

  // --- mailbox and state ---------------------------------------------------------------

  async pending(key: SessionKey, limit: number): Promise<StoredMessage[]> {
    // The limit is written into the SQL (one statement per limit; the engine uses one): a bound
    // LIMIT is a value the query planner looks at, so SQLite prepared the statement again at every
    // call (measured: 6-7 us instead of 0.7 for an empty mailbox).
    if (!Number.isSafeInteger(limit)) throw new RangeError(`mailbox limit ${limit} is not an integer`);
    const rows = this.sql(
      // The partial index holds only pending rows: the session's history is not read row by row.
      `SELECT body FROM inbound INDEXED BY inbound_pending
         WHERE channel = ? AND user = ? AND state = 'pending' ORDER BY seq LIMIT ${limit}`,
    ).all(key.channel, key.user) as Array<{ body: string }>;
    return rows.map((r) => JSON.parse(r.body) as StoredMessage);
  }

  async load(key: SessionKey): Promise<SessionSnapshot | null> {
    const row = this.sql('SELECT snapshot FROM sessions WHERE channel = ? AND user = ?').get(
      key.channel,
      key.user,
    ) as { snapshot: string } | undefined;
    return row ? (JSON.parse(row.snapshot) as SessionSnapshot) : null;
  }

  commit(lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
    const id = sessionId(lease);
    return this.write(() => {
      const now = this.now();
      if (!this.current(lease)) throw new FencedError(id, lease.fence);
      const s = batch.snapshot;
      const snapshot = JSON.stringify(s);
      if (!this.updateSession(lease, batch.expectedVersion, s, snapshot, now)) {
        const row = this.sql('SELECT version, fence FROM sessions WHERE channel = ? AND user = ?').get(
          lease.channel,
          lease.user,
        ) as { version: number; fence: number } | undefined;
        if (row && row.fence > lease.fence) throw new FencedError(id, lease.fence);
        if ((row?.version ?? 0) !== batch.expectedVersion)
          throw new VersionConflictError(id, batch.expectedVersion);
        this.sql(
          `INSERT INTO sessions (channel, user, wa_id, user_id, step, needs_agent, version, fence, updated_at,
               snapshot, flow, active_at)
             VALUES (@channel, @user, @wa_id, @user_id, @step, @needs_agent, @version, @fence, @updated_at,
               @snapshot, @flow, @active_at)
             ON CONFLICT (channel, user) DO UPDATE SET wa_id = excluded.wa_id, user_id = excluded.user_id,
               step = excluded.step, needs_agent = excluded.needs_agent, version = excluded.version,
               fence = excluded.fence, updated_at = excluded.updated_at, snapshot = excluded.snapshot,
               flow = excluded.flow, active_at = excluded.active_at`,
        ).run({
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
      const rec = this.sql('INSERT INTO transitions (channel, user, version, record) VALUES (?, ?, ?, ?)');
      for (const r of batch.records) rec.run(s.channel, s.user, r.version, JSON.stringify(r));
      const out = this.sql(
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
      const done = this.sql(`UPDATE inbound SET state = 'done' WHERE id = ? AND state = 'pending'`);
      for (const m of batch.consumed) this.staged.pending -= done.run(m).changes;
      const deadPending = this.sql(`UPDATE inbound SET state = 'dead' WHERE id = ? AND state = 'pending'`);
      const dead = this.sql(`UPDATE inbound SET state = 'dead' WHERE id = ?`);
      for (const d of batch.deadLetters) {
        this.insertDeadLetter(d);
        if (d.kind !== 'inbound') continue;
        const changed = deadPending.run(d.ref).changes;
        this.staged.pending -= changed;
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
      this.sql(
        `UPDATE sessions SET step = ?, needs_agent = ?, version = ?, fence = ?, updated_at = ?, snapshot = ?,
             flow = ?, active_at = ?
           WHERE channel = ? AND user = ? AND version = ? AND fence <= ? AND wa_id IS ? AND user_id IS ?`,
      ).run(
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
    const q = this.sql(
      'SELECT record FROM outbound WHERE provider_message_id = ? AND channel = ? AND user = ?',
    );
    const alias = this.sql(
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
    const rows = this.sql(
      `SELECT ${OUTBOUND_ROW} FROM outbound
         WHERE channel = ? AND user = ? AND status IN ('pending', 'sending') ORDER BY seq`,
    ).all(key.channel, key.user) as OutboundRow[];
    return rows.map(outboundRecord);
  }

  updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    return this.write(() => this.patchOutbound(id, patch));
  }

  private patchOutbound(id: string, patch: OutboundPatch): void {
    const row = this.sql(
      'SELECT status, provider_message_id AS pmid, channel, last_error AS err FROM outbound WHERE id = ?',
    ).get(id) as
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
        : this.earlyStatus(patch.providerMessageId, row.channel);
    if (early) {
      status = laterStatus<OutboundStatus>(status, early.status);
      lastError = early.last_error ?? lastError;
      this.sql('DELETE FROM early_statuses WHERE provider_message_id = ?').run(patch.providerMessageId);
    }
    // The send that counts is one recorded while the record waited: a second send recorded after
    // one already was (a holder that lost its lease) keeps the first id.
    const waiting = row.status === 'pending' || row.status === 'sending';
    const pmid = row.pmid === null || waiting ? (patch.providerMessageId ?? row.pmid) : row.pmid;
    // The columns alone: the record's JSON keeps what its commit wrote (see outboundRecord).
    this.sql(
      `UPDATE outbound SET status = ?, attempts = COALESCE(?, attempts), claims = COALESCE(?, claims),
         provider_message_id = ?, last_error = COALESCE(?, last_error),
         not_before = COALESCE(?, not_before), updated_at = ? WHERE id = ?`,
    ).run(
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
    return this.write(() => {
      // A give-back is not fenced (see Backend.claimOutbound).
      if (delta > 0 && this.current(lease)?.token !== lease.token)
        throw new FencedError(sessionId(lease), lease.fence);
      // A claim names its holder (OutboundRecord.claimedBy, in the JSON): rewritten only when
      // another holder claims (a turn's later replies are claimed by the holder that committed them).
      const claim = this.sql(
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
    return this.write(() => this.insertDeadLetter(letter));
  }

  /**
   * An id already stored is left as is, unless an agent replayed it and it failed again since:
   * then it is open again with the new failure (the same message or reply fails under one id).
   */
  private insertDeadLetter(d: DeadLetter): void {
    this.staged.deadLetters += this.sql(
      `INSERT INTO dead_letters (id, kind, channel, user, ref, reason, payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,
           payload = excluded.payload, created_at = excluded.created_at, replayed_at = NULL
         WHERE dead_letters.replayed_at IS NOT NULL AND excluded.created_at > dead_letters.replayed_at`,
    ).run(d.id, d.kind, d.channel, d.user, d.ref, d.reason, JSON.stringify(d.payload), d.createdAt).changes;
  }

  // --- admin ---------------------------------------------------------------------------

  async findSessions(user: string, channel?: string): Promise<SessionSnapshot[]> {
    const rows = this.sql(
      `SELECT snapshot FROM sessions WHERE (user = @u OR wa_id = @u OR user_id = @u)
         AND (@c IS NULL OR channel = @c) ORDER BY channel`,
    ).all({ u: user, c: channel ?? null }) as Array<{ snapshot: string }>;
    return rows.map((r) => JSON.parse(r.snapshot) as SessionSnapshot);
  }

  async countSessions(activeSinceMs?: number): Promise<SessionCount[]> {
    // From the sessions_counts index alone (no session's JSON is read).
    const rows = this.sql(
      `SELECT flow, step, needs_agent AS na, COUNT(*) AS n, MIN(active_at) AS oldest
         FROM sessions
        WHERE @since IS NULL OR active_at >= @since
        GROUP BY flow, step, needs_agent`,
    ).all({ since: activeSinceMs ?? null }) as Array<{
      flow: string;
      step: string | null;
      na: number;
      n: number;
      oldest: number;
    }>;
    return rows.map((r) => ({
      flow: r.flow,
      step: r.step,
      needsAgent: r.na === 1,
      sessions: r.n,
      oldestAt: r.oldest,
    }));
  }

  async listSessions(q: SessionQuery): Promise<{ sessions: SessionSnapshot[]; nextCursor: string | null }> {
    const after = q.cursor
      ? (JSON.parse(Buffer.from(q.cursor, 'base64url').toString()) as [string, string])
      : null;
    const rows = this.sql(
      `SELECT channel, user, snapshot FROM sessions
         WHERE (@step IS NULL OR step = @step) AND (@na IS NULL OR needs_agent = @na)
           AND (@c IS NULL OR channel = @c)
           AND (@ac IS NULL OR channel > @ac OR (channel = @ac AND user > @au))
         ORDER BY channel, user LIMIT @limit`,
    ).all({
      step: q.step ?? null,
      na: q.needsAgent === undefined ? null : q.needsAgent ? 1 : 0,
      c: q.channel ?? null,
      ac: after?.[0] ?? null,
      au: after?.[1] ?? null,
      limit: q.limit + 1,
    }) as Array<{ channel: string; user: string; snapshot: string }>;
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      sessions: page.map((r) => JSON.parse(r.snapshot) as SessionSnapshot),
      nextCursor:
        rows.length > q.limit && last
          ? Buffer.from(JSON.stringify([last.channel, last.user])).toString('base64url')
          : null,
    };
  }

  async transitions(key: SessionKey, newest?: number): Promise<TransitionRecord[]> {
    // The newest first along the session's index (LIMIT -1: all), then back in order.
    const rows = this.sql(
      'SELECT record FROM transitions WHERE channel = ? AND user = ? ORDER BY idx DESC LIMIT ?',
    ).all(key.channel, key.user, newest ?? -1) as Array<{ record: string }>;
    return rows.reverse().map((r) => JSON.parse(r.record) as TransitionRecord);
  }

  async outbound(key: SessionKey, newest?: number): Promise<OutboundRecord[]> {
    const rows = this.sql(
      `SELECT ${OUTBOUND_ROW} FROM outbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?`,
    ).all(key.channel, key.user, newest ?? -1) as OutboundRow[];
    return rows.reverse().map(outboundRecord);
  }

  async failedReplies(limit: number): Promise<FailedReply[]> {
    const rows = this.sql(
      `SELECT ${OUTBOUND_ROW}, updated_at FROM outbound
       WHERE status = 'failed' AND json_extract(record, '$.effect') IS NULL
       ORDER BY updated_at DESC, rowid DESC LIMIT ?`,
    ).all(limit) as (OutboundRow & { updated_at: number })[];
    return rows.map((r) => ({ ...outboundRecord(r), failedAt: r.updated_at }));
  }

  async listDeadLetters(limit: number, after?: DeadLetterCursor): Promise<DeadLetter[]> {
    const rows = this.sql(
      `SELECT * FROM dead_letters
        WHERE @at IS NULL OR created_at < @at OR (created_at = @at AND id > @id)
        ORDER BY created_at DESC, id LIMIT @limit`,
    ).all({ at: after?.createdAt ?? null, id: after?.id ?? '', limit }) as Row[];
    return rows.map(deadLetterOf);
  }

  async getDeadLetter(id: string): Promise<DeadLetter | null> {
    const row = this.sql('SELECT * FROM dead_letters WHERE id = ?').get(id) as Row | undefined;
    return row ? deadLetterOf(row) : null;
  }

  async replayDeadLetter(id: string): Promise<boolean> {
    const row = this.sql('SELECT * FROM dead_letters WHERE id = ? AND replayed_at IS NULL').get(id) as
      Row | undefined;
    if (!row || row.kind === 'unreadable') return false;
    const key = { channel: row.channel as string, user: row.user as string };
    await this.write(() => {
      if (row.kind === 'inbound') {
        this.seq += 1;
        const storedAt = this.now();
        const body = JSON.parse(row.payload as string) as StoredMessage;
        const was = this.sql('SELECT state FROM inbound WHERE id = ?').get(body.id) as
          { state: string } | undefined;
        if (was?.state !== 'pending') this.staged.pending += 1;
        this.sql(
          `INSERT INTO inbound (id, channel, user, seq, stored_at, state, body) VALUES (?, ?, ?, ?, ?, 'pending', ?)
             ON CONFLICT (id) DO UPDATE SET state = 'pending', seq = excluded.seq, stored_at = excluded.stored_at,
             body = excluded.body`,
        ).run(
          body.id,
          key.channel,
          key.user,
          this.seq,
          storedAt,
          JSON.stringify({ ...body, seq: this.seq, storedAt, replayed: true }),
        );
      } else {
        // By the status rule (statusAllowed): a reply sent since (its failure never recorded on
        // it, a later holder sent it) is not queued again.
        this.sql(
          `UPDATE outbound SET status = 'pending', attempts = 0, claims = 0, last_error = NULL, updated_at = ?
             WHERE id = ? AND status NOT IN ('sent', 'delivered', 'read', 'played')`,
        ).run(this.now(), row.ref);
      }
      this.staged.deadLetters -= this.sql(
        'UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL',
      ).run(this.now(), id).changes;
    });
    if (row.kind === 'outbound') this.due.schedule(key, this.now());
    else if (!this.isLeased(key)) this.rescheduleIfPending(key);
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
    const p = this.sql(`SELECT MIN(stored_at) AS first FROM inbound WHERE state = 'pending'`).get() as {
      first: number | null;
    };
    const u = this.sql(
      `SELECT COUNT(*) AS n, MIN(created_at) AS first FROM outbound WHERE status IN ('pending', 'sending')`,
    ).get() as { n: number; first: number | null };
    let locks = 0;
    const now = this.now();
    for (const l of this.leases.values()) if (l.expiresAt > now) locks += 1;
    return {
      queueDepth: this.counts.pending,
      oldestPendingMs: p.first === null ? 0 : Math.max(0, now - p.first),
      locksHeld: locks,
      deadLetters: this.counts.deadLetters,
      workers: [...this.workerBeats.values()].filter((until) => until > now).length,
      messagesPerSecond: this.rate.perSecond(now),
      unsent: u.n,
      oldestUnsentMs: u.first === null ? 0 : Math.max(0, now - u.first),
    };
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<void> {
    this.workerBeats.set(workerId, this.now() + ttlMs);
  }

  async removeWorker(workerId: string): Promise<void> {
    this.workerBeats.delete(workerId);
  }

  revokeSignIn(id: string, untilMs: number): Promise<void> {
    return this.write(() => {
      this.sql('INSERT OR REPLACE INTO signed_out (id, until) VALUES (?, ?)').run(id, Math.ceil(untilMs));
    });
  }

  async signInRevoked(id: string): Promise<boolean> {
    return this.sql('SELECT 1 FROM signed_out WHERE id = ? AND until > ?').get(id, this.now()) !== undefined;
  }

  /** One process holds the data directory: it always leads; what it announced survives a restart. */
  readonly alerts: AlertStore = {
    lead: async () => true,
    firing: async () =>
      new Set(
        (this.sql('SELECT alert FROM alerts_firing').all() as Array<{ alert: string }>).map((r) => r.alert),
      ),
    setFiring: (alert, firing, at) =>
      this.write(() => {
        if (firing)
          this.sql('INSERT OR REPLACE INTO alerts_firing (alert, since) VALUES (?, ?)').run(alert, at);
        else this.sql('DELETE FROM alerts_firing WHERE alert = ?').run(alert);
      }),
  };

  async inbound(key: SessionKey, newest?: number): Promise<StoredMessage[]> {
    const rows = this.sql(
      'SELECT body FROM inbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?',
    ).all(key.channel, key.user, newest ?? -1) as Array<{ body: string }>;
    return rows.reverse().map((r) => JSON.parse(r.body) as StoredMessage);
  }

  async leaseInfo(key: SessionKey): Promise<LeaseInfo | null> {
    const l = this.leases.get(sessionId(key));
    return l !== undefined && l.expiresAt > this.now() ? { holder: l.holder, expiresAt: l.expiresAt } : null;
  }
}

function deadLetterOf(r: Row): DeadLetter {
  return {
    id: r.id as string,
    kind: r.kind as DeadLetter['kind'],
    channel: r.channel as string,
    user: r.user as string,
    ref: r.ref as string,
    reason: r.reason as string,
    payload: JSON.parse(r.payload as string) as unknown,
    createdAt: r.created_at as number,
    ...(r.replayed_at !== null ? { replayedAt: r.replayed_at as number } : {}),
  };
}

/**
 * The database and its WAL and shared-memory files readable by their owner only: they hold
 * users' numbers and messages. SQLite gives the WAL and shm files the database's mode when it
 * creates them; files left by an earlier version are narrowed too.
 */
function ownerOnly(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** When the user last wrote (epoch ms), or when the session was created before any message. */
function activeAt(s: SessionSnapshot): number {
  return s.lastInteraction !== null ? s.lastInteraction * 1000 : s.createdAt;
}
