/**
 * Intake low watermarks across processes (issue 10, points 1 and 4): a burst is never split
 * because a separate ingress process was still storing part of it when a worker closed the
 * batch's buffer window.
 *
 * The model is the low watermark of stream processors (Flink, Kafka Streams): each ingress
 * process publishes "every webhook I received before W is stored", where W is the arrival time
 * of its oldest webhook received and not yet stored, or, when it has none in flight, the time it
 * published (never "infinity": a webhook may arrive right after). A worker closes a batch whose
 * window ends at `windowEnd` only once every live ingress's watermark is past `windowEnd`;
 * otherwise it waits (at most the engine's 2 s, as in one process: as long as an ingress may be
 * silent before it counts as dead).
 *
 * Where the figures live and travel:
 * - one Redis hash (`Keys.intake`), field = ingress id, value = `<watermark>:<publishedAt>:<lag>`.
 *   An entry not republished for {@link DEAD_AFTER_MS} is a dead ingress's: ignored, and deleted
 *   once it is {@link PURGE_AFTER_MS} old (long enough that no live process is still stalled).
 * - an ingress publishes with the ingest pipeline it already sends (first op, so its entry is in
 *   Redis before any message it stores) and on a timer: every {@link ACTIVE_PERIOD_MS} while it
 *   has had webhooks in the last {@link ACTIVE_FOR_MS}, every {@link IDLE_PERIOD_MS} otherwise;
 *   never more often than every {@link MIN_GAP_MS}. A worker that waits asks every ingress for a
 *   fresh figure (PUBLISH on `Keys.intakeAsk`): an idle ingress answers at once instead of at its
 *   next idle tick, and an asked one publishes each time its watermark moves for
 *   {@link ASKED_FOR_MS}, so a held batch goes as soon as its last webhook is stored.
 * - a worker reads the hash in the round trip of its leased `pending` read, just before the
 *   mailbox (single node: same pipeline, executed in order), so a watermark past the window
 *   proves the mailbox read holds the whole window. Only when it does not does the worker wait,
 *   polling the hash ({@link FIRST_POLL_MS} after its ask, doubling up to {@link POLL_MS}; one
 *   poll for all its waiting sessions), and then read the mailbox again. With
 *   `BATON_BUFFER_MS=0` none of this runs: no publishing, no reads. On a Redis Cluster the
 *   hash lives on another node than the mailbox, so the order is not guaranteed: the read goes
 *   alone and the mailbox is read again after it.
 *
 * Cost (measured on a 2-core test machine, ~400 webhooks/s): ingest unchanged within noise (a
 * publish rides on about 1 webhook pipeline in 20); one small HGETALL in each leased mailbox
 * read. Under steady intake nearly every batch whose window has just closed waits for a publish
 * made after it closed: p50 6 ms, p99 ~19 ms, about 2.4 standalone reads and one more mailbox
 * read per such batch. That is the price of knowing, across processes, that nothing of the
 * window is still on its way in.
 *
 * Late reads: a webhook is stamped as received when the ingress's event loop reads it, which on a
 * starved machine is well after it reached the socket (an outside test with CPU hogs saw a 50 ms
 * burst read over 0.7-0.9 s: QA93-F1). So each entry also carries the ingress's event-loop delay
 * of the last two seconds, and a worker stretches a batch's window by the largest among the live
 * ingresses (Engine.closeWindow). A process that was not scheduled at all (stopped, or starved
 * for long) reads its sockets or runs its timers first when it runs again, either: the first
 * publish after it (its overdue timer's, or one riding on the first webhook it stores) keeps the
 * watermark where the loop last ran on time and says at least that much lag, and the lag stays in
 * what it publishes for about two seconds (outside test QA95-F1). Each webhook also counts, in
 * the watermark and in its messages (`StoredMessage.readLateMs`), from when it may have reached
 * the ingress: its read time less how late the ingress's loop ran then (LoopLag.readLateMs), so a worker that
 * runs the batch after the ingress's lag is forgotten (restarted, say) still joins it to its
 * burst (outside test QA137-F3).
 *
 * Clocks: every process stamps arrivals, watermarks and publish times with its own `Date.now`,
 * so hosts need synchronised clocks (NTP), as the buffer window itself already does (a message's
 * `storedAt` is stamped by the ingress and compared with the worker's clock). A skew of a few
 * milliseconds shifts the wait by as much; a skew beyond {@link DEAD_AFTER_MS} would make an
 * ingress look dead.
 * @module
 */
