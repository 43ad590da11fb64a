/**
 * The embedded store's SQLite connection and its group commit: prepared statements compiled once,
 * reads sharing one read transaction per tick, and every write requested in the same tick run in
 * one transaction (each in a savepoint of its own) made durable by one WAL sync, off the event
 * loop (`wal-sync.ts`), with checkpoints on a thread of their own (`checkpointer.ts`).
 * @module
 */
import { chmodSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StorageUnavailableError } from '../../errors.ts';
import { Checkpointer, SAFETY_NET_PAGES, type CheckpointStats } from './checkpointer.ts';
import { WalSync } from './wal-sync.ts';

export interface SqliteStoreOptions {
  /** A file of a data directory: the database and its WAL readable by their owner only. */
  readonly ownerOnly: boolean;
  /** After this long without a write, the WAL file is cut to nothing (ms; see `checkpointer.ts`). */
  readonly walIdleMs?: number | undefined;
  /** What an operator must hear of (default: a Node process warning). */
  readonly onWarning?: ((message: string) => void) | undefined;
  /** What an operator may like to hear of (a trouble over). */
  readonly onInfo?: ((message: string) => void) | undefined;
}

/** What `stats` counts, kept up to date by the writes themselves (no scan per read). */
export interface Counts {
  /** Inbound messages in state `pending`. */
  pending: number;
  /** Dead letters not replayed. */
  deadLetters: number;
}

interface PendingWrite {
  readonly fn: () => unknown;
  readonly after: (() => void) | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: unknown) => void;
}

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

const noCounts = (): Counts => ({ pending: 0, deadLetters: 0 });

export class SqliteStore {
  readonly db: Database.Database;
  /** Makes commits durable off the event loop (a file store); null: SQLite syncs in COMMIT. */
  readonly walSync: WalSync | null = null;
  /** Runs WAL checkpoints on a thread of their own (a file store); null: SQLite's own, in COMMIT. */
  private checkpointer: Checkpointer | null = null;
  private readonly statements = new Map<string, Database.Statement>();
  private txStatements: TxStatements | undefined;
  /** A read transaction is open (see `beginRead`). */
  private reading = false;
  private writes: PendingWrite[] = [];
  private flushScheduled = false;
  /** Committed counts. */
  readonly counts: Counts = noCounts();
  /** Changes to `counts` made inside the group transaction being written (applied once it commits). */
  staged: Counts = noCounts();
  /** The last inbound sequence number written; a group that fails to commit gives its numbers back. */
  seq = 0;
  private closed = false;
  /** The database file as opened (device and inode), for {@link detachedFrom}; null: in memory. */
  private readonly opened: { readonly file: string; readonly dev: number; readonly ino: number } | null =
    null;
  /** Why nothing more is written (the file deleted or replaced, the directory taken); null: it is. */
  private detached: string | null = null;
  /** When a write last failed on the disk (epoch ms; 0: none since the last durable group). */
  private lastWriteFailure = 0;

