/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the COMMIT that
 * crosses its threshold (1,000 pages), on the connection that committed: here the event loop,
 * which then copies the WAL into the database and makes two syncs while no webhook is read. At
 * 1,000 webhooks a second that was most of the webhook ack's p99.
 *
 * Instead a worker thread with its own connection runs `wal_checkpoint(PASSIVE)` a second after
 * commits (`checkpoint-worker.mjs`). PASSIVE takes no writer lock: commits go on while it
 * copies. The WAL is only rewound from its start when a checkpoint has copied every frame and no
 * write came meanwhile; under a steady stream that can take a while, so the main connection
 * keeps SQLite's own checkpoint as a bound (`SAFETY_NET_PAGES`, far above what the thread lets
 * the WAL reach), and takes it back entirely if the thread fails.
 * @module
 */
import { Worker } from 'node:worker_threads';

/** The main connection's own automatic checkpoint while the thread works (pages). */
export const SAFETY_NET_PAGES = 16_000;

export interface CheckpointerOptions {
  /**
   * A checkpoint starts this long after the first commit that follows the last one (ms, default
   * 1000). Each one copies every page changed since the last, so hot pages (index roots, the
   * busiest sessions) are copied once per checkpoint: at 100 ms the steady bench spent 20% more
   * CPU per message than with SQLite's own checkpoints; at 1 s, the same.
   */
  readonly delayMs?: number;
  /**
   * After this long without a commit (ms, default 10,000), the WAL is checkpointed once more and
   * cut to nothing (`wal_checkpoint(TRUNCATE)`): SQLite otherwise keeps the file at its
   * high-water mark (up to the safety net's 64 MB) for as long as the process runs, old frames,
   * texts the retention deleted among them, included (outside test QA12). Not under load, where
   * the file is reused in place and its syncs need no change of its size.
   */
  readonly idleMs?: number;
  /** The thread cannot run: called once, and the checkpointer stops. */
  readonly onFailure: (err: Error) => void;
  /**
   * A checkpoint failed (a full disk, an I/O error): the thread stays and tries again, after
   * {@link RETRY_MS} doubling up to {@link MAX_RETRY_MS}. Called for the first failure of a run
   * of them (outside test QA94-F5: one failed checkpoint stopped the thread until a restart).
   */
  readonly onCheckpointError?: (err: Error) => void;
  /** A checkpoint succeeded after failing: called once per run of failures. */
  readonly onRecovered?: (failures: number) => void;
}

/** The first wait before a failed checkpoint is tried again, ms (doubling). */
export const RETRY_MS = 1000;
/** The longest wait between tries of a failing checkpoint, ms. */
export const MAX_RETRY_MS = 30_000;

interface Reply {
  readonly ok: boolean;
  readonly busy?: number;
  readonly log?: number;
  readonly checkpointed?: number;
  readonly ms: number;
  readonly error?: string;
  /** For a 'truncate': whether the WAL was cut (not when a reader or writer was busy). */
  readonly truncated?: boolean;
}

export interface CheckpointStats {
  /** Checkpoints run by the thread. */
  runs: number;
  /** The WAL's frames at the last checkpoint, and how many of them it had copied. */
  log: number;
  checkpointed: number;
  /** Longest checkpoint so far, ms. */
  maxMs: number;
  /** Times the WAL was cut to nothing while idle. */
  truncated: number;
  /** Checkpoints that failed (and were tried again). */
  failed: number;
}

export class Checkpointer {
  private readonly worker: Worker;
  private readonly delayMs: number;
  private readonly idleMs: number;
  private idleTimer: NodeJS.Timeout | null = null;
  private dirty = false;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  readonly stats: CheckpointStats = { runs: 0, log: 0, checkpointed: 0, maxMs: 0, truncated: 0, failed: 0 };
  /** Failed checkpoints in a row. */
  private failures = 0;
  /** When the scheduled checkpoint runs (`performance.now()`). */
  private dueAt = 0;

  constructor(
    file: string,
    private readonly opts: CheckpointerOptions,
  ) {
    this.delayMs = opts.delayMs ?? 1000;
    this.idleMs = opts.idleMs ?? 10_000;
    this.worker = new Worker(new URL('./checkpoint-worker.mjs', import.meta.url), { workerData: { file } });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => this.finished(r));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (!this.stopped) this.fail(new Error(`checkpoint thread exited with code ${code}`));
    });
  }

  /**
   * A transaction committed: a checkpoint follows within `delayMs`. Also when failed checkpoints
   * wait longer to be tried again: a commit that got through says the disk has room again, and
   * the WAL grows with every commit until a checkpoint copies it (outside test QA120-F4: freed
   * space, a WAL grown to 20 MB in the 30 s the retry waited, the disk full again).
   */
  committed(): void {
    this.dirty = true;
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (this.running || this.stopped) return;
    if (this.timer === null) this.schedule(this.delayMs);
    else if (this.failures > 0 && this.dueAt > performance.now() + this.delayMs) {
      clearTimeout(this.timer);
      this.schedule(this.delayMs);
    }
  }

  private schedule(ms: number): void {
    this.dueAt = performance.now() + ms;
    this.timer = setTimeout(this.run, ms);
    this.timer.unref();
  }

  private readonly run = (): void => {
    this.timer = null;
    if (this.stopped || !this.dirty) return;
    this.dirty = false;
    this.running = true;
    this.worker.postMessage('checkpoint');
  };

  private finished(r: Reply): void {
    this.running = false;
    if (!r.ok) return this.failed(new Error(`checkpoint failed: ${r.error ?? 'unknown error'}`));
    if (this.failures > 0) {
      this.opts.onRecovered?.(this.failures);
      this.failures = 0;
    }
    if (r.truncated !== undefined) {
      if (r.truncated) this.stats.truncated += 1;
      if (this.dirty) this.committed();
      return;
    }
    this.stats.runs += 1;
    this.stats.log = r.log ?? 0;
    this.stats.checkpointed = r.checkpointed ?? 0;
    this.stats.maxMs = Math.max(this.stats.maxMs, r.ms);
    if (this.dirty) this.committed();
    else if (!this.stopped && this.idleTimer === null) {
      this.idleTimer = setTimeout(this.truncate, this.idleMs);
      this.idleTimer.unref();
    }
  }

  /** No commit since the last checkpoint for `idleMs`: the WAL is cut (see idleMs). */
  private readonly truncate = (): void => {
    this.idleTimer = null;
    if (this.stopped || this.dirty || this.running) return;
    this.running = true;
    this.worker.postMessage('truncate');
  };

  /** A checkpoint failed: the WAL keeps what it did not copy; the thread tries again later. */
  private failed(err: Error): void {
    this.stats.failed += 1;
    this.failures += 1;
    if (this.failures === 1) this.opts.onCheckpointError?.(err);
    if (this.stopped) return;
    this.dirty = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.schedule(Math.min(MAX_RETRY_MS, RETRY_MS * 2 ** (this.failures - 1)));
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    this.stop();
    void this.worker.terminate();
    this.opts.onFailure(err);
  }

  private stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** Closes the thread's connection (before the main one closes, so that one checkpoints last). */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stop();
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage('close');
    const timeout = setTimeout(() => void this.worker.terminate(), 2_000);
    await exited;
    clearTimeout(timeout);
  }
}
