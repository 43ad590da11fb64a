/**
 * The embedded store's retention pass (see `../retention.ts` for what is kept how long): deletes
 * or redacts inbound messages, transitions, outbound records, dead letters and what names them,
 * in batches with the event loop free between them, and hands sessions past the message
 * retention to the engine to be expired under their baton.
 * @module
 */
import type Database from 'better-sqlite3';
import { EARLY_STATUS_TTL_MS, type WebhookBatch } from '../../model/message.ts';
import type { OutboundStatus } from '../../model/session.ts';
import type { IngestResult } from '../types.ts';
import {
  emptyPurgeReport,
  handInDoses,
  handOver,
  PURGE_BATCH,
  purgeHorizons,
  REDACTED_REASON,
  SESSION_SWEEP,
  yieldToLoop,
  type PurgeReport,
  type RetentionOptions,
  type SweptSession,
} from '../retention.ts';

/** What the purge needs of the embedded store. */
export interface PurgeHost {
  /** A prepared statement of the store's connection (a write ends its open read). */
  sql(text: string): Database.Statement;
  /** SQLite's `secure_delete`: ON while the purge runs, FAST otherwise. */
  secureDelete(on: boolean): void;
  readonly now: () => number;
  readonly options: RetentionOptions & { readonly dedupeTtlSec: number };
  /** Whether the store was closed (the purge stops between batches). */
  readonly closed: () => boolean;
  /** Counts the dead letters not replayed again, after some were deleted. */
  countDeadLetters(): void;
  /** The purge wrote: checkpoint and cut the WAL once idle. */
  written(): void;
  /** Stores the expiry events of sessions handed to the engine. */
  readonly ingest: (batch: WebhookBatch) => Promise<IngestResult>;
  /** Messages stored and not yet consumed (committed figures). */
  queueDepth(): number;
}

/** One embedded store's purges, and where the last one stopped. */
export class EmbeddedPurge {
  private running = false;
  /** Outbound rows up to this rowid are deleted or their texts redacted. */
  private outboundRedactedUpTo = 0;
  /** Sessions up to this rowid were looked at for expiry (see expireDueSessions). */
  private sessionsSweptUpTo = 0;

  constructor(private readonly h: PurgeHost) {}

  /**
   * Deletes what retention no longer keeps (see `../retention.ts`), in batches of
   * {@link PURGE_BATCH} rows with the event loop free between them. One pass at a time: a call
   * while one runs returns an empty report.
   */
  async run(): Promise<PurgeReport> {
    const report = emptyPurgeReport();
    if (this.running) return report;
    this.running = true;
    try {
      const sessionsDue = await this.deleteExpired(report);
      // Last, with the deletes' secure_delete off again: the hand-over waits for the workers to
      // take each dose, seconds at most, and the webhooks stored meanwhile need not pay for it.
      if (sessionsDue !== null) report.sessions = await this.expireDueSessions(sessionsDue);
      return report;
    } finally {
      this.running = false;
    }
  }

