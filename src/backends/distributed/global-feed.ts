/**
 * This process's writes to global keys: sessions' mailbox figures (version, pending count,
 * oldest storedAt) posted to the global pending stats (scripts/stats-pending-4.lua), its leases
 * in the set of leases held (so `stats` never visits sessions), and the ready-queue entries of
 * sessions its intake made due. The ready-queue entries (and the schedulers' wake-up) are owed at
 * once: they ride with the next command the process sends ({@link GlobalFeed.take}), or go at
 * the end of the event-loop turn. The figures and the leases held only feed the counts `stats`
 * reads, so they are gathered for a few milliseconds ({@link GATHER_MS}) first: a busy worker
 * posts the figures of many turns in one script call rather than nearly one per message. Those
 * gathered share one script call, one `ZADD` of new leases, one `ZADD XX` of renewed ones, one
 * `ZREM` of ended ones, and one `ZADD` to the ready queue with its wake-up (on a single node the
 * intake script adds its sessions to the queue itself, so only the wake-up is owed), sent in the
 * background: no caller waits for them. Losing them delays work but loses nothing (the reaper
 * and the stats repair posts mend them); a reader of the counts waits for them
 * ({@link GlobalFeed.settled}).
 *
 * Posts may arrive in any order; the version in each decides. A lease's entry is added after
 * its grant, rescored after each renewal and removed with its release or an agent's clear (one
 * that ends before its entry left is never sent).
 * A session's ready entry is added after the intake script that made it due has run (it goes
 * with a later command, or after it in the same pipeline).
 * @module
 */
import type { Keys } from './keys.ts';
import type { PipelineOp } from './scripts.ts';

/** Sessions whose last posted version this process remembers (repair posts it already made are skipped). */
const POSTED_MAX = 50_000;

/**
 * How long an emptied mailbox's version is remembered against late posts, ms. A post is late
 * by a round trip, or by a stall of the process that sends it; a minute covers both.
 */
export const TOMBSTONE_MS = 60_000;

/** One session's mailbox figures, as the session scripts return them. */
export interface MailboxFigures {
  readonly member: string;
  readonly version: number;
  readonly count: number;
  readonly oldest: number;
}

/** Reads `[version, count, oldest]` from a script reply at `offset`. */
export function figuresAt(member: string, reply: readonly unknown[], offset: number): MailboxFigures {
  return {
    member,
    version: Number(reply[offset]),
    count: Number(reply[offset + 1]),
    oldest: Number(reply[offset + 2]),
  };
}

/**
 * Writes taken from the feed to go with a command. If that command fails (Redis away, or a
 * timeout after the process was paused), `giveBack` queues their schedules and figures again.
 */
export interface TakenWrites {
  readonly ops: PipelineOp[];
  readonly hints: ReadonlyArray<readonly [string, number]>;
  /** A wake-up of the schedulers was among the ops (see {@link GlobalFeed.wake}). */
  readonly wake: boolean;
  readonly figures: readonly MailboxFigures[];
}

/** How soon writes given back are tried again. */
const RETRY_MS = 1000;

/**
 * How long figures and lease entries wait for others to share their command, ms: a steady
 * distributed run posted figures 0.77 times per message, one script call per event-loop turn.
 */
export const GATHER_MS = 5;

/**
 * How long they wait at most before going by themselves, ms: longer than {@link GATHER_MS}, so
 * that on a busy process a command takes them along first (no flush of their own).
 */
const GATHER_MAX_MS = 3 * GATHER_MS;