import { InFlightWebhooks, type IntakeGate, type IntakeTracker } from '../../engine/intake-gate.ts';
import { LoopLag } from '../../engine/loop-lag.ts';
import type { SessionKey } from '../../model/message.ts';
import type { PipelineOp } from './scripts.ts';

/** An entry not republished for this long belongs to a dead (or stalled) ingress: ignored. */
export const DEAD_AFTER_MS = 2000;
/** Dead entries this old are deleted by the worker that sees them. */
export const PURGE_AFTER_MS = 60_000;
/** Publish period while webhooks come in. */
export const ACTIVE_PERIOD_MS = 20;
/** Publish period when idle (keeps the entry alive). */
export const IDLE_PERIOD_MS = 500;
/** An ingress counts as active this long after its last webhook. */
export const ACTIVE_FOR_MS = 3000;
/** Publishes are at least this far apart (the ingest pipeline and the timer share it). */
export const MIN_GAP_MS = 5;
/** The first look again after a worker asked (then doubling up to {@link POLL_MS}). */
export const FIRST_POLL_MS = 2;
/** After a worker asked, an ingress publishes each time its watermark moves, for this long. */
export const ASKED_FOR_MS = 200;
/** How often a worker with held batches reads the watermarks again (and asks for fresh ones). */
export const POLL_MS = 10;
/** Webhooks in flight longer than this (a body trickling in) hold nothing back. */
export const STALE_AFTER_MS = 2000;
/** Worker side: the last watermark read with a session's mailbox is kept for this many sessions. */
const OBSERVED_MAX = 10_000;

/** One ingress's published figures. */
export interface WatermarkEntry {
  /** Every webhook this ingress received before this time (epoch ms) is stored. */
  readonly watermark: number;
  /** When it was published (epoch ms, the ingress's clock). */
  readonly publishedAt: number;
  /**
   * How late the ingress's event loop ran lately, ms: it stamps a webhook as received up to that
   * much after the webhook reached it (a starved process reads its sockets late), so a worker
   * stretches a batch's window by it (outside test QA93-F1). 0 in entries of older versions.
   */
  readonly lagMs?: number;
}

export function encodeEntry(e: WatermarkEntry): string {
  // The lag goes last: a worker of an older version reads the first two fields only.
  return `${e.watermark}:${e.publishedAt}:${Math.round(e.lagMs ?? 0)}`;
}

export function decodeEntry(raw: string): WatermarkEntry | null {
  const [w, at, lag] = raw.split(':');
  const watermark = Number(w);
  const publishedAt = Number(at);
  const lagMs = lag === undefined ? 0 : Number(lag);
  if (w === undefined || at === undefined || !Number.isFinite(watermark) || !Number.isFinite(publishedAt))
    return null;
  return { watermark, publishedAt, lagMs: Number.isFinite(lagMs) && lagMs > 0 ? lagMs : 0 };
}

/** An HGETALL reply (a flat array over RESP2, an object or a Map otherwise) as field -> value. */
export function hashEntries(reply: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const str = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(str(reply[i]), str(reply[i + 1]));
  } else if (reply instanceof Map) {
    for (const [k, v] of reply) out.set(str(k), str(v));
  } else if (reply !== null && typeof reply === 'object') {
    for (const [k, v] of Object.entries(reply)) out.set(k, str(v));
  }
  return out;
}

/**
 * The low watermark over the live entries (`Infinity` when no ingress is live: nothing can be
 * in flight), the largest loop lag among them, and the fields old enough to delete. `exclude`:
 * this process's own entry, whose fresher figures it knows from memory.
 */
export function lowWatermark(
  entries: ReadonlyMap<string, string>,
  now: number,
  exclude?: string,
): { watermark: number; lagMs: number; purge: string[] } {
  let watermark = Number.POSITIVE_INFINITY;
  let lagMs = 0;
  const purge: string[] = [];
  for (const [field, raw] of entries) {
    if (field === exclude) continue;
    const e = decodeEntry(raw);
    const age = e === null ? Number.POSITIVE_INFINITY : now - e.publishedAt;
    if (age > PURGE_AFTER_MS) purge.push(field);
    if (e === null || age > DEAD_AFTER_MS) continue;
    watermark = Math.min(watermark, e.watermark);
    lagMs = Math.max(lagMs, e.lagMs ?? 0);
  }
  return { watermark, lagMs, purge };
}

