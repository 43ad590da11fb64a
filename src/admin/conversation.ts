/**
 * A session's conversation for agents: what the user sent (inbound messages as stored) and
 * what Baton sent (outbound records with their delivery status), merged oldest first and
 * paged by a keyset cursor. Pure: the routes read the backend and call these.
 * @module
 */
import { REDACTED_REASON } from '../backends/retention.ts';
import { isAgentMessage } from '../flow/agent.ts';
import { isEffectResult } from '../flow/transition.ts';
import { asDelivered } from '../providers/wasender/send.ts';
import { trustedTimestamp, type MessageContent, type StoredMessage } from '../model/message.ts';
import type { DeadLetter, OutboundRecord, OutboundStatus, TransitionRecord } from '../model/session.ts';
import { decodeCursor, encodeCursor, MESSAGE_CURSOR } from './schemas.ts';

/** One line of the conversation, as `GET /sessions/:waId/messages` answers it. */
export interface ConversationItem {
  readonly direction: 'in' | 'out';
  /** Inbound: the provider's message id (`wamid…`). Outbound: Baton's record id. */
  readonly id: string;
  /** ISO 8601: when Baton stored (inbound) or produced (outbound) it. */
  readonly at: string;
  /** `text`, `button_reply`, `list_reply`, `button`, `image`…, `location`, `buttons`, `list`… */
  readonly type: string;
  readonly text?: string;
  /** The message's content beyond its text (a tapped button's id, media, the buttons sent…). */
  readonly payload?: unknown;
  /** Outbound only: its delivery status. */
  readonly status?: OutboundStatus;
  /** Outbound only: the wamid Graph gave it, once sent. */
  readonly wamid?: string;
  /** Outbound only: why it failed, if it did. */
  readonly error?: string;
  /** Outbound only: `prompt` (a step's question), `agent` (an agent wrote it) or `notice`. */
  readonly kind?: 'prompt' | 'agent' | 'notice';
  /** Inbound only: the WhatsApp timestamp (ISO 8601), unless it was not trusted (`clock_ahead`). */
  readonly sent_at?: string;
  /**
   * Inbound only, when true: its timestamp was more than 5 minutes ahead of its storage (SPEC
   * 1.5), so the storage time (`at`) stood in for it and `sent_at` is left out (a phone's clock
   * years ahead showed as `+275760-09-13T00:00:00.000Z`: outside test QA117-F3).
   */
  readonly clock_ahead?: true;
  /** Inbound only: the message it replies to (a tapped button's prompt). */
  readonly context_id?: string;
  /**
   * Inbound only: Baton read it this much after it may have come, ms (its event loop was late:
   * a stopped or starved process); the buffer window counts it as arrived at `at` less this.
   */
  readonly read_late_ms?: number;
}

