/**
 * The journal: what a session's Redis writes owe PostgreSQL. Every script that changes
 * durable data appends an entry to the session's journal LIST in the same atomic step; the
 * group committer (write-through) or the stream flusher (write-behind) copies entries to
 * PostgreSQL and then trims them. Copying is idempotent, so an entry may be copied twice
 * (a crash between the PostgreSQL commit and the trim) but is never lost.
 * @module
 */
import type { StoredMessage } from '../../model/message.ts';
import type {
  DeadLetter,
  OutboundRecord,
  OutboundStatus,
  SessionSnapshot,
  TransitionRecord,
} from '../../model/session.ts';

/** The part of an outbound record that never changes once committed. */
export type OutboundBodyRecord = Omit<
  OutboundRecord,
  'status' | 'attempts' | 'claims' | 'claimedBy' | 'providerMessageId' | 'lastError' | 'notBefore'
>;

/** The part that the outbox and status webhooks change; `rev` orders the changes. */
export interface OutboundState {
  status: OutboundStatus;
  attempts: number;
  /** OutboundRecord.claims; absent in a state written before it was kept: 1. */
  claims?: number;
  /** OutboundRecord.claimedBy (Redis only: PostgreSQL does not keep it). */
  claimedBy?: string;
  providerMessageId?: string;
  /**
   * Provider ids of other copies of this reply, learnt from their status webhooks (a holder
   * killed after its send went out and before recording it): they name the record for the
   * prompt it carried, never for statuses. See outbound-update-7.lua, ARGV[11].
   */
  aliases?: string[];
  lastError?: string;
  /** OutboundRecord.notBefore (Redis only: PostgreSQL does not keep it). */
  notBefore?: number;
  rev: number;
}

/** One committed batch. Built by `commit`; `rev` and `messages` are added by commit-12.lua. */
export interface CommitEntry {
  readonly id: string;
  readonly t: 'c';
  readonly channel: string;
  readonly user: string;
  readonly fence: number;
  readonly expectedVersion: number;
  /** Epoch ms. */
  readonly at: number;
  readonly snapshot: SessionSnapshot;
  readonly records: readonly TransitionRecord[];
  readonly outbound: ReadonlyArray<{ readonly record: OutboundBodyRecord; readonly state: OutboundState }>;
  readonly deadLetters: readonly DeadLetter[];
  readonly rev: number;
  /** The consumed messages as they were stored. */
  readonly messages: readonly StoredMessage[];
}

/** A change of one outbound record's mutable part. `outboundId` and `state` are added by outbound-update-7.lua. */
export interface OutboundStateEntry {
  readonly id: string;
  readonly t: 'o';
  readonly channel: string;
  readonly user: string;
  readonly outboundId: string;
  readonly state: OutboundState;
}

export type JournalEntry = CommitEntry | OutboundStateEntry;

/** An entry's JSON without its closing brace, for a script to complete. `id` comes first (journal-trim-n.lua relies on it). */
export function entryPrefix(entry: Record<string, unknown> & { id: string }): string {
  const { id, ...rest } = entry;
  const json = JSON.stringify({ id, ...rest });
  return json.slice(0, -1);
}

/** Splits an outbound record into its immutable and mutable parts. */
export function splitOutbound(
  r: OutboundRecord,
  rev: number,
): { record: OutboundBodyRecord; state: OutboundState } {
  const { status, attempts, claims = 1, claimedBy, providerMessageId, lastError, notBefore, ...record } = r;
  const state: OutboundState = { status, attempts, claims, rev };
  if (claimedBy !== undefined) state.claimedBy = claimedBy;
  if (providerMessageId !== undefined) state.providerMessageId = providerMessageId;
  if (lastError !== undefined) state.lastError = lastError;
  if (notBefore !== undefined) state.notBefore = notBefore;
  return { record, state };
}

/** Joins the two parts back into the record the Backend interface returns. */
export function joinOutbound(record: OutboundBodyRecord, state: OutboundState): OutboundRecord {
  const r: OutboundRecord = {
    ...record,
    status: state.status,
    attempts: state.attempts,
    claims: typeof state.claims === 'number' ? state.claims : 1,
  };
  if (typeof state.claimedBy === 'string') r.claimedBy = state.claimedBy;
  if (typeof state.providerMessageId === 'string') r.providerMessageId = state.providerMessageId;
  if (typeof state.lastError === 'string') r.lastError = state.lastError;
  if (typeof state.notBefore === 'number') r.notBefore = state.notBefore;
  return r;
}