  constructor(
    file: string,
    private readonly opts: SqliteStoreOptions,
  ) {
    this.db = new Database(file);
    if (opts.ownerOnly) ownerOnly(file);
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
          this.warn(`WAL checkpoints are back on the event loop: ${err.message}`);
        },
        onCheckpointError: (err) =>
          this.warn(
            `${err.message} (${file}); the WAL keeps what it did not copy and the checkpoint is tried again, less and less often (a full disk: free some space)`,
          ),
        onRecovered: (failures) =>
          (opts.onInfo ?? ((m: string) => this.warn(m)))(
            `WAL checkpoints work again (${file}), after ${failures} failed`,
          ),
      });
    }
    if (file !== ':memory:' && file !== '') {
      const st = statSync(file);
      this.opened = { file, dev: st.dev, ino: st.ino };
    }
    this.db.pragma('busy_timeout = 5000');
    // Each write of a group commit runs in a savepoint, whose journal keeps the first copy of
    // every page the write changes: in a temporary file that was two pwrite calls per page, about
    // 13 pages per message, more system calls than the WAL itself. In memory it is a copy.
    this.db.pragma('temp_store = MEMORY');
  }

  /** What the checkpoint thread has done; null when it is not running (`:memory:`, or it failed). */
  get checkpoints(): Readonly<CheckpointStats> | null {
    return this.checkpointer?.stats ?? null;
  }

  /** Something was written outside the group commit (the purge): checkpoint and cut the WAL once idle. */
  written(): void {
    this.checkpointer?.committed();
  }

  /** The database file's size in bytes (0 in memory). */
  size(): number {
    if (this.opened === null) return 0;
    try {
      return statSync(this.opened.file).size;
    } catch {
      return 0;
    }
  }

  /** SQLite's `secure_delete`: ON while the purge runs, FAST otherwise. */
  secureDelete(on: boolean): void {
    this.db.pragma(`secure_delete = ${on ? 'ON' : 'FAST'}`);
  }

  /**
   * A prepared statement, compiled once per SQL text. A read joins the open read transaction
   * (see {@link beginRead}); a write outside the group commit (the purge) ends it first.
   */
  sql(text: string): Database.Statement {
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
    try {
      if (this.db.inTransaction) this.tx.commit.run();
    } catch {
      // Ending a read (run on its own, from setImmediate): a store that fails it (a damaged page)
      // fails the reads and writes that come next, whose callers say so; thrown here it would
      // end the process with a stack trace (outside test QA94-F4).
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // the connection says so at its next use
      }
    }
  };

  /**
   * Why this store no longer writes, checking the file first; null while it does. A database file
   * deleted (its directory removed) or replaced while the process runs takes writes that no
   * restart finds: an outside test (QA94-F1) saw 37 webhooks answered 200 after `rm -rf` of the
   * data directory, and a restart start from an empty store. From then on every write is refused
   * (webhooks answered 503, Meta keeps them) and the health check fails.
   */
  detachedFrom(): string | null {
    if (this.detached !== null || this.opened === null) return this.detached;
    let now: { dev: number; ino: number } | null;
    try {
      now = statSync(this.opened.file);
    } catch {
      now = null;
    }
    if (now?.dev !== this.opened.dev || now.ino !== this.opened.ino)
      this.detach(
        `the SQLite store ${this.opened.file} was ${now === null ? 'deleted' : 'replaced'} while Baton ran (BATON_DATA_DIR): what Baton wrote there since is lost with it; restart Baton once the directory is restored`,
      );
    return this.detached;
  }

  private warn(message: string): void {
    if (this.opts.onWarning) this.opts.onWarning(message);
    else process.emitWarning(`Baton: ${message}`);
  }

  /**
   * Whether a write failed within the last `ms` and none begun after it has been made durable
   * since: a full disk answers reads and refuses every write, webhooks and the engine's batches
   * alike (outside test QA120-F3: `/readyz` said `writes: true` while every batch failed).
   */
  writesFailing(ms: number): boolean {
    return this.lastWriteFailure > 0 && Date.now() - this.lastWriteFailure <= ms;
  }

  /** Nothing more is written, for `reason` (said with every refusal). */
  detach(reason: string): void {
    if (this.detached !== null) return;
    this.detached = reason;
    this.warn(reason);
  }

  /**
   * Runs `fn` inside the next group transaction: every write requested in the same tick
   * (webhooks, batch commits, send records) shares one SQLite commit, so one fsync serves them
   * all. Each write runs in its own savepoint: one that throws is rolled back alone and its
   * caller gets the error. `after` runs once the group is durable.
   */
  write<T>(fn: () => T, after?: () => void): Promise<T> {
    if (this.closed) return Promise.reject(new StorageUnavailableError('embedded store is closed'));
    if (this.detached !== null) return Promise.reject(new StorageUnavailableError(this.detached));
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
    // One stat per group commit: no write is answered as stored into a file no longer there.
    const detached = this.detachedFrom();
    if (detached !== null) {
      const e = new StorageUnavailableError(detached);
      for (const w of work) w.reject(e);
      return;
    }
    const seq = this.seq;
    this.staged = noCounts();
    const began = Date.now();
    let outcomes: Outcome[];
    try {
      outcomes = this.groupCommit(work);
    } catch (err) {
      this.seq = seq;
      this.staged = noCounts();
      this.lastWriteFailure = Date.now();
      const e = new StorageUnavailableError('could not write to SQLite', err);
      for (const w of work) w.reject(e);
      return;
    }
    this.counts.pending += this.staged.pending;
    this.counts.deadLetters += this.staged.deadLetters;
    this.staged = noCounts();
    this.checkpointer?.committed();
    const settle = (syncError: Error | null): void => {
      const failed = syncError ? new StorageUnavailableError("could not sync SQLite's WAL", syncError) : null;
      if (failed || outcomes.some((o) => !o.ok && diskError(o.error))) this.lastWriteFailure = Date.now();
      // A group begun after the last failure is durable: the store takes writes again.
      else if (began > this.lastWriteFailure) this.lastWriteFailure = 0;
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

  /** Writes what is queued, then closes: a write requested after this is refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    this.walSync?.close();
    await this.checkpointer?.close();
    this.endRead();
    this.db.close();
  }
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

/** An error of the disk under SQLite (full, or failing), not of the write's own data. */
function diskError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR'));
}
