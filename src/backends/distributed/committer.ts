/**
 * Group commit. Callers ask for a session's journal to be copied to PostgreSQL; while one
 * copy transaction runs, further requests gather, and the next transaction takes all of them
 * at once (multi-row statements). So many sessions' batches share one PostgreSQL commit,
 * and each caller resolves when the transaction holding its session commits. Under load the
 * group grows by itself; when idle, a request starts a transaction at once (no timer).
 * @module
 */

interface Waiter {
  resolve(fenced: ReadonlySet<string>): void;
  reject(err: unknown): void;
}

/** Copies the journals of the given sessions; returns the ids of entries refused as fenced. */
export type FlushGroup = (members: readonly string[]) => Promise<ReadonlySet<string>>;

export class GroupCommitter {
  private pending = new Map<string, Waiter[]>();
  private running: Promise<void> | null = null;
  /** Groups flushed and requests served: what group commit buys, for diagnostics. */
  groups = 0;
  requests = 0;

  constructor(
    private readonly flushGroup: FlushGroup,
    private readonly maxGroup: number,
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
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  private pump(): void {
    if (this.running) return;
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.pending.size > 0) this.pump();
    });
  }

  private async run(): Promise<void> {
    while (this.pending.size > 0) {
      const group = new Map<string, Waiter[]>();
      for (const [member, waiters] of this.pending) {
        if (group.size >= this.maxGroup) break;
        group.set(member, waiters);
      }
      for (const member of group.keys()) this.pending.delete(member);
      this.groups++;
      try {
        const fenced = await this.flushGroup([...group.keys()]);
        for (const waiters of group.values()) for (const w of waiters) w.resolve(fenced);
      } catch (err) {
        for (const waiters of group.values()) for (const w of waiters) w.reject(err);
      }
    }
  }
}
