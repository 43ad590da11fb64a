/**
 * Fence blocks for sessions new to this Redis, reserved in PostgreSQL in groups: while one
 * reservation is running, the requests that arrive gather, and the next one takes all of them
 * in one statement (one transaction, one commit). A burst of new users (a campaign, a restart
 * with an empty Redis) then costs a commit per group instead of one per user. A session asked
 * for twice in one gathering waits for the next group: each request gets a block of its own.
 * @module
 */
import type { SessionKey } from '../../model/message.ts';

/**
 * A session to reserve for, and the Redis lifetime that loads it when Redis no longer has its
 * state (null when Redis kept it: a block used up, or a restart that kept its data).
 */
export interface ReserveFor {
  readonly key: SessionKey;
  readonly era: string | null;
}

/** One session's reservation: the block's ceiling and whatever PostgreSQL returned with it. */
export type Reserve<R> = (sessions: readonly ReserveFor[]) => Promise<Map<string, R>>;

interface Request<R> extends ReserveFor {
  resolve(r: R): void;
  reject(err: unknown): void;
}

/** The map key of a session (channel and user, unambiguous). */
export function reservationKey(key: SessionKey): string {
  return JSON.stringify([key.channel, key.user]);
}

export class FenceReserver<R> {
  private queue: Array<Request<R>> = [];
  private running = false;

  constructor(private readonly reserve: Reserve<R>) {}

  /** Resolves with the session's reservation, made in the next group. */
  request(key: SessionKey, era: string | null): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ key, era, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running || this.queue.length === 0) return;
    const group = new Map<string, Request<R>>();
    const later: Array<Request<R>> = [];
    for (const req of this.queue) {
      const id = reservationKey(req.key);
      if (group.has(id)) later.push(req);
      else group.set(id, req);
    }
    this.queue = later;
    this.running = true;
    void this.run(group);
  }

  private async run(group: Map<string, Request<R>>): Promise<void> {
    try {
      const rows = await this.reserve([...group.values()].map((r) => ({ key: r.key, era: r.era })));
      for (const [id, req] of group) {
        const row = rows.get(id);
        if (row === undefined) req.reject(new Error(`no fence block returned for session ${id}`));
        else req.resolve(row);
      }
    } catch (err) {
      for (const req of group.values()) req.reject(err);
    } finally {
      this.running = false;
      this.pump();
    }
  }
}
