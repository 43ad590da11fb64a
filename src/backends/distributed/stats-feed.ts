/**
 * Posts sessions' mailbox figures (version, pending count, oldest storedAt) to the global
 * pending stats (scripts/stats-pending-4.lua), so `stats` never visits sessions. Posts made in
 * one tick share one script call, sent in the background: a commit does not wait for it.
 * Posts may arrive in any order; the version in each decides.
 * @module
 */
import type { Keys } from './keys.ts';
import type { PipelineOp } from './scripts.ts';

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

export class StatsFeed {
  private queued = new Map<string, MailboxFigures>();
  private sending: Promise<void> | null = null;
  private scheduled = false;

  constructor(
    private readonly keys: Keys,
    private readonly send: (ops: readonly PipelineOp[]) => Promise<void>,
    private readonly now: () => number,
  ) {}

  /** The script call that posts `figures` (for callers that send it in their own round trip). */
  op(figures: Iterable<MailboxFigures>): PipelineOp | null {
    const args: Array<string | number> = [TOMBSTONE_MS, Math.floor(this.now())];
    for (const f of figures) args.push(f.member, f.version, f.count, f.oldest);
    if (args.length === 2) return null;
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

  /** Queues a post; it goes out with the others of this tick. */
  post(figures: MailboxFigures): void {
    const cur = this.queued.get(figures.member);
    if (cur === undefined || cur.version <= figures.version) this.queued.set(figures.member, figures);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  /**
   * Resolves once every post queued before the call has been sent (or has failed); posts
   * queued meanwhile are not waited for, so a busy process cannot keep a reader waiting.
   */
  async settled(): Promise<void> {
    if (this.queued.size > 0) await this.flush();
    else if (this.sending !== null) await this.sending;
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    while (this.sending !== null) await this.sending;
    const op = this.op(this.queued.values());
    this.queued = new Map();
    if (op === null) return;
    const sending = this.send([op]).finally(() => (this.sending = null));
    this.sending = sending;
    await sending;
  }
}
