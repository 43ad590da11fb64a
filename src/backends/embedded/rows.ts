/**
 * How the embedded store's rows read back as the model's records.
 * @module
 */
import type { DeadLetter, OutboundRecord, OutboundStatus, SessionSnapshot } from '../../model/session.ts';

export type Row = Record<string, unknown>;

/** The columns an outbound record is read from (see {@link outboundRecord}). */
export const OUTBOUND_ROW = 'record, status, attempts, claims, provider_message_id, last_error, not_before';

export interface OutboundRow {
  readonly record: string;
  readonly status: OutboundStatus;
  readonly attempts: number;
  readonly claims: number;
  readonly provider_message_id: string | null;
  readonly last_error: string | null;
  readonly not_before: number | null;
}

/**
 * An outbound record: its JSON as its commit wrote it, with the status columns over it. Sends and
 * status webhooks write the columns alone (a record's JSON is most of its row, and was rewritten
 * at every change before); rows written before that have the same values in both.
 */
export function outboundRecord(row: OutboundRow): OutboundRecord {
  const { providerMessageId: _p, lastError: _e, ...fixed } = JSON.parse(row.record) as OutboundRecord;
  return {
    ...fixed,
    status: row.status,
    attempts: row.attempts,
    claims: row.claims,
    ...(row.provider_message_id !== null ? { providerMessageId: row.provider_message_id } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error } : {}),
    ...(row.not_before !== null ? { notBefore: row.not_before } : {}),
  };
}

export function deadLetterOf(r: Row): DeadLetter {
  return {
    id: r.id as string,
    kind: r.kind as DeadLetter['kind'],
    channel: r.channel as string,
    user: r.user as string,
    ref: r.ref as string,
    reason: r.reason as string,
    payload: JSON.parse(r.payload as string) as unknown,
    createdAt: r.created_at as number,
    ...(r.replayed_at !== null ? { replayedAt: r.replayed_at as number } : {}),
  };
}

/** When the user last wrote (epoch ms), or when the session was created before any message. */
export function activeAt(s: SessionSnapshot): number {
  return s.lastInteraction !== null ? s.lastInteraction * 1000 : s.createdAt;
}
