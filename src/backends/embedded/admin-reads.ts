/**
 * What the admin API and the console read from the embedded store: sessions found, counted and
 * listed, a session's history, failed replies and dead letters. Reads only, on indexes.
 * @module
 */
import type { SessionKey, StoredMessage } from '../../model/message.ts';
import type { DeadLetter, OutboundRecord, SessionSnapshot, TransitionRecord } from '../../model/session.ts';
import type { DeadLetterCursor, FailedReply, SessionCount, SessionQuery } from '../types.ts';
import { deadLetterOf, OUTBOUND_ROW, outboundRecord, type OutboundRow, type Row } from './rows.ts';
import type { SqliteStore } from './sqlite.ts';

type Reads = Pick<SqliteStore, 'sql'>;

export function findSessions(db: Reads, user: string, channel?: string): SessionSnapshot[] {
  const rows = db
    .sql(
      `SELECT snapshot FROM sessions WHERE (user = @u OR wa_id = @u OR user_id = @u)
         AND (@c IS NULL OR channel = @c) ORDER BY channel`,
    )
    .all({ u: user, c: channel ?? null }) as Array<{ snapshot: string }>;
  return rows.map((r) => JSON.parse(r.snapshot) as SessionSnapshot);
}

export function countSessions(db: Reads, activeSinceMs?: number): SessionCount[] {
  // From the sessions_counts index alone (no session's JSON is read).
  const rows = db
    .sql(
      `SELECT flow, step, needs_agent AS na, COUNT(*) AS n, MIN(active_at) AS oldest
         FROM sessions
        WHERE @since IS NULL OR active_at >= @since
        GROUP BY flow, step, needs_agent`,
    )
    .all({ since: activeSinceMs ?? null }) as Array<{
    flow: string;
    step: string | null;
    na: number;
    n: number;
    oldest: number;
  }>;
  return rows.map((r) => ({
    flow: r.flow,
    step: r.step,
    needsAgent: r.na === 1,
    sessions: r.n,
    oldestAt: r.oldest,
  }));
}

export function listSessions(
  db: Reads,
  q: SessionQuery,
): { sessions: SessionSnapshot[]; nextCursor: string | null } {
  const after = q.cursor
    ? (JSON.parse(Buffer.from(q.cursor, 'base64url').toString()) as [string, string])
    : null;
  const rows = db
    .sql(
      `SELECT channel, user, snapshot FROM sessions
         WHERE (@step IS NULL OR step = @step) AND (@na IS NULL OR needs_agent = @na)
           AND (@c IS NULL OR channel = @c)
           AND (@ac IS NULL OR channel > @ac OR (channel = @ac AND user > @au))
         ORDER BY channel, user LIMIT @limit`,
    )
    .all({
      step: q.step ?? null,
      na: q.needsAgent === undefined ? null : q.needsAgent ? 1 : 0,
      c: q.channel ?? null,
      ac: after?.[0] ?? null,
      au: after?.[1] ?? null,
      limit: q.limit + 1,
    }) as Array<{ channel: string; user: string; snapshot: string }>;
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    sessions: page.map((r) => JSON.parse(r.snapshot) as SessionSnapshot),
    nextCursor:
      rows.length > q.limit && last
        ? Buffer.from(JSON.stringify([last.channel, last.user])).toString('base64url')
        : null,
  };
}

export function transitions(db: Reads, key: SessionKey, newest?: number): TransitionRecord[] {
  // The newest first along the session's index (LIMIT -1: all), then back in order.
  const rows = db
    .sql('SELECT record FROM transitions WHERE channel = ? AND user = ? ORDER BY idx DESC LIMIT ?')
    .all(key.channel, key.user, newest ?? -1) as Array<{ record: string }>;
  return rows.reverse().map((r) => JSON.parse(r.record) as TransitionRecord);
}

export function outbound(db: Reads, key: SessionKey, newest?: number): OutboundRecord[] {
  const rows = db
    .sql(`SELECT ${OUTBOUND_ROW} FROM outbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?`)
    .all(key.channel, key.user, newest ?? -1) as OutboundRow[];
  return rows.reverse().map(outboundRecord);
}

export function inbound(db: Reads, key: SessionKey, newest?: number): StoredMessage[] {
  const rows = db
    .sql('SELECT body FROM inbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?')
    .all(key.channel, key.user, newest ?? -1) as Array<{ body: string }>;
  return rows.reverse().map((r) => JSON.parse(r.body) as StoredMessage);
}

export function failedReplies(db: Reads, limit: number): FailedReply[] {
  const rows = db
    .sql(
      `SELECT ${OUTBOUND_ROW}, updated_at FROM outbound
       WHERE status = 'failed' AND json_extract(record, '$.effect') IS NULL
       ORDER BY updated_at DESC, rowid DESC LIMIT ?`,
    )
    .all(limit) as (OutboundRow & { updated_at: number })[];
  return rows.map((r) => ({ ...outboundRecord(r), failedAt: r.updated_at }));
}

export function listDeadLetters(db: Reads, limit: number, after?: DeadLetterCursor): DeadLetter[] {
  const rows = db
    .sql(
      `SELECT * FROM dead_letters
        WHERE @at IS NULL OR created_at < @at OR (created_at = @at AND id > @id)
        ORDER BY created_at DESC, id LIMIT @limit`,
    )
    .all({ at: after?.createdAt ?? null, id: after?.id ?? '', limit }) as Row[];
  return rows.map(deadLetterOf);
}

export function getDeadLetter(db: Reads, id: string): DeadLetter | null {
  const row = db.sql('SELECT * FROM dead_letters WHERE id = ?').get(id) as Row | undefined;
  return row ? deadLetterOf(row) : null;
}
