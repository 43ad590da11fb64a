/**
 * Group commit. Callers ask for a session's journal to be copied to PostgreSQL; requests that
 * arrive while copies are running gather, and the next transaction takes all of them at once
 * (multi-row statements). So many sessions' batches share one PostgreSQL commit, and each
 * caller resolves when the transaction holding its session commits. Up to `maxInFlight`
 * copies run at once, over disjoint sessions (a session waits for its running copy to end
 * before it joins another). A copy's callers resolve at PostgreSQL's commit, but the copy keeps
 * its place until its clean-up (the journal trim) is done too: the next group gathers meanwhile,
 * as large as before. When idle, a request starts a transaction at once (no timer).
 * @module
 */

interface Waiter {
  resolve(fenced: ReadonlySet<string>): void;
  reject(err: unknown): void;
}

/** What a group's copy reports: the ids of entries refused as fenced, and when it is all done. */
export interface GroupCopy {
  readonly fenced: ReadonlySet<string>;
  /** Settles once the copy's clean-up is done (it never rejects). */
  readonly done: Promise<void>;
}

/** Copies the journals of the given sessions. */
export type FlushGroup = (members: readonly string[]) => Promise<GroupCopy>;

export interface GroupCommitterOptions {
  /** Most sessions in one transaction. */
  readonly maxGroup: number;
  /** Most transactions running at once. */
  readonly maxInFlight: number;
}

export class GroupCommitter {
  private pending = new Map<string, Waiter[]>();
  private readonly inFlight = new Set<string>();
  private running = 0;
  private idle: Array<() => void> = [];
  /** Groups flushed and requests served: what group commit buys, for diagnostics. */
  groups = 0;
  requests = 0;

  constructor(
    private readonly flushGroup: FlushGroup,
    private readonly opts: GroupCommitterOptions,
  ) {}

  /** Resolves with the fenced entry ids of the group that copied `member`'s journal. */
  flush(member: string): Promise<ReadonlySet<string>> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(member);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(member, [{ resolve, reject }]);
      this.requests++;
      this.pump();
    });
  }

  /** Resolves when no group is running or waiting. */
  drain(): Promise<void> {
    if (this.running === 0 && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    while (this.running < this.opts.maxInFlight) {
      const group = new Map<string, Waiter[]>();
      for (const [member, waiters] of this.pending) {
        if (group.size >= this.opts.maxGroup) break;
        if (this.inFlight.has(member)) continue;
        group.set(member, waiters);
      }
      if (group.size === 0) break;
      for (const member of group.keys()) {
        this.pending.delete(member);
        this.inFlight.add(member);
      }
      this.running++;
      this.groups++;
      void this.run(group);
    }
    if (this.running === 0 && this.pending.size === 0) for (const done of this.idle.splice(0)) done();
  }

  private async run(group: Map<string, Waiter[]>): Promise<void> {
    try {
      const copy = await this.flushGroup([...group.keys()]);
      for (const waiters of group.values()) for (const w of waiters) w.resolve(copy.fenced);
      await copy.done;
    } catch (err) {
      for (const waiters of group.values()) for (const w of waiters) w.reject(err);
    } finally {
      for (const member of group.keys()) this.inFlight.delete(member);
      this.running--;
      this.pump();
    }
  }
}
