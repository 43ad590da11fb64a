/**
 * An in-process ready queue: sessions keyed by when they become due. Waiters are woken by
 * one timer set for the earliest due time; nothing polls.
 * @module
 */
import { sessionId, type SessionKey } from '../../model/message.ts';

interface Entry {
  readonly key: SessionKey;
  readonly id: string;
  readonly dueAt: number;
}

export class DueQueue {
  private readonly heap: Entry[] = [];
  private readonly scheduled = new Map<string, number>();
  private readonly waiters: Array<(key: SessionKey | null) => void> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly now: () => number) {}

  /** Number of scheduled sessions. */
  get size(): number {
    return this.scheduled.size;
  }

  has(key: SessionKey): boolean {
    return this.scheduled.has(sessionId(key));
  }

  /** Schedules `key` at `dueAt` unless it is already scheduled earlier. */
  schedule(key: SessionKey, dueAt: number): void {
    const id = sessionId(key);
    const existing = this.scheduled.get(id);
    if (existing !== undefined && existing <= dueAt) return;
    this.scheduled.set(id, dueAt);
    this.push({ key: { channel: key.channel, user: key.user }, id, dueAt });
    this.pump();
  }

  /** Takes `key` off the queue (its heap entry is dropped when it reaches the top). */
  unschedule(key: SessionKey): void {
    this.scheduled.delete(sessionId(key));
  }

  /** Resolves with the next due session, or `null` when `signal` aborts. */
  next(signal: AbortSignal): Promise<SessionKey | null> {
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter = (key: SessionKey | null): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(key);
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Wakes every waiter with `null` and stops the timer. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters.splice(0)) w(null);
  }

  private pump(): void {
    const now = this.now();
    while (this.waiters.length > 0) {
      const top = this.peekLive();
      if (top === undefined || top.dueAt > now) break;
      this.pop();
      this.scheduled.delete(top.id);
      this.waiters.shift()!(top.key);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const top = this.peekLive();
    if (this.waiters.length > 0 && top !== undefined) {
      this.timer = setTimeout(() => this.pump(), Math.max(0, top.dueAt - now));
    }
  }

  /** The earliest entry that is still the session's current schedule (stale entries are dropped). */
  private peekLive(): Entry | undefined {
    for (let top = this.heap[0]; top !== undefined; top = this.heap[0]) {
      if (this.scheduled.get(top.id) === top.dueAt) return top;
      this.pop();
    }
    return undefined;
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    for (let i = h.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (h[p]!.dueAt <= h[i]!.dueAt) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (h.length === 0 || last === undefined) return;
    h[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]!.dueAt < h[m]!.dueAt) m = l;
      if (r < h.length && h[r]!.dueAt < h[m]!.dueAt) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}
