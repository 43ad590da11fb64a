/**
 * Group commit's fsync, off the event loop. With `synchronous = FULL` SQLite fsyncs the WAL
 * inside every COMMIT, on the only thread the process has: measured on a busy 2-core machine,
 * 0.2 to 0.8 ms per commit during which no webhook is read and no flow runs. Instead the store
 * runs with `synchronous = NORMAL` (the WAL is written at COMMIT, not synced) and this makes
 * the WAL durable with `fdatasync` on libuv's thread pool; a write is reported done (a webhook
 * answered 200, a batch's replies sent) only once a sync that started after its COMMIT has
 * finished. That is the durability FULL gives, for everything anyone is told about.
 *
 * Why it is enough: a Linux `fdatasync` on any descriptor of the file flushes all its dirty
 * pages; WAL frames are checksummed in a chain, so after a crash SQLite keeps a prefix of the
 * commits, never a later one without an earlier one; a checkpoint under NORMAL syncs the WAL
 * before copying it and the database after. One sync is in flight at a time, and the group
 * commit waits for it (`whenIdle`): what is written meanwhile goes into one transaction and one
 * sync, which costs no latency (it would have waited for the next sync anyway) and saves
 * transactions and syncs under load.
 * @module
 */
import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';

type Done = (err: Error | null) => void;

interface Round {
  readonly waiters: Done[];
  settled: boolean;
}

export class WalSync {
  private fd: number | null = null;
  /** Committed, waiting for the next sync to start. */
  private next: Done[] = [];
  /** The sync in flight and whom it will settle. */
  private inFlight: Round | null = null;
  private closed = false;
  /** Called once the sync in flight is done. */
  private idle: Array<() => void> = [];
  /** Syncs made (tests and diagnostics read it). */
  syncs = 0;

  /** `walPath`: the database's `-wal` file (it exists once the first transaction committed). */
  constructor(private readonly walPath: string) {}

  /** Calls `done` once everything committed before this call is durable (or the sync failed). */
  afterCommit(done: Done): void {
    if (this.closed) return done(new Error('WAL sync closed'));
    this.next.push(done);
    if (this.inFlight === null) this.start();
  }

  /** A sync is in flight: a commit made now would wait for the next one anyway. */
  get busy(): boolean {
    return this.inFlight !== null;
  }

  /**
   * Runs `fn` once no sync is in flight (at once if none is): the group commit waits there, so
   * everything written during one sync goes into one transaction and the next sync.
   */
  whenIdle(fn: () => void): void {
    if (this.inFlight === null || this.closed) fn();
    else this.idle.push(fn);
  }

  private start(): void {
    const round: Round = { waiters: this.next, settled: false };
    this.next = [];
    let fd: number;
    try {
      fd = this.descriptor();
    } catch (err) {
      return settle(round, err as Error);
    }
    this.inFlight = round;
    this.syncs += 1;
    fdatasync(fd, (err) => {
      if (this.inFlight === round) this.inFlight = null;
      settle(round, err);
      for (const fn of this.idle.splice(0)) fn();
      if (this.next.length > 0 && this.inFlight === null && !this.closed) this.start();
    });
  }

  private descriptor(): number {
    this.fd ??= openSync(this.walPath, 'r');
    return this.fd;
  }

  /** Makes everything committed durable now, on this thread, settles every waiter, and closes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const rounds = [...(this.inFlight ? [this.inFlight] : []), { waiters: this.next, settled: false }];
    this.next = [];
    let err: Error | null = null;
    if (rounds.some((r) => !r.settled && r.waiters.length > 0)) {
      try {
        fdatasyncSync(this.descriptor());
      } catch (e) {
        err = e as Error;
      }
    }
    for (const r of rounds) settle(r, err);
    this.inFlight = null;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    for (const fn of this.idle.splice(0)) fn();
  }
}

function settle(round: Round, err: Error | null): void {
  if (round.settled) return;
  round.settled = true;
  for (const done of round.waiters) done(err);
}
