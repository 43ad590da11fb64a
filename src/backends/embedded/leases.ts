/**
 * The embedded store's batons: in-process leases, each with a random token and a fencing token
 * from a counter that starts above every fence stored (so a restart never reuses one that wrote);
 * the agents' clears and waits, and the workers' heartbeats.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { sessionId, type SessionKey } from '../../model/message.ts';
import {
  CLEARED_LEASE_MEMORY_MS,
  heldBy,
  SERVED_FLOW_MEMORY_MS,
  type ClearedLease,
  type LeaseGrant,
  type LeaseInfo,
  type ServedFlow,
} from '../types.ts';

interface Lease {
  readonly token: string;
  readonly holder: string;
  fence: number;
  expiresAt: number;
}

export class LeaseTable {
  private readonly held = new Map<string, Lease>();
  /** When an agent last cleared each session's lease, and from whom (see `cleared`). */
  private readonly clears = new Map<string, ClearedLease>();
  /** Sessions whose baton an agent waits for, until when (see `want`). */
  private readonly wanted = new Map<string, number>();
  /** Worker id -> heartbeat expiry, epoch ms. */
  private readonly beats = new Map<string, number>();
  /** Other processes holding batons (Backend.holderBeat) -> expiry, epoch ms. */
  private readonly holders = new Map<string, number>();
  /** Worker id -> the flows it runs, and until when it is known alive (see `flowServedUntil`). */
  private readonly serves = new Map<string, { flows: readonly ServedFlow[]; until: number }>();
  private fenceCounter = 0;

  constructor(private readonly now: () => number) {}

  /** Grants from now on get fences above `fence` (the highest one stored). */
  startAbove(fence: number): void {
    this.fenceCounter = Math.max(this.fenceCounter, fence);
  }

  isHeld(key: SessionKey): boolean {
    const l = this.held.get(sessionId(key));
    return l !== undefined && l.expiresAt > this.now();
  }

  /** A new lease on `key`, or null while another is held. */
  grant(key: SessionKey, holder: string, ttlMs: number): LeaseGrant | null {
    if (this.isHeld(key)) return null;
    const lease: Lease = {
      token: randomBytes(12).toString('hex'),
      holder,
      fence: ++this.fenceCounter,
      expiresAt: this.now() + ttlMs,
    };
    this.held.set(sessionId(key), lease);
    return { channel: key.channel, user: key.user, token: lease.token, fence: lease.fence, holder };
  }

  /** Whether `lease` is the one held, and not expired. */
  current(lease: LeaseGrant): boolean {
    const l = this.held.get(sessionId(lease));
    return l !== undefined && l.token === lease.token && l.expiresAt > this.now();
  }

  /** Whether the entry held for `lease`'s session is `lease`'s, expired or not. */
  mine(lease: LeaseGrant): boolean {
    return this.held.get(sessionId(lease))?.token === lease.token;
  }

  renew(lease: LeaseGrant, ttlMs: number): boolean {
    if (!this.current(lease)) return false;
    this.held.get(sessionId(lease))!.expiresAt = this.now() + ttlMs;
    return true;
  }

  /** Drops `lease`'s entry if it is still `lease`'s. */
  drop(lease: LeaseGrant): void {
    if (this.mine(lease)) this.held.delete(sessionId(lease));
  }

  /** An agent takes the session's baton from whoever holds it; whether one was held. */
  clear(key: SessionKey): boolean {
    const id = sessionId(key);
    const had = this.isHeld(key);
    const holder = had ? (this.held.get(id)?.holder ?? null) : null;
    this.clears.set(id, { at: this.now(), holder });
    this.held.delete(id);
    return had;
  }

  /** The session's last clear, while it is remembered (CLEARED_LEASE_MEMORY_MS). */
  cleared(key: SessionKey): ClearedLease | null {
    const id = sessionId(key);
    const cleared = this.clears.get(id);
    if (cleared === undefined) return null;
    if (cleared.at + CLEARED_LEASE_MEMORY_MS > this.now()) return cleared;
    this.clears.delete(id);
    return null;
  }

  want(key: SessionKey, ttlMs: number): void {
    if (ttlMs > 0) this.wanted.set(sessionId(key), this.now() + ttlMs);
    else this.wanted.delete(sessionId(key));
  }

  isWanted(key: SessionKey): boolean {
    return (this.wanted.get(sessionId(key)) ?? 0) > this.now();
  }

  info(key: SessionKey): LeaseInfo | null {
    const l = this.held.get(sessionId(key));
    return l !== undefined && l.expiresAt > this.now() ? { holder: l.holder, expiresAt: l.expiresAt } : null;
  }

  /** Leases held and not expired. */
  count(): number {
    const now = this.now();
    let n = 0;
    for (const l of this.held.values()) if (l.expiresAt > now) n += 1;
    return n;
  }

  heartbeat(workerId: string, ttlMs: number, serves: readonly ServedFlow[] = []): void {
    this.beats.set(workerId, this.now() + ttlMs);
    this.serves.set(workerId, { flows: serves, until: this.now() + ttlMs });
  }

  /** See Backend.holderBeat. */
  holderBeat(processId: string, ttlMs: number, stops: boolean): void {
    if (stops) this.holders.delete(processId);
    else this.holders.set(processId, this.now() + ttlMs);
  }

  removeWorker(workerId: string): void {
    this.beats.delete(workerId);
    const served = this.serves.get(workerId);
    if (served !== undefined) this.serves.set(workerId, { ...served, until: this.now() });
  }

  /** Until when a worker that runs flow `id` at `version` or newer is known alive (0: none lately). */
  flowServedUntil(id: string, version: number): number {
    const now = this.now();
    let until = 0;
    for (const [worker, served] of this.serves) {
      if (served.until < now - SERVED_FLOW_MEMORY_MS) this.serves.delete(worker);
      else if (served.flows.some((f) => f.id === id && f.version >= version))
        until = Math.max(until, served.until);
    }
    return until;
  }

  /** Workers whose heartbeat has not expired. */
  workers(): number {
    const now = this.now();
    let n = 0;
    for (const until of this.beats.values()) if (until > now) n += 1;
    return n;
  }

  /**
   * Whether `holder` (a process id, or `<process id>:<slot>`) is of a worker whose heartbeat
   * holds, or of another process that said it holds batons.
   */
  holderAlive(holder: string): boolean {
    const now = this.now();
    for (const beats of [this.beats, this.holders])
      for (const [id, until] of beats) if (until > now && heldBy(holder, id)) return true;
    return false;
  }
}
