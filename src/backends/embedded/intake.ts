/**
 * The embedded store's intake, inside its group commit: webhook messages stored once (deduped by
 * id, numbered in arrival order, routed to the session of the number a user id last came with)
 * and status webhooks applied to the replies they name, parked when they come first.
 * @module
 */
import {
  ALIAS_SEARCH_DEPTH,
  EARLY_STATUS_TTL_MS,
  laterStatus,
  readLate,
  rekeyed,
  sessionId,
  statusLastError,
  type DeliveryStatus,
  type InboundMessage,
  type SessionKey,
  type StatusUpdate,
  type StoredMessage,
  userIdOnly,
  type WebhookBatch,
} from '../../model/message.ts';
import type { OutboundStatus } from '../../model/session.ts';
import type { IngestResult } from '../types.ts';
import type { SqliteStore } from './sqlite.ts';

/** The sessions a webhook stored new messages in, each with when its first one was stored. */
export type Touched = Map<string, { readonly key: SessionKey; readonly storedAt: number }>;

/** A status parked for a send not recorded yet. */
export interface EarlyStatus {
  readonly status: DeliveryStatus;
  readonly last_error: string | null;
}

export class EmbeddedIntake {
  constructor(
    private readonly db: SqliteStore,
    private readonly now: () => number,
  ) {}

  /** Stores `batch`, inside a group commit's write; `touched` gets the sessions it wrote to. */
  store(batch: WebhookBatch, touched: Touched): IngestResult {
    // On a busy machine the group commit may come well after the webhook arrived: the
    // arrival is what the buffer window measures.
    const storedAt = Math.min(this.now(), batch.receivedAt ?? Number.POSITIVE_INFINITY);
    const late = readLate(batch);
    const insert = this.db.sql(
      `INSERT INTO inbound (id, channel, user, seq, stored_at, state, body) VALUES (?, ?, ?, ?, ?, 'pending', ?)
           ON CONFLICT (id) DO NOTHING`,
    );
    let accepted = 0;
    let duplicates = 0;
    const taught = new Map<string, { user: string; at: number }>();
    for (const m of batch.messages) {
      if (m.userId === undefined || m.waId === undefined || m.user !== m.waId) continue;
      const id = `${m.channel}\n${m.userId}`;
      if ((taught.get(id)?.at ?? -1) <= m.timestamp) taught.set(id, { user: m.user, at: m.timestamp });
    }
    for (const given of batch.messages) {
      const m = this.routed(given, taught);
      const stored: StoredMessage = { ...m, seq: this.db.seq + 1, storedAt, ...late };
      const info = insert.run(m.id, m.channel, m.user, stored.seq, storedAt, JSON.stringify(stored));
      if (info.changes === 1) {
        this.bind(m);
        this.db.seq += 1;
        accepted += 1;
        this.db.staged.pending += 1;
        const id = sessionId(m);
        if (!touched.has(id)) touched.set(id, { key: { channel: m.channel, user: m.user }, storedAt });
      } else {
        duplicates += 1;
      }
    }
    let statuses = 0;
    for (const st of batch.statuses) statuses += this.applyStatus(st);
    return { accepted, duplicates, statuses };
  }

  /**
   * `m`, if it names its sender by business-scoped user id alone, under the session of the phone
   * number that id last came with (model/message.ts, userIdOnly). Inside the intake's write.
   */
  private routed(
    m: InboundMessage,
    taught: ReadonlyMap<string, { user: string; at: number }>,
  ): InboundMessage {
    const userId = userIdOnly(m);
    if (userId === undefined) return m;
    const bound = this.db
      .sql('SELECT user, at FROM user_aliases WHERE channel = ? AND user_id = ?')
      .get(m.channel, userId) as { user: string; at: number } | undefined;
    // A number the same webhook names the user id with counts at once, if it is as late.
    const named = taught.get(`${m.channel}\n${userId}`);
    const to = named !== undefined && (bound === undefined || named.at >= bound.at) ? named : bound;
    return to === undefined ? m : rekeyed(m, to.user);
  }

