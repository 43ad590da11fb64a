/**
 * `nextReady`: hands each due session to one waiting caller, without busy polling.
 *
 * One loop per process serves every waiter: it claims the most overdue session with one
 * script call; when none is due, it sleeps until the earliest due score (capped), and wakes
 * early when another process announces a newly scheduled session on the wake channel or a
 * new waiter arrives.
 * @module
 */

export type ClaimResult =
  { readonly member: string; readonly claimScore: string } | { readonly earliest: number | null };

export interface SchedulerDeps {
  claim(): Promise<ClaimResult>;
  /** Gives back a claim nobody wanted (its waiter left meanwhile). */
  unclaim(member: string, claimScore: string): Promise<void>;
  now(): number;
  onError(err: unknown): void;
  /** Longest sleep without news, ms. */
  readonly maxIdleMs: number;
}

interface Waiter {
  resolve(member: string | null): void;
}

export class ReadyScheduler {
  private waiters: Waiter[] = [];
  private looping = false;
  private closed = false;
  private wakePending = false;
  private sleeper: { timer: NodeJS.Timeout; done(): void } | null = null;

  constructor(private readonly deps: SchedulerDeps) {}

  /** The member of the next due session claimed for this caller, or null once `signal` aborts. */
  next(signal: AbortSignal): Promise<string | null> {
    if (signal.aborted || this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(null);
      };
      const waiter: Waiter = {
        resolve: (member) => {
          signal.removeEventListener('abort', onAbort);
          resolve(member);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.wake();
      this.ensureLoop();
    });
  }

  /** Something may have become due: look again now. */
  wake(): void {
    if (this.sleeper) this.sleeper.done();
    else this.wakePending = true;
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.resolve(null);
    this.wake();
  }

  private ensureLoop(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop().finally(() => {
      this.looping = false;
      if (this.waiters.length > 0 && !this.closed) this.ensureLoop();
    });
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.waiters.length > 0 && !this.closed) {
      this.wakePending = false;
      let sleepMs: number;
      try {
        const r = await this.deps.claim();
        failures = 0;
        if ('member' in r) {
          const w = this.waiters.shift();
          if (w) w.resolve(r.member);
          else await this.deps.unclaim(r.member, r.claimScore);
          continue;
        }
        sleepMs = r.earliest === null ? this.deps.maxIdleMs : r.earliest - this.deps.now();
        sleepMs = Math.max(1, Math.min(this.deps.maxIdleMs, Math.ceil(sleepMs)));
      } catch (err) {
        this.deps.onError(err);
        failures++;
        sleepMs = Math.min(this.deps.maxIdleMs, 50 * 2 ** Math.min(failures, 5));
      }
      await this.sleep(sleepMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.wakePending || this.closed) {
      this.wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.sleeper = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeper = { timer, done };
    });
  }
}