export class GlobalFeed {
  private queued = new Map<string, MailboxFigures>();
  /** Lease token -> its entry's score, to add to the leases held. */
  private heldAdds = new Map<string, string>();
  /** Lease token -> its renewed score, for an entry already sent (`ZADD XX`: never re-adds one). */
  private heldRescores = new Map<string, string>();
  /** Lease tokens to take out of the leases held. */
  private heldRemoves = new Set<string>();
  /** Session member -> when it is due, for the ready queue. */
  private readyHints = new Map<string, number>();
  /** Sessions entered the ready queue already (single node): only the wake-up is owed. */
  private wakeOwed = false;
  /** member -> the highest version this process has posted (or queued). */
  private readonly posted = new Map<string, number>();
  private sending: Promise<void> | null = null;
  private scheduled = false;
  private retry: NodeJS.Timeout | null = null;
  /** When the oldest figures or lease entry still queued was queued (`performance.now()`), or null. */
  private gatheringSince: number | null = null;
  private gatherTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly keys: Keys,
    /** Sends the ops; resolves false if they may not have reached Redis. */
    private readonly send: (ops: readonly PipelineOp[]) => Promise<boolean>,
    private readonly now: () => number,
    /** The ready-queue writes (and wake-up) for these sessions' due times. */
    private readonly readyOps: (schedules: ReadonlyArray<readonly [string, number]>) => PipelineOp[],
    /** The wake-up alone, for sessions already in the ready queue. */
    private readonly wakeOp: () => PipelineOp,
  ) {}

  /** The script call that posts `figures` (for callers that send it in their own round trip). */
  op(figures: Iterable<MailboxFigures>): PipelineOp | null {
    const args: Array<string | number> = [TOMBSTONE_MS, Math.floor(this.now())];
    for (const f of figures) {
      args.push(f.member, f.version, f.count, f.oldest);
      this.remember(f);
    }
    return args.length === 2 ? null : this.statsOp(args);
  }

  /**
   * The script call with no post, which drops expired tombstones (up to a thousand): posts drop a
   * few each, and once the traffic that made them stops, none come (outside test QA12: 694 left
   * for good after a run).
   */
  trimOp(): PipelineOp {
    return this.statsOp([TOMBSTONE_MS, Math.floor(this.now())]);
  }

  private statsOp(args: Array<string | number>): PipelineOp {
    return {
      script: 'stats-pending',
      keys: [
        this.keys.pendingOldest,
        this.keys.pendingCounts,
        this.keys.pendingDepth,
        this.keys.pendingTombs,
      ],
      args,
    };
  }

  /**
   * Queues a post; it goes out with the next command or with the others of this tick. A
   * `repair` post (figures read, not changed) is skipped when this process has already posted
   * that version.
   */
  post(figures: MailboxFigures, repair = false): void {
    if (repair && (this.posted.get(figures.member) ?? -1) >= figures.version) return;
    this.remember(figures);
    const cur = this.queued.get(figures.member);
    if (cur === undefined || cur.version <= figures.version) this.queued.set(figures.member, figures);
    this.gather();
  }

  /**
   * Forgets which versions this process posted: the keys holding them may have gone back in time
   * (a cluster's master failed over to a replica that lacked its last writes), and a repair post
   * skipped as "posted already" then never went (outside test QA116-F3: phantom figures for 8
   * minutes and more).
   */
  forgetPosted(): void {
    this.posted.clear();
  }

  /** A lease granted to this process: its entry among the leases held (scored by its watchdog). */
  leaseHeld(token: string, score: string): void {
    this.heldAdds.set(token, score);
    this.gather();
  }

  /** A renewed lease's new score (its entry's, whether that is still queued or sent). */
  leaseRescored(token: string, score: string): void {
    if (this.heldAdds.has(token)) this.heldAdds.set(token, score);
    else this.heldRescores.set(token, score);
    this.gather();
  }

  /** A lease ended (released, lost, or cleared by an agent): its entry goes. */
  leaseGone(token: string): void {
    this.heldRescores.delete(token);
    if (this.heldAdds.delete(token)) return; // never sent
    this.heldRemoves.add(token);
    this.gather();
  }

  /** A session this process's intake made due at `due`: its ready-queue entry (the earliest wins). */
  hint(member: string, due: number): void {
    const queued = this.readyHints.get(member);
    if (queued === undefined || due < queued) this.readyHints.set(member, due);
    this.schedule();
  }

  /**
   * Sessions this process's intake put in the ready queue itself (single node: the intake script
   * adds them atomically): the schedulers are told, one wake-up per turn, without a second `ZADD`.
   */
  wake(): void {
    this.wakeOwed = true;
    this.schedule();
  }

  /**
   * Takes the queued writes as ops, for the caller to send with its own command; [] if none. The
   * figures and lease entries come only once gathered long enough, or with `all`.
   */
  take(all = false): PipelineOp[] {
    const ops: PipelineOp[] = [];
    if (all || this.gathered()) this.takeGathered(ops);
    if (this.readyHints.size > 0) {
      ops.push(...this.readyOps([...this.readyHints])); // brings its own wake-up
      this.readyHints = new Map();
    } else if (this.wakeOwed) {
      ops.push(this.wakeOp());
    }
    this.wakeOwed = false;
    return ops;
  }

  /** Whether the figures and lease entries queued have waited long enough to go. */
  private gathered(): boolean {
    return this.gatheringSince !== null && performance.now() - this.gatheringSince >= GATHER_MS;
  }

  private takeGathered(ops: PipelineOp[]): void {
    this.gatheringSince = null;
    if (this.gatherTimer !== null) {
      clearTimeout(this.gatherTimer);
      this.gatherTimer = null;
    }
    const post = this.op(this.queued.values());
    this.queued = new Map();
    if (post !== null) ops.push(post);
    if (this.heldAdds.size > 0) {
      const pairs = [...this.heldAdds].flatMap(([token, score]) => [score, token]);
      ops.push({ command: 'ZADD', args: [this.keys.leases, ...pairs] });
      this.heldAdds = new Map();
    }
    if (this.heldRescores.size > 0) {
      const pairs = [...this.heldRescores].flatMap(([token, score]) => [score, token]);
      ops.push({ command: 'ZADD', args: [this.keys.leases, 'XX', ...pairs] });
      this.heldRescores = new Map();
    }
    if (this.heldRemoves.size > 0) {
      ops.push({ command: 'ZREM', args: [this.keys.leases, ...this.heldRemoves] });
      this.heldRemoves = new Set();
    }
  }

  /** Like `take`, with what to give back should the command carrying the ops fail. */
  takeWrites(all = false): TakenWrites {
    const hints = [...this.readyHints];
    const wake = this.wakeOwed || hints.length > 0;
    const figures = all || this.gathered() ? [...this.queued.values()] : [];
    return { ops: this.take(all), hints, wake, figures };
  }

  /**
   * Writes whose command failed: the sessions' ready-queue entries and mailbox figures are queued
   * again and retried shortly (a session made due whose entry never reached Redis would wait for
   * the reaper, and its later messages with it: its schedule flag is set). Entries of the leases
   * held are left to the watchdogs and the reaper.
   */
  giveBack(t: TakenWrites): void {
    for (const [member, due] of t.hints) {
      const queued = this.readyHints.get(member);
      if (queued === undefined || due < queued) this.readyHints.set(member, due);
    }
    if (t.wake) this.wakeOwed = true;
    for (const f of t.figures) {
      const cur = this.queued.get(f.member);
      if (cur === undefined || cur.version < f.version) this.queued.set(f.member, f);
    }
    if ((!t.wake && t.figures.length === 0) || this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.flush(true);
    }, RETRY_MS);
    this.retry.unref();
  }

  /** Something queued that a command going now would take (the figures still gathering aside). */
  get owesNow(): boolean {
    return this.readyHints.size > 0 || this.wakeOwed || this.gathered();
  }

  /** Nothing queued at all, gathering or not. */
  private get holdsNothing(): boolean {
    return (
      this.queued.size === 0 &&
      this.heldAdds.size === 0 &&
      this.heldRescores.size === 0 &&
      this.heldRemoves.size === 0 &&
      this.readyHints.size === 0 &&
      !this.wakeOwed
    );
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  /** Figures or a lease entry queued: they go with a command once gathered, or by themselves. */
  private gather(): void {
    if (this.gatheringSince !== null) return;
    this.gatheringSince = performance.now();
    this.gatherTimer = setTimeout(() => {
      this.gatherTimer = null;
      void this.flush(true);
    }, GATHER_MAX_MS);
    this.gatherTimer.unref();
  }

  private remember(f: MailboxFigures): void {
    if ((this.posted.get(f.member) ?? -1) >= f.version) return;
    this.posted.delete(f.member);
    if (this.posted.size >= POSTED_MAX) this.posted.delete(this.posted.keys().next().value!);
    this.posted.set(f.member, f.version);
  }

  /**
   * Resolves once every write queued before the call has been sent (or has failed); writes
   * queued meanwhile are not waited for, so a busy process cannot keep a reader waiting.
   */
  async settled(): Promise<void> {
    if (!this.holdsNothing) await this.flush(true);
    else if (this.sending !== null) await this.sending;
  }

  /** Sends what is owed now (`all`: the figures and lease entries still gathering too). */
  private async flush(all = false): Promise<void> {
    if (!all) this.scheduled = false;
    while (this.sending !== null) await this.sending;
    const taken = this.takeWrites(all);
    if (taken.ops.length === 0) return;
    const sending = this.send(taken.ops)
      .then((sent) => {
        if (!sent) this.giveBack(taken);
      })
      .finally(() => (this.sending = null));
    this.sending = sending;
    await sending;
  }
}