  /**
   * A message stored (not a duplicate) that names its sender by number and user id binds the id
   * to the number, if it is as late or later (by WhatsApp's timestamp) than the message that bound
   * it: a redelivered or late message from an old number does not take the user back there.
   */
  private bind(m: InboundMessage): void {
    if (m.userId === undefined || m.waId === undefined || m.user !== m.waId) return;
    this.db
      .sql(
        `INSERT INTO user_aliases (channel, user_id, user, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (channel, user_id) DO UPDATE SET user = excluded.user, at = excluded.at
         WHERE excluded.at >= user_aliases.at`,
      )
      .run(m.channel, m.userId, m.user, m.timestamp);
  }

  /**
   * A status webhook, by {@link statusAllowed} like the distributed backend: its last error is
   * kept even when the status stays (a failed webhook after delivered), and a record found counts
   * as applied whether or not its status moved.
   */
  private applyStatus(st: StatusUpdate): number {
    // By the channel too: a status names a send of its own gateway and number only (a WASender
    // webhook, authenticated by a shared secret, cannot touch a Cloud API record).
    const row = this.db
      .sql('SELECT id, status FROM outbound WHERE provider_message_id = ? AND channel = ?')
      .get(st.messageId, st.channel) as { id: string; status: OutboundStatus } | undefined;
    if (!row) {
      this.learnAlias(st);
      this.parkStatus(st);
      return 0;
    }
    const status = laterStatus<OutboundStatus>(row.status, st.status);
    const lastError = statusLastError(st);
    if (status === row.status && lastError === null) return 1;
    this.db
      .sql(
        'UPDATE outbound SET status = ?, last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?',
      )
      .run(status, lastError, this.now(), row.id);
    return 1;
  }

  /**
   * A status about a provider id no record has: when its `biz_opaque_callback_data` names one of
   * the session's recent replies (unique per user, SPEC 3), the id is another copy of that reply,
   * kept as its alias. A copy is sent and not recorded when its holder dies in between; the
   * reply is then sent again, and a button on the first copy must still read as that prompt's
   * (SPEC 1.7). The status itself stays parked: it applies only to the send that reports its id.
   */
  private learnAlias(st: StatusUpdate): void {
    const data = st.bizOpaqueCallbackData;
    if (data === undefined || !data.startsWith('baton:')) return;
    const row = this.db
      .sql(
        `SELECT id FROM (SELECT id, record FROM outbound WHERE channel = ? AND user = ? ORDER BY seq DESC LIMIT ?)
         WHERE json_extract(record, '$.callbackData') = ?`,
      )
      .get(st.channel, st.recipient, ALIAS_SEARCH_DEPTH, data) as { id: string } | undefined;
    if (!row) return;
    this.db
      .sql(
        'INSERT OR IGNORE INTO outbound_aliases (provider_message_id, channel, outbound_id, at) VALUES (?, ?, ?, ?)',
      )
      .run(st.messageId, st.channel, row.id, this.now());
  }

  /**
   * Keeps a status webhook about a send not recorded yet (WhatsApp may report it before the
   * send's answer is recorded): merged by the status rule with any parked before it, and applied
   * when the send is recorded (see {@link earlyStatus}). See EARLY_STATUS_TTL_MS.
   */
  private parkStatus(st: StatusUpdate): void {
    const prev = this.earlyStatus(st.messageId, st.channel);
    this.db
      .sql(
        `INSERT INTO early_statuses (provider_message_id, channel, status, last_error, at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (provider_message_id) DO UPDATE
           SET channel = excluded.channel, status = excluded.status, last_error = excluded.last_error`,
      )
      .run(
        st.messageId,
        st.channel,
        prev ? laterStatus(prev.status, st.status) : st.status,
        statusLastError(st) ?? prev?.last_error ?? null,
        this.now(),
      );
  }

  /**
   * The status parked for `providerMessageId` on `channel`, unless it is older than
   * EARLY_STATUS_TTL_MS.
   */
  earlyStatus(providerMessageId: string, channel: string): EarlyStatus | undefined {
    return this.db
      .sql(
        // '' is a status parked before the channel was kept (migration 8): it expires within minutes.
        "SELECT status, last_error FROM early_statuses WHERE provider_message_id = ? AND channel IN (?, '') AND at >= ?",
      )
      .get(providerMessageId, channel, this.now() - EARLY_STATUS_TTL_MS) as EarlyStatus | undefined;
  }
}
