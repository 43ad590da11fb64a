/**
 * Retention (`BATON_RETENTION`, `BATON_MESSAGE_RETENTION`): what each backend's periodic purge
 * removes, and when. Transitions and outbound records go after the retention (an outbound
 * record is also what tells an old button's prompt from the current one, SPEC 1.7), the
 * outbound records' texts after the shorter of the two (redacted: the record stays); dead
 * letters (each holds a message, the user's or Baton's) after the shorter of the two, replayed
 * or not; inbound messages (the user's texts, and what recognises a redelivery once Redis has
 * lost its markers) after the message retention, but never inside the dedupe window, where a
 * text past the message retention is redacted instead. A session that has expired
 * (`BATON_SESSION_TTL`) and is past the message retention too is expired as a late user's
 * message would expire it (see {@link expiryEvent}): a new version, recorded `expired`, no step,
 * no data (what the flow kept of the user's answers), unless it awaits an effect or has a reply
 * left to send; its row stays (its ids and fence).
 * @module
 */
import {
  eventMessageId,
  EXPIRY_EVENT,
  MAX_CLOCK_AHEAD_SEC,
  type InboundMessage,
  type ProviderName,
  type SessionKey,
  type WebhookBatch,
} from '../model/message.ts';
import type { IngestResult } from './types.ts';

/** Default of both retentions: 30 days. */
export const DEFAULT_RETENTION_SEC = 30 * 86_400;

/** Rows removed per statement: a purge never holds the store for long. */
export const PURGE_BATCH = 1_000;

/** Reason written into an inbound message whose content was redacted. */
export const REDACTED_REASON = 'deleted after BATON_MESSAGE_RETENTION';

export interface RetentionOptions {
  /** `BATON_RETENTION`, seconds (default 30 days). */
  readonly retentionSec?: number;
  /** `BATON_MESSAGE_RETENTION`, seconds (default 30 days). */
  readonly messageRetentionSec?: number;
  /**
   * `BATON_SESSION_TTL`, seconds: a session's data is cleared only past both this and the
   * message retention (an unexpired session still uses it). Not given: sessions keep their data.
   */
  readonly sessionTtlSec?: number;
  /** How often the purge runs, ms (embedded 60 s, distributed 10 min; 0: only when called). */
  readonly purgeIntervalMs?: number;
}

/** What one purge removed. */
export interface PurgeReport {
  transitions: number;
  outbound: number;
  /** Inbound messages deleted. */
  inbound: number;
  /** Inbound messages (inside the dedupe window) and outbound records whose text was redacted. */
  redacted: number;
  deadLetters: number;
  /** Sessions due to expire (expired, and past the message retention), handed to the engine to expire. */
  sessions: number;
}

/**
 * Sessions a purge looks at for data to clear, in key order from where the last one stopped:
 * a pass costs the same however many sessions are stored (no index by age, which every commit
 * would have to update), and a walk over a million sessions takes 200 passes.
 */
export const SESSION_SWEEP = 5_000;

/**
 * Sessions one purge hands to the workers to expire at most: their events wait in the queue like
 * messages (`queue_depth` counts them), so a purge that found thousands due at once paged an
 * operator whose alert threshold was set for user traffic (outside test QA74-F3: 1,845 with no
 * user writing). The next purge goes on after the last one handed over.
 */
export const EXPIRE_PER_PURGE = 500;

/**
 * Expiry events handed to the workers at a time (see {@link handInDoses}): what a purge adds to
 * the queue depth at most.
 */
export const EXPIRE_DOSE = 25;

/**
 * Longest a purge waits for the workers to take a dose before it stops handing over; the rest
 * waits for the next purge (the workers busy with a backlog of users, or none running), ms.
 */
export const DOSE_WAIT_MS = 5_000;

/**
 * Hands a purge's expiry events to the workers {@link EXPIRE_DOSE} at a time, each dose once the
 * queue is back where it was before the one before (the workers took it), so that a purge alone
 * never takes the queue depth far from where user traffic has it: 500 at once fired a
 * queue-depth alert with a threshold of 100 at every purge, with no user writing (outside test
 * QA90-F3). How many it handed (fewer than all when a dose was not taken within
 * {@link DOSE_WAIT_MS}), and how many of those were new: an expiry event is named by the session's
 * version, so one handed again before the store the sweep reads caught up with the expiry (the
 * distributed backend's PostgreSQL copy) is a duplicate, expiring nothing, and not counted (a
 * purge reported 19 sessions expired a second time).
 */