  /**
   * Deletes and redacts what the retention no longer keeps, adding to `report`; the cut-off of
   * sessions due to expire (null: none expire).
   */
  private async deleteExpired(report: PurgeReport): Promise<number | null> {
    // What the retention deletes is overwritten, whole freed pages too: in FAST mode a page a
    // delete frees kept its texts on disk (outside test QA12-F2: a QA run found names and
    // addresses past BATON_MESSAGE_RETENTION in the file's free pages). Writes of other sessions
    // that run between the purge's batches pay for it too, for those moments only.
    this.h.secureDelete(true);
    try {
      const h = purgeHorizons(this.h.now(), this.h.options.dedupeTtlSec, this.h.options);
      const batches = async (run: () => number, add?: (n: number) => void): Promise<void> => {
        for (;;) {
          if (this.h.closed()) return;
          const n = run();
          add?.(n);
          if (n < PURGE_BATCH) return;
          await yieldToLoop();
        }
      };
      /** Deletes the rows of `table` whose `column` is before `cutOff`, a batch at a time. */
      const olderThan = (table: string, column: string, cutOff: number, add?: (n: number) => void) =>
        batches(
          () =>
            this.h
              .sql(
                `DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE ${column} < ? LIMIT ?)`,
              )
              .run(cutOff, PURGE_BATCH).changes,
          add,
        );
      await batches(
        () =>
          this.h
            .sql(
              `DELETE FROM inbound WHERE rowid IN
               (SELECT rowid FROM inbound WHERE stored_at < ? AND state <> 'pending' LIMIT ?)`,
            )
            .run(h.inbound, PURGE_BATCH).changes,
        (n) => (report.inbound += n),
      );
      if (h.redact !== null) {
        const redact = h.redact;
        await batches(
          () =>
            this.h
              .sql(
                `UPDATE inbound SET body = json_set(body,
                 '$.content', json_object('type', 'unsupported',
                   'originalType', json_extract(body, '$.content.type'), 'reason', ?),
                 '$.profileName', NULL)
               WHERE rowid IN (SELECT rowid FROM inbound WHERE stored_at < ? AND state <> 'pending'
                 AND json_extract(body, '$.content.reason') IS NOT ? LIMIT ?)`,
              )
              .run(REDACTED_REASON, redact, REDACTED_REASON, PURGE_BATCH).changes,
          (n) => (report.redacted += n),
        );
      }
      // Transitions and outbound rows are appended in time order: purge the oldest prefix.
      const transitionsBefore = new Date(h.transitions).toISOString();
      await batches(
        () => {
          const rows = this.h
            .sql(`SELECT idx, json_extract(record, '$.at') AS at FROM transitions ORDER BY idx LIMIT ?`)
            .all(PURGE_BATCH) as Array<{ idx: number; at: string }>;
          let old = 0;
          while (old < rows.length && rows[old]!.at < transitionsBefore) old++;
          if (old > 0) this.h.sql('DELETE FROM transitions WHERE idx <= ?').run(rows[old - 1]!.idx);
          return old;
        },
        (n) => (report.transitions += n),
      );
      // Outbound rows too, from the oldest on by rowid, up to the first one inside the retention:
      // the table has no index by age, and a filtered delete scanned all of it (the replies'
      // JSON included) on every purge, even with nothing to drop. Unsent rows stay and are
      // stepped over. A record lives as long as the transitions: it is what tells an old
      // button from the current prompt's (SPEC 1.7); past the message retention, only its text
      // goes (an outside test saw an old "cancel" button applied once its record was purged).
      type Row = { id: number; at: number; status: OutboundStatus; effect: number };
      const outboundAfter = (rowid: number): Row[] =>
        this.h
          .sql(
            `SELECT rowid AS id, created_at AS at, status, json_extract(record, '$.effect') IS NOT NULL AS effect
             FROM outbound WHERE rowid > ? ORDER BY rowid LIMIT ?`,
          )
          .all(rowid, PURGE_BATCH) as Row[];
      const drop = this.h.sql('DELETE FROM outbound WHERE rowid = ?');
      let after = 0;
      await batches(() => {
        const rows = outboundAfter(after);
        let seen = 0;
        for (const r of rows) {
          if (r.at >= h.transitions) return 0; // the rest is younger
          seen += 1;
          after = r.id;
          if (r.status !== 'pending' && r.status !== 'sending') report.outbound += drop.run(r.id).changes;
        }
        return seen;
      });
      if (h.outbound > h.transitions) {
        // Redacted from where the last purge stopped (rowids grow with time), up to the first
        // unsent row: it keeps its text until it is sent, and this walk waits for it. A reply
        // that failed is deleted instead, as before: nobody saw its buttons, and a replay of its
        // dead letter must not send the redaction's text.
        let cursor = Math.max(after, this.outboundRedactedUpTo);
        await batches(() => {
          const rows = outboundAfter(cursor);
          const redact = this.h.sql(
            `UPDATE outbound SET record = json_set(record, '$.body', json_object('type', 'text', 'text', ?))
               WHERE rowid = ? AND json_extract(record, '$.body.text') IS NOT ?`,
          );
          for (const r of rows) {
            if (r.at >= h.outbound || r.status === 'pending' || r.status === 'sending') return 0;
            // A failed effect call is kept (redacted) as a done one is (outside test QA9-F2).
            if (r.status === 'failed' && r.effect === 0) report.outbound += drop.run(r.id).changes;
            else report.redacted += redact.run(REDACTED_REASON, r.id, REDACTED_REASON).changes;
            cursor = r.id;
          }
          return rows.length;
        });
        this.outboundRedactedUpTo = cursor;
      }
      await olderThan('dead_letters', 'created_at', h.outbound, (n) => (report.deadLetters += n));
      if (report.deadLetters > 0) this.h.countDeadLetters();
      this.h.sql('DELETE FROM signed_out WHERE until <= ?').run(this.h.now());
      // Other copies' ids live as long as the records they name.
      await olderThan('outbound_aliases', 'at', h.transitions);
      // Status webhooks parked for sends never recorded (a send that got no answer, say).
      await olderThan('early_statuses', 'at', this.h.now() - EARLY_STATUS_TTL_MS);
      return h.sessions;
    } finally {
      if (!this.h.closed()) {
        this.h.secureDelete(false);
        // Its writes are checkpointed and the WAL cut once idle, as a webhook's are: on an idle
        // store the deleted texts stayed in the database file and the WAL until the next
        // webhook (outside test QA52-F1).
        this.h.written();
      }
    }
  }

  /**
   * Expires the sessions written last before `cutOff` (expired, and past the message retention:
   * see `../retention.ts`) through the engine: each gets the purge's expiry event, applied under
   * its baton like any message (a new version, recorded `expired`, no step, no data), so whatever
   * the user sends next starts a new conversation, a redelivery stamped before the session
   * expired too (outside test QA71-R1). Not a session awaiting an effect, or with a reply left to
   * send: it is still at work (QA71-R2). Looks at {@link SESSION_SWEEP} sessions by rowid from
   * where the last purge stopped.
   */
  private async expireDueSessions(cutOff: number): Promise<number> {
    const due = `updated_at < ? AND step IS NOT NULL AND json_extract(snapshot, '$.awaiting') IS NULL
      AND NOT EXISTS (SELECT 1 FROM outbound o WHERE o.channel = sessions.channel
        AND o.user = sessions.user AND o.status IN ('pending', 'sending'))`;
    const rows = this.h
      .sql(
        `SELECT rowid AS id, channel, user, version, wa_id AS waId, user_id AS userId,
         json_extract(snapshot, '$.provider') AS provider, ${due} AS due
       FROM sessions WHERE rowid > ? ORDER BY rowid LIMIT ?`,
      )
      .all(cutOff, this.sessionsSweptUpTo, SESSION_SWEEP) as Array<
      SweptSession & { id: number; due: number }
    >;
    const { batch, resumeAfter } = handOver(rows, (r) => r.due === 1, this.h.now());
    const { handed, expired } = await handInDoses(batch, {
      ingest: this.h.ingest,
      depth: async () => this.h.queueDepth(),
      now: this.h.now,
      closed: this.h.closed,
    });
    const resume = resumeAfter(handed);
    if (resume !== null) this.sessionsSweptUpTo = resume?.id ?? 0;
    return expired;
  }
}