export interface IntakeWatermarksOptions {
  /** The hash holding every ingress's entry (`Keys.intake`). */
  readonly key: string;
  /** This process's field in it. */
  readonly ingressId: string;
  /** The channel on which waiting workers ask the ingresses to publish (`Keys.intakeAsk`). */
  readonly askChannel: string;
  /** Sends ops on their own (timer publishes, reads, clean-up); replies in order. */
  readonly send: (ops: readonly PipelineOp[]) => Promise<unknown[]>;
  /**
   * Subscribes to a channel (an ingress listens for asks); returns the unsubscribe. Without it
   * an ingress answers on its timer only.
   */
  readonly subscribe?: (channel: string, onMessage: () => void) => () => void;
  /** Redis Cluster: the hash and a mailbox may live on different nodes (see the module doc). */
  readonly cluster: boolean;
  readonly now?: () => number;
  /**
   * How late this process's event loop runs lately, ms (default: measured while it publishes,
   * see engine/loop-lag.ts). For tests.
   */
  readonly lagMs?: () => number;
  readonly onError?: (err: unknown) => void;
}

/** The watermark read taken just before a session's mailbox read (see {@link IntakeWatermarks.beforeRead}). */
export interface WatermarkRead {
  readonly op: PipelineOp;
  /** This process's own watermark when the read was built (its webhooks, from memory). */
  readonly local: number;
}

interface Waiter {
  readonly t: number;
  readonly done: () => void;
}

/**
 * Both sides of the intake watermark for one process: {@link tracker} for an ingress (publishes),
 * {@link gate} for a worker (reads and waits). A process with both roles uses its own webhooks'
 * figure from memory and the others' from Redis.
 */
export class IntakeWatermarks implements IntakeTracker, IntakeGate {
  private readonly o: IntakeWatermarksOptions;
  private readonly now: () => number;
  private closed = false;

  // --- ingress side: webhooks in flight and the publishing timer
  private readonly inFlight = new InFlightWebhooks();
  private publishing = false;
  private lastPublish = Number.NEGATIVE_INFINITY;
  private lastWebhook = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private nextTick = Number.POSITIVE_INFINITY;
  /** A worker asked: the next tick publishes whatever the period; moves are published until then. */
  private asked = false;
  private askedUntil = Number.NEGATIVE_INFINITY;
  private unsubscribe: (() => void) | null = null;
  private readonly loopLag = new LoopLag();
  /** Publishes made (piggy-backed or alone), for tests and benchmarks. */
  published = 0;

  // --- worker side: readings and waiting batches
  private reading = false;
  private readonly observed = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private remote = Number.NEGATIVE_INFINITY;
  /** The largest loop lag among the other live ingresses, as last read. */
  private remoteLag = 0;
  private polling = false;
  private lastAsk = Number.NEGATIVE_INFINITY;
  /** Standalone watermark reads made while batches waited, for tests and benchmarks. */
  polls = 0;