interface Sortable {
  readonly item: ConversationItem;
  readonly atMs: number;
  readonly rank: number;
  /**
   * Inbound: the WhatsApp timestamp Baton trusts (seconds), which orders messages stored in one
   * millisecond as the engine applies them, before their arrival (outside test QA77-F7: two
   * texts stored together were listed in the other order than applied). Outbound: 0.
   */
  readonly ts: number;
  readonly seq: number;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The text and type of an inbound message, as the user sent it. */
function describeInbound(c: MessageContent): { type: string; text?: string; payload?: unknown } {
  // Its text deleted by the message retention: said so, not "a message Baton cannot read"
  // (outside test QA8-L1).
  if (c.type === 'unsupported' && c.reason === REDACTED_REASON)
    return { type: 'deleted', payload: { originalType: c.originalType, reason: REDACTED_REASON } };
  switch (c.type) {
    case 'text':
      return { type: 'text', text: c.body };
    case 'choice':
      return {
        type: c.source === 'template_button' ? 'button' : c.source,
        text: c.title,
        payload: { id: c.id, title: c.title },
      };
    case 'media': {
      const { type: _t, mediaType, ...rest } = c;
      return { type: mediaType, ...(c.caption !== undefined ? { text: c.caption } : {}), payload: rest };
    }
    case 'location': {
      const { type: _t, ...rest } = c;
      const text = [c.name, c.address].filter(Boolean).join(', ');
      return { type: 'location', ...(text !== '' ? { text } : {}), payload: rest };
    }
    case 'system':
      return { type: 'system', text: c.body };
    case 'event':
      // Not the user's: the bot's own systems told the session (the flow's `events`).
      return { type: 'event', text: c.name, payload: c.payload };
    default: {
      const { type, ...rest } = c;
      return { type, ...(Object.keys(rest).length > 0 ? { payload: rest } : {}) };
    }
  }
}

function inboundItem(m: StoredMessage): Sortable {
  const d = describeInbound(m.content);
  const trusted = trustedTimestamp(m);
  return {
    item: {
      direction: 'in',
      id: m.id,
      at: iso(m.storedAt),
      ...d,
      ...(trusted.clockAhead === true ? { clock_ahead: true } : { sent_at: iso(m.timestamp * 1000) }),
      ...(m.contextId !== undefined ? { context_id: m.contextId } : {}),
      ...(m.readLateMs !== undefined ? { read_late_ms: m.readLateMs } : {}),
    },
    atMs: m.storedAt,
    rank: 0,
    ts: trusted.timestamp,
    seq: m.seq,
  };
}

/**
 * A reply's error as it stands now: why it failed, or why it is being retried. One that got
 * through after a retry (a throttle) carries none: its error would read as a failure next to
 * `sent` (outside test QA2-1). `/outbound` keeps the last error of every record as it is.
 */
export function currentError(o: Pick<OutboundRecord, 'status' | 'lastError'>): string | undefined {
  const standing = o.status === 'failed' || o.status === 'pending' || o.status === 'sending';
  return standing ? o.lastError : undefined;
}

function outboundItem(o: OutboundRecord): Sortable {
  const error = currentError(o);
  // A reply whose text the message retention deleted: not shown as if the bot had said why
  // (outside test QA8-L1).
  const redacted = o.body.type === 'text' && o.body.text === REDACTED_REASON;
  // As the user got it: WASender has no buttons or lists.
  const sent = o.provider === 'wasender' ? asDelivered(o.body) : o.body;
  const body = (redacted ? { type: 'deleted', reason: REDACTED_REASON } : sent) as {
    type: string;
    text?: unknown;
  };
  const { type, ...payload } = body;
  return {
    item: {
      direction: 'out',
      id: o.id,
      at: iso(o.createdAt),
      type,
      ...(typeof body.text === 'string' ? { text: body.text } : {}),
      ...(Object.keys(payload).length > (typeof body.text === 'string' ? 1 : 0) ? { payload } : {}),
      status: o.status,
      ...(o.providerMessageId !== undefined ? { wamid: o.providerMessageId } : {}),
      ...(error !== undefined ? { error } : {}),
      kind: o.isPrompt ? 'prompt' : isAgentMessage(o.callbackData) ? 'agent' : 'notice',
    },
    atMs: o.createdAt,
    rank: 1,
    ts: 0,
    seq: o.seq,
  };
}

/** One outbound record as `GET /sessions/:waId/outbound` answers it (the API's snake_case). */
export interface OutboundView {
  readonly id: string;
  readonly seq: number;
  /** `reply`, or `effect` (work a step started: run, not sent). */
  readonly kind: 'reply' | 'effect';
  readonly flow: string;
  readonly step: string;
  readonly version: number;
  readonly to: string;
  readonly body: unknown;
  readonly callback_data: string;
  readonly status: OutboundStatus;
  readonly attempts: number;
  /**
   * Send attempts that may have reached the user, each claimed before it was made: 2 when a
   * holder that took the session over (a worker killed mid-send) or a retry after no answer sent
   * it again (SPEC 1.6 allows that one repeat; a third claim dead-letters it instead).
   */
  readonly claims: number;
  /** The wamid Graph gave it, once sent. */
  readonly wamid?: string;
  readonly last_error?: string;
  /** The inbound message a notice answers (stale input). */
  readonly in_reply_to?: string;
  /** An effect's name and id (its `Idempotency-Key`). */
  readonly effect?: { readonly name: string; readonly id: string };
  /** ISO 8601. */
  readonly created_at: string;
}

export function outboundView(o: OutboundRecord): OutboundView {
  return {
    id: o.id,
    seq: o.seq,
    kind: o.effect === undefined ? 'reply' : 'effect',
    flow: o.flow,
    step: o.step,
    version: o.version,
    to: o.to,
    body: o.body,
    callback_data: o.callbackData,
    status: o.status,
    attempts: o.attempts,
    claims: o.claims ?? 1,
    ...(o.providerMessageId !== undefined ? { wamid: o.providerMessageId } : {}),
    ...(o.lastError !== undefined ? { last_error: o.lastError } : {}),
    ...(o.inReplyTo !== undefined ? { in_reply_to: o.inReplyTo } : {}),
    ...(o.effect !== undefined ? { effect: { name: o.effect.name, id: o.effect.id } } : {}),
    created_at: iso(o.createdAt),
  };
}

/** One inbound message as the conversation shows it. */
export function inboundView(m: StoredMessage): ConversationItem {
  return inboundItem(m).item;
}

function compare(a: Sortable, b: Sortable): number {
  return a.atMs - b.atMs || a.rank - b.rank || a.ts - b.ts || a.seq - b.seq;
}

/** One page of the conversation, oldest first, after `cursor` (from a previous page). */
export function conversationPage(
  inbound: readonly StoredMessage[],
  outbound: readonly OutboundRecord[],
  limit: number,
  cursor?: string,
): { messages: ConversationItem[]; next_cursor: string | null } {
  // Effects (the shop's API calls) and their results are no messages: the conversation is what
  // the user sent and what they were sent.
  const all = [
    ...inbound.filter((m) => !isEffectResult(m) && !redactedEffectResult(m)).map(inboundItem),
    ...outbound.filter((o) => o.effect === undefined).map(outboundItem),
  ].sort(compare);
  const after = cursor === undefined ? null : decodeCursor(cursor, MESSAGE_CURSOR);
  const from =
    after === null
      ? all
      : all.filter(
          (x) =>
            compare(x, {
              item: x.item,
              atMs: after[0] as number,
              rank: after[1] as number,
              ts: after[2] as number,
              seq: after[3] as number,
            }) > 0,
        );
  const page = from.slice(0, limit);
  const last = page.at(-1);
  return {
    messages: page.map((x) => x.item),
    next_cursor: from.length > limit && last ? encodeCursor([last.atMs, last.rank, last.ts, last.seq]) : null,
  };
}

/**
 * A page of a session's transition log, oldest first: the records after `cursor` (all of them
 * without one), at most `limit` (all without one), and the cursor of the next page (null at the
 * end). The cursor names a position by version and the records of that version before it, so
 * records the retention purge deletes meanwhile (the oldest) do not shift the pages.
 */
export function transitionsPage(
  records: readonly TransitionRecord[],
  limit?: number,
  cursor?: string,
): { transitions: TransitionRecord[]; next_cursor: string | null } {
  let from = 0;
  const after = cursor === undefined ? null : decodeCursor(cursor, 'nn');
  if (after !== null) {
    const [version, taken] = after as [number, number];
    let sameVersion = 0;
    while (from < records.length) {
      const v = records[from]!.version;
      if (v > version || (v === version && sameVersion >= taken)) break;
      if (v === version) sameVersion += 1;
      from += 1;
    }
  }
  const page = records.slice(from, limit === undefined ? undefined : from + limit);
  const end = from + page.length;
  const last = page.at(-1);
  if (end >= records.length || last === undefined) return { transitions: page, next_cursor: null };
  let ofVersion = 0;
  for (let i = end - 1; i >= 0 && records[i]!.version === last.version; i -= 1) ofVersion += 1;
  return { transitions: page, next_cursor: encodeCursor([last.version, ofVersion]) };
}

/** An effect's result whose content the message retention redacted: still no message. */
function redactedEffectResult(m: StoredMessage): boolean {
  return m.content.type === 'unsupported' && m.content.originalType === 'effect_result';
}

/**
 * A dead letter as the admin API shows it: the names and times of the rest of the API
 * (`created_at`, `replayed_at`, ISO 8601), the payload as it was kept.
 */
export interface DeadLetterView {
  readonly id: string;
  readonly kind: DeadLetter['kind'];
  readonly channel: string;
  readonly user: string;
  readonly ref: string;
  readonly reason: string;
  readonly payload: unknown;
  readonly created_at: string;
  readonly replayed_at?: string;
}

export function deadLetterView(d: DeadLetter): DeadLetterView {
  return {
    id: d.id,
    kind: d.kind,
    channel: d.channel,
    user: d.user,
    ref: d.ref,
    reason: d.reason,
    payload: d.payload,
    created_at: new Date(d.createdAt).toISOString(),
    ...(d.replayedAt === undefined ? {} : { replayed_at: new Date(d.replayedAt).toISOString() }),
  };
}