export async function handInDoses(
  batch: WebhookBatch,
  o: {
    readonly ingest: (batch: WebhookBatch) => Promise<IngestResult>;
    /** The queue depth now (committed figures). */
    readonly depth: () => Promise<number>;
    readonly now: () => number;
    /** The store is closing: hand no more. */
    readonly closed?: () => boolean;
  },
): Promise<{ handed: number; expired: number }> {
  let handed = 0;
  let expired = 0;
  while (handed < batch.messages.length && o.closed?.() !== true) {
    const before = await o.depth();
    const dose = batch.messages.slice(handed, handed + EXPIRE_DOSE);
    expired += (await o.ingest({ ...batch, messages: dose, receivedAt: o.now() })).accepted;
    handed += dose.length;
    if (handed === batch.messages.length) break;
    const until = o.now() + DOSE_WAIT_MS;
    while ((await o.depth()) > before) {
      if (o.now() >= until || o.closed?.() === true) return { handed, expired };
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { handed, expired };
}

/** A report of nothing purged yet. */
export function emptyPurgeReport(): PurgeReport {
  return { transitions: 0, outbound: 0, inbound: 0, redacted: 0, deadLetters: 0, sessions: 0 };
}

/** The cut-offs (epoch ms) of one purge at `nowMs`. */
export function purgeHorizons(
  nowMs: number,
  dedupeTtlSec: number,
  o: RetentionOptions,
): {
  transitions: number;
  outbound: number;
  inbound: number;
  redact: number | null;
  sessions: number | null;
} {
  const retention = (o.retentionSec ?? DEFAULT_RETENTION_SEC) * 1000;
  const messages = (o.messageRetentionSec ?? DEFAULT_RETENTION_SEC) * 1000;
  const dedupe = dedupeTtlSec * 1000;
  return {
    transitions: nowMs - retention,
    outbound: nowMs - Math.min(retention, messages),
    inbound: nowMs - Math.max(messages, dedupe),
    redact: messages < dedupe ? nowMs - messages : null,
    // The session's own clock may run up to MAX_CLOCK_AHEAD_SEC ahead of its last write (a trusted
    // timestamp from the future): written before this, it has expired by any clock, so the expiry
    // event expires it, rather than being `ignored` and stored again as a duplicate at every purge
    // (outside test QA74-F5).
    sessions:
      o.sessionTtlSec === undefined
        ? null
        : nowMs - Math.max(messages, (o.sessionTtlSec + MAX_CLOCK_AHEAD_SEC + 1) * 1000),
  };
}

/** Lets other work run between two purge batches. */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A session a purge found due to expire, as its store reads it. */
export interface DueSession extends SessionKey {
  readonly version: number;
  readonly provider?: ProviderName | undefined;
  readonly waId?: string | undefined;
  readonly userId?: string | undefined;
}

/** A swept session as a store's page reads it: ids may be null, and PostgreSQL's bigint a string. */
export interface SweptSession {
  readonly channel: string;
  readonly user: string;
  readonly version: number | string;
  readonly provider: string | null;
  readonly waId: string | null;
  readonly userId: string | null;
}

/**
 * One page of a purge's sweep (in key order) handed over: the expiry events of its due sessions,
 * at most {@link EXPIRE_PER_PURGE}, and, given how many of them were handed, the session the next
 * purge resumes after (undefined: from the first; null: where this one began). With more due
 * than one purge hands over, it resumes after the last one handed over.
 */
export function handOver<R extends SweptSession>(
  page: readonly R[],
  isDue: (r: R) => boolean,
  nowMs: number,
): { batch: WebhookBatch; resumeAfter: (handed: number) => R | undefined | null } {
  const due = page.filter(isDue);
  const taken = due.slice(0, EXPIRE_PER_PURGE);
  const all =
    taken.length < due.length ? taken.at(-1) : page.length < SESSION_SWEEP ? undefined : page.at(-1);
  // Fewer handed than taken (see handInDoses): the next purge resumes after the last one handed,
  // or where this one began (null) when none was.
  const resumeAfter = (handed: number): R | undefined | null =>
    handed >= taken.length ? all : handed === 0 ? null : taken[handed - 1];
  const messages = taken.map((r) =>
    expiryEvent(
      {
        channel: r.channel,
        user: r.user,
        version: Number(r.version),
        provider: (r.provider as ProviderName | null) ?? undefined,
        waId: r.waId ?? undefined,
        userId: r.userId ?? undefined,
      },
      nowMs,
    ),
  );
  return { batch: { messages, statuses: [], receivedAt: nowMs }, resumeAfter };
}

/**
 * What a purge stores for a session due to expire: an event no flow has, stamped now, which the
 * engine applies under the session's baton as it applies any message, so the change is a state
 * change like any other (SPEC 1.4, outside test QA72-F2: cleared in place by the purge, the
 * session changed without a new version or a record, and the user's return then recorded no
 * `expired`). Idle past `BATON_SESSION_TTL`, the session expires (recorded `expired`, a new
 * version, no step, no data), with no flow code run and nothing sent (`expireIdle` in
 * flow/transition.ts); the event itself is then recorded `ignored`. One written to since (the
 * user back first) is only `ignored`. Its id names the version it was due at, so a purge that
 * finds it again before the engine has applied it stores nothing new (a duplicate), and no event
 * posted through the admin API can take it first (theirs are `ev:` ids).
 */
export function expiryEvent(s: DueSession, nowMs: number): InboundMessage {
  return {
    id: eventMessageId(s, `v${s.version}`, 'expire'),
    provider: s.provider ?? 'cloud-api',
    channel: s.channel,
    user: s.user,
    ...(s.waId !== undefined ? { waId: s.waId } : {}),
    ...(s.userId !== undefined ? { userId: s.userId } : {}),
    timestamp: Math.floor(nowMs / 1000),
    content: { type: 'event', name: EXPIRY_EVENT, payload: null },
  };
}