  constructor(o: IntakeWatermarksOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  // --- ingress side ----------------------------------------------------------------------

  /** This process receives webhooks: start publishing (at once, then on the timer). */
  tracker(): IntakeTracker {
    if (!this.publishing && !this.closed) {
      this.publishing = true;
      if (this.o.lagMs === undefined) this.loopLag.start();
      this.unsubscribe = this.o.subscribe?.(this.o.askChannel, () => this.answer()) ?? null;
      this.tick();
    }
    return this;
  }

  begin(receivedAt: number = this.now(), queued = false, readLateMs = 0): number {
    const token = this.inFlight.begin(receivedAt, queued, readLateMs);
    this.lastWebhook = Math.max(this.lastWebhook, receivedAt);
    // Out of idle: publish at the active pace from now on, not at the idle timer's.
    const soon = this.now() + ACTIVE_PERIOD_MS;
    if (this.publishing && !this.closed && this.nextTick > soon) this.arm(soon);
    return token;
  }

  readLateMs(): number {
    return this.loopLag.readLateMs();
  }

  end(token: number): void {
    if (!this.inFlight.end(token)) return;
    if (this.waiters.size > 0) this.check();
    // A worker is waiting (for this webhook, perhaps): tell it soon.
    if (this.now() < this.askedUntil) this.answer(false);
  }

  /** A worker asked for a fresh figure (or, while asked, the watermark moved): publish soon. */
  private answer(extend = true): void {
    if (!this.publishing || this.closed) return;
    const now = this.now();
    if (extend) this.askedUntil = now + ASKED_FOR_MS;
    this.asked = true;
    const at = Math.max(now, this.lastPublish + MIN_GAP_MS);
    if (this.nextTick > at) this.arm(at);
  }

  /** Every webhook this process received before the returned time is stored. */
  localWatermark(now: number = this.now()): number {
    return Math.min(now, this.inFlight.oldest(now, STALE_AFTER_MS));
  }

  /**
   * The publish op to send now, first in a pipeline the caller is about to send; null when this
   * process does not publish or published less than {@link MIN_GAP_MS} ago.
   */
  take(): PipelineOp | null {
    if (!this.publishing || this.closed) return null;
    const now = this.now();
    if (now - this.lastPublish < MIN_GAP_MS) return null;
    // A publishing timer overdue now says the loop did not run its timers for that long: a
    // process stopped in its wait for I/O reads its sockets before it runs its timers when it
    // runs again, so this publish, riding on the first webhook it stores then, is the one that
    // must say so (outside test QA95-F1: its lag was the loop-delay histogram's, not updated yet).
    const overdue = this.timer === null ? 0 : Math.max(0, now - this.nextTick);
    return this.publishOp(now, overdue);
  }

  /**
   * `lateness`: how much later than it was due the timer that publishes runs (or, riding on a
   * pipeline, is overdue). A process that was not scheduled (a starved or stopped one) has not
   * read what reached its sockets meanwhile, or not all of it: the watermark stays where the loop
   * last ran on time, and the lag it publishes is at least that late.
   */
  private publishOp(now: number, lateness = 0): PipelineOp {
    this.lastPublish = now;
    this.published += 1;
    // Kept for the publishes that follow (about two seconds), not said once: a worker reads the
    // newest entry, and the next publish may come before its next read.
    if (lateness > 0) this.loopLag.note(lateness);
    const value = encodeEntry({
      watermark: Math.min(this.localWatermark(now), now - lateness),
      publishedAt: now,
      lagMs: Math.max(this.ownLagMs(), lateness),
    });
    return { command: 'HSET', args: [this.o.key, this.o.ingressId, value] };
  }

  private ownLagMs(): number {
    return this.o.lagMs?.() ?? this.loopLag.recentMs();
  }

  /** The timer: publishes unless a pipeline carried a publish recently, then re-arms. */
  private tick(): void {
    this.timer = null;
    if (this.closed) return;
    const now = this.now();
    const lateness = Math.max(0, now - this.nextTick);
    const active = now - this.lastWebhook < ACTIVE_FOR_MS || this.inFlight.size > 0;
    const period = active ? ACTIVE_PERIOD_MS : IDLE_PERIOD_MS;
    let next = this.lastPublish + period;
    if (now >= next || (this.asked && now - this.lastPublish >= MIN_GAP_MS)) {
      this.asked = false;
      this.o.send([this.publishOp(now, lateness)]).catch((err: unknown) => this.o.onError?.(err));
      next = now + period;
    } else if (this.asked) {
      next = Math.min(next, this.lastPublish + MIN_GAP_MS);
    }
    this.arm(next);
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.nextTick = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - this.now()));
    this.timer.unref();
  }

  // --- worker side -----------------------------------------------------------------------

  /** This process runs batches: its leased mailbox reads carry the watermarks from now on. */
  gate(): IntakeGate {
    this.reading = true;
    return this;
  }

  /**
   * The read to put right before a session's mailbox read in the same pipeline; null before
   * {@link gate} was asked for, and on a cluster (no order across nodes: {@link drained} then
   * reads on its own).
   */
  beforeRead(): WatermarkRead | null {
    if (!this.reading || this.o.cluster || this.closed) return null;
    return {
      op: { command: 'HGETALL', args: [this.o.key] },
      local: this.publishing ? this.localWatermark() : Number.POSITIVE_INFINITY,
    };
  }

  /** Keeps the watermark read with `session`'s mailbox, for the {@link drained} that follows. */
  afterRead(session: SessionKey, read: WatermarkRead, reply: unknown): void {
    // Any reading is true from when it was taken on: it may release batches waiting here too.
    const watermark = this.took(reply);
    if (this.waiters.size > 0) this.check();
    const member = memberOf(session);
    this.observed.delete(member);
    if (this.observed.size >= OBSERVED_MAX) this.observed.delete(this.observed.keys().next().value!);
    this.observed.set(member, Math.min(watermark, read.local));
  }

  async drained(t: number, maxWaitMs: number, signal?: AbortSignal, session?: SessionKey): Promise<boolean> {
    if (session !== undefined) {
      const member = memberOf(session);
      const seen = this.observed.get(member);
      this.observed.delete(member);
      // Read before the mailbox, in order: past the window means the mailbox read holds it all.
      if (seen !== undefined && seen > t) return false;
    }
    if (signal?.aborted || this.closed) return true;
    await new Promise<void>((resolve) => {
      const waiter: Waiter = {
        t,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          signal?.removeEventListener('abort', waiter.done);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, maxWaitMs);
      this.waiters.add(waiter);
      signal?.addEventListener('abort', waiter.done, { once: true });
      void this.poll();
    });
    return true;
  }

  /**
   * The largest loop lag among the other live ingresses, as last read, ms: they may have stamped
   * a burst's webhooks that much later than the webhooks reached them. This process's own lag is
   * the engine's to add (the same event loop).
   */
  lagMs(): number {
    return this.remoteLag;
  }

  /** One poll loop for every waiting batch of this process. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    // An answer lands a round trip after the ask: look again soon, then less and less often.
    let delay = FIRST_POLL_MS;
    try {
      while (this.waiters.size > 0 && !this.closed) {
        try {
          // Read what is there; ask for fresh figures unless asked lately (an asked ingress
          // publishes each move of its watermark for ASKED_FOR_MS).
          const now = this.now();
          const ask = now - this.lastAsk >= ASKED_FOR_MS / 2;
          if (ask) this.lastAsk = now;
          const [reply] = await this.o.send([
            { command: 'HGETALL', args: [this.o.key] },
            ...(ask ? [{ command: 'PUBLISH', args: [this.o.askChannel, '1'] }] : []),
          ]);
          this.polls += 1;
          this.took(reply);
          this.check();
        } catch (err) {
          this.o.onError?.(err);
        }
        if (this.waiters.size > 0) await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(POLL_MS, delay * 2);
      }
    } finally {
      this.polling = false;
    }
  }

  /** Keeps what an HGETALL of the hash says of the other ingresses; returns their low watermark. */
  private took(reply: unknown): number {
    const { watermark, lagMs, purge } = lowWatermark(hashEntries(reply), this.now(), this.ownField());
    this.cleanUp(purge);
    this.remote = watermark;
    this.remoteLag = lagMs;
    return watermark;
  }

  /** Releases the waiters whose window every live ingress (this one included) has passed. */
  private check(): void {
    const local = this.publishing ? this.localWatermark() : Number.POSITIVE_INFINITY;
    const w = Math.min(this.remote, local);
    for (const waiter of [...this.waiters]) if (w > waiter.t) waiter.done();
  }

  private ownField(): string | undefined {
    return this.publishing ? this.o.ingressId : undefined;
  }

  private cleanUp(fields: readonly string[]): void {
    if (fields.length === 0) return;
    this.o
      .send([{ command: 'HDEL', args: [this.o.key, ...fields] }])
      .catch((err: unknown) => this.o.onError?.(err));
  }

  // --- lifecycle -------------------------------------------------------------------------

  /** Stops publishing and polling; returns the op that removes this ingress's entry (null if none). */
  close(): PipelineOp | null {
    this.closed = true;
    this.loopLag.stop();
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of [...this.waiters]) w.done();
    return this.publishing ? { command: 'HDEL', args: [this.o.key, this.o.ingressId] } : null;
  }
}

/** The map key of a session (any stable, unique string does). */
function memberOf(key: SessionKey): string {
  return JSON.stringify([key.channel, key.user]);
}
