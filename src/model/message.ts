/**
 * The one internal shape of an inbound WhatsApp message, whatever gateway it came through.
 * Providers produce it; the engine and flows consume it. No I/O here.
 * @module
 */
import { createHash } from 'node:crypto';
import { BatonError } from '../errors.ts';
import type { OutboundStatus } from './session.ts';

/** Which gateway a message came through. */
export type ProviderName = 'cloud-api' | 'wasender';

/**
 * What the flow core must know of a gateway, so that it never names one: a gateway without
 * interactive buttons or lists (WASender renders them as numbered text, `renderAsText`) lets the
 * user pick a choice by typing its number or title. A new gateway adds its row here.
 */
const PROVIDER_TRAITS: Readonly<Record<ProviderName, { readonly typedChoices: boolean }>> = {
  'cloud-api': { typedChoices: false },
  wasender: { typedChoices: true },
};

/** Whether users of `provider` pick choices by typing them (see PROVIDER_TRAITS); false if not known. */
export function typesChoices(provider: ProviderName | undefined): boolean {
  const traits =
    provider === undefined ? undefined : (PROVIDER_TRAITS as Partial<typeof PROVIDER_TRAITS>)[provider];
  return traits?.typedChoices ?? false;
}

/** Media kinds WhatsApp delivers with a downloadable id. */
export type MediaType = 'image' | 'audio' | 'video' | 'document' | 'sticker';

/** What the user sent, normalised. `type` decides which fields exist. */
export type MessageContent =
  | { type: 'text'; body: string }
  /** An interactive reply button, a list row, or a template quick-reply button. */
  | { type: 'choice'; source: 'button_reply' | 'list_reply' | 'template_button'; id: string; title: string }
  | {
      type: 'media';
      mediaType: MediaType;
      mediaId: string;
      mimeType?: string;
      caption?: string;
      url?: string;
      filename?: string;
    }
  | { type: 'location'; latitude: number; longitude: number; name?: string; address?: string }
  | { type: 'contacts'; count: number }
  | { type: 'order'; catalogId: string; itemCount: number }
  | { type: 'flow_reply'; responseJson: string }
  | { type: 'reaction'; messageId: string; emoji?: string }
  | { type: 'edit' }
  | { type: 'revoke' }
  | { type: 'system'; body: string }
  | { type: 'unsupported'; originalType: string; reason?: string }
  /**
   * Not from the user: something the bot's own systems said about them (an order shipped),
   * posted to the admin API's events route and stored in the session's mailbox under the id
   * `ev:<id>`, in order with the user's messages. The flow's `events` decide what it does.
   */
  | { type: 'event'; name: string; payload: unknown }
  /**
   * Not from the user: the outcome of an effect a step started (Baton's own input, stored in the
   * session's mailbox under the id `fx:<effectId>` so a repeated result is recognised).
   */
  | {
      type: 'effect_result';
      effectId: string;
      /** The effect's name in its flow. */
      name: string;
      ok: boolean;
      /** The effect function's result (JSON), when `ok`. */
      value?: unknown;
      /** Why it failed, when not `ok`. */
      error?: string;
      attempts: number;
    };

/** Content types that are no input to a flow: recorded as `ignored`, never answered. */
export const IGNORED_CONTENT_TYPES: ReadonlySet<MessageContent['type']> = new Set([
  'reaction',
  'edit',
  'revoke',
  'system',
  'unsupported',
]);

/** A session is one user of one business number. */
export interface SessionKey {
  /** `phone_number_id` (Cloud API) or the gateway's session id. */
  readonly channel: string;
  /** `wa_id`, or the business-scoped `user_id` when Meta omits the phone number. */
  readonly user: string;
}

/**
 * What kind of shared chat a session's user is, by its JID (lower case): a WASender group
 * (`…@g.us`), broadcast list (`…@broadcast`) or channel (`…@newsletter`); `undefined` for a
 * user. A shared chat's messages are kept in a session of its own, recorded `ignored` and never
 * answered: said to the chat, not to the bot.
 */
export function sharedChatKind(user: string): SharedChatKind | undefined {
  const kind = /@(g\.us|broadcast|newsletter)$/i.exec(user)?.[1]?.toLowerCase();
  return kind === undefined ? undefined : kind === 'g.us' ? 'group' : (kind as SharedChatKind);
}

export type SharedChatKind = 'group' | 'broadcast' | 'newsletter';

/** What an agent calls each kind of shared chat. */
export const SHARED_CHAT_NAMES: Readonly<Record<SharedChatKind, string>> = {
  group: 'group',
  broadcast: 'broadcast list',
  newsletter: 'channel',
};

/**
 * Refuses what would answer a shared chat's session (see {@link sharedChatKind}): an agent's take,
 * message or hand-back, an event from the bot's systems. A hand-back posted the flow's prompt to
 * every member of a group (outside test QA129-F1).
 *
 * @throws BatonError `BATON_ERR_SHARED_CHAT` (409) when `key.user` is a shared chat.
 */
export function refuseSharedChat(key: SessionKey): void {
  const kind = sharedChatKind(key.user);
  if (kind === undefined) return;
  throw new BatonError(
    'BATON_ERR_SHARED_CHAT',
    `${key.user} is a ${SHARED_CHAT_NAMES[kind]}: Baton keeps its messages as a record and answers nothing there, so no agent takes it, writes to it or hands it to the bot, and no event moves it`,
  );
}

/** A normalised inbound message, before storage. */
export interface InboundMessage extends SessionKey {
  /** The provider's message id (`wamid.…` for the Cloud API). Dedupe key. */
  readonly id: string;
  readonly provider: ProviderName;
  /** The phone number id of the user when known. */
  readonly waId?: string;
  /** The business-scoped user id (BSUID) when known. */
  readonly userId?: string;
  /** WhatsApp's timestamp, Unix seconds. */
  readonly timestamp: number;
  /** `context.id`: the business message this one replies to or whose button was tapped. */
  readonly contextId?: string;
  readonly profileName?: string;
  readonly content: MessageContent;
}

/** An inbound message as stored by intake: arrival order and storage time added. */
export interface StoredMessage extends InboundMessage {
  /** Arrival order, strictly increasing per backend (ties of `timestamp` are broken by it). */
  readonly seq: number;
  /** When intake stored it, epoch milliseconds. The buffer window is measured from this. */
  readonly storedAt: number;
  /**
   * It may have reached Baton this much before `storedAt`, ms (absent: 0): its process read it
   * late (WebhookBatch.readLateMs). A batch counts it as arrived then when it closes its window
   * ({@link arrivedBy}), so a burst that a stopped or starved process read over more than the
   * window stays one batch, however late the batch runs (outside test QA137-F1, F3).
   */
  readonly readLateMs?: number;
  /**
   * Put back from the dead letters by an agent: the user was told of its first failure, so
   * failing again sends no second notice.
   */
  readonly replayed?: true;
  /**
   * Put back into its mailbox from the intake log after Redis lost it (intake-log.ts): stored
   * before anything Redis has stored since, though it joins the mailbox after it.
   */
  readonly restored?: true;
  /**
   * Its place in the intake log (distributed, where Redis keeps nothing across a restart):
   * `[stored_at ms, arrival]` of its first delivery's row, the arrival counted by the ingress
   * that logged it. Orders it against a message of the same second {@link restored} from that
   * log: the two writers (an ingress storing a webhook, the reaper restoring the log) may store
   * one webhook's messages in either order.
   */
  readonly logged?: readonly [number, number];
  /**
   * Its WhatsApp timestamp was more than {@link MAX_CLOCK_AHEAD_SEC} ahead of its storage time,
   * which stands in for it (set by {@link trustedTimestamp}, for the batch only).
   */
  readonly clockAhead?: true;
}

/**
 * The earliest it may have reached Baton, epoch ms: its storage time less how late its process
 * read it.
 */
export function arrivedBy(m: StoredMessage): number {
  return m.storedAt - (m.readLateMs ?? 0);
}

/** A message is counted as arrived at most this much before it was stored (a minute). */
const MAX_READ_LATE_MS = 60_000;

/** What a batch's messages keep of how late it was read: nothing when it was read on time. */
export function readLate(batch: WebhookBatch): { readonly readLateMs?: number } {
  const late = Math.min(MAX_READ_LATE_MS, Math.round(batch.readLateMs ?? 0));
  return late > 0 ? { readLateMs: late } : {};
}

/** How far ahead of its storage time a message's timestamp may be and still be trusted. */
export const MAX_CLOCK_AHEAD_SEC = 300;

/**
 * The message with the timestamp Baton orders it by (SPEC 1.5): WhatsApp's, unless that is
 * more than {@link MAX_CLOCK_AHEAD_SEC} ahead of the time Baton stored the message, in which
 * case the storage time stands in for it, so one bad clock cannot silence a user.
 */
export function trustedTimestamp<M extends StoredMessage>(m: M): M {
  const stored = Math.floor(m.storedAt / 1000);
  return m.timestamp > stored + MAX_CLOCK_AHEAD_SEC ? { ...m, timestamp: stored, clockAhead: true } : m;
}

/** Delivery states in the order they may advance (pending, sending and failed have no rank). */
const DELIVERY_RANK: Readonly<Partial<Record<OutboundStatus, number>>> = {
  sent: 1,
  delivered: 2,
  read: 3,
  played: 4,
};

/**
 * The one rule for changing an outbound record's status, whether the outbox or a status webhook
 * asks: whether `next` may replace `cur`. Webhooks arrive out of order and may follow a retry, so
 * delivery states only advance (sent < delivered < read < played); `failed` is recorded unless
 * the message was already delivered (WhatsApp delivered it, whatever came later), and only a
 * delivered or read report replaces it (a late `sent` does not hide it); `pending` and
 * `sending` (the outbox's own states, and replay) only apply before any delivery state, so a
 * delivered message is never queued to be sent again. The same status is allowed (no change).
 *
 * The distributed backend applies the same rule in Lua
 * (`backends/distributed/scripts/includes/outbound-status.lua`) and SQL
 * (`backends/distributed/sql/outbound-status-by-provider-id.sql`): change them together.
 */
export function statusAllowed(cur: OutboundStatus, next: OutboundStatus): boolean {
  if (next === cur) return true;
  const curRank = DELIVERY_RANK[cur];
  if (next === 'pending' || next === 'sending') return curRank === undefined;
  const nextRank = DELIVERY_RANK[next];
  // A late `sent` does not hide a failure; a later delivered or read report does replace it.
  if (nextRank !== undefined)
    return curRank === undefined ? cur !== 'failed' || next !== 'sent' : nextRank > curRank;
  // next is failed
  return cur !== 'delivered' && cur !== 'read' && cur !== 'played';
}

/**
 * How long a status webhook about a provider message id Baton has not recorded yet is kept
 * (both backends): WhatsApp may report `sent`, `delivered` or `failed` before the send's own
 * answer is recorded (the outbox records the last reply of a turn with the lease's release).
 * Such a status is parked under its id and applied, by {@link statusAllowed}, when the send is
 * recorded; one that no send ever claims is dropped after this long.
 */
export const EARLY_STATUS_TTL_MS = 10 * 60_000;

/**
 * How many of a session's newest replies a status about a provider id no record has is matched
 * against by its `biz_opaque_callback_data` (both backends): a status naming one of them is
 * about another copy of that reply, sent by a holder that died before recording it, and the
 * id is kept as the reply's alias (SPEC 1.7: a button on that copy is still the prompt's). A
 * copy's first status comes seconds after its send, while the reply is among the newest.
 */
export const ALIAS_SEARCH_DEPTH = 64;

/** How the reason begins of every reply an agent's reset cancelled (engine/agent.ts). */
export const RESET_CANCELLED_PREFIX = 'cancelled: an agent reset the session';

/** Why an agent's reset marked a reply of the conversation it ended failed (engine/agent.ts). */
export const RESET_CANCELLED = `${RESET_CANCELLED_PREFIX} before it was sent`;

/**
 * The same, for a reply with a claim counted and no answer recorded: an attempt may have reached
 * the user (its holder died mid-send, or its gateway never answered). It said "before it was
 * sent" of a prompt the user had (outside test QA134-F1).
 */
export const RESET_CANCELLED_MAYBE_SENT = `${RESET_CANCELLED_PREFIX}; an earlier attempt may have reached the user (no answer was recorded)`;

/**
 * What such a reply's record says once the send that was on its way when the reset came is
 * answered with a provider id: the provider took it, so it is `sent` (the one exception to "a
 * late `sent` does not hide a failure", in both backends: the failure was Baton's own guess, not
 * a report). An agent was told the user never got a reply they did get (outside test Q1).
 */
export const SENT_DESPITE_RESET = 'sent: it was on its way when an agent reset the session';

/**
 * Whether the outbox's record of a send (`next` = sent, with a provider id) replaces a record
 * that an agent's reset cancelled while that send was in flight (see {@link SENT_DESPITE_RESET}).
 */
export function sentDespiteReset(
  cur: { status: OutboundStatus; lastError: string | null; providerMessageId: string | null },
  next: OutboundStatus,
  providerMessageId: string | undefined,
): boolean {
  return (
    cur.status === 'failed' &&
    next === 'sent' &&
    providerMessageId !== undefined &&
    cur.providerMessageId === null &&
    cur.lastError?.startsWith(RESET_CANCELLED_PREFIX) === true
  );
}

/** The status to keep of two about one message: `next` where the rule lets it replace `cur`. */
export function laterStatus<S extends OutboundStatus>(cur: S, next: S): S {
  return statusAllowed(cur, next) ? next : cur;
}

export type DeliveryStatus = 'sent' | 'delivered' | 'read' | 'played' | 'failed';

/** A status webhook about a message Baton sent. */
export interface StatusUpdate {
  readonly provider: ProviderName;
  readonly channel: string;
  /** The provider's id of the outbound message (the wamid Graph returned on send). */
  readonly messageId: string;
  readonly status: DeliveryStatus;
  /** Unix seconds. */
  readonly timestamp: number;
  readonly recipient: string;
  readonly bizOpaqueCallbackData?: string;
  readonly errors?: ReadonlyArray<{ code: number; title?: string; message?: string }>;
}

/**
 * The last error a `failed` status webhook leaves on its record: the first error, as
 * `<code>: <message or title>`, on both backends; null when there is none.
 */
export function statusLastError(s: Pick<StatusUpdate, 'status' | 'errors'>): string | null {
  const err = s.errors?.[0];
  if (s.status !== 'failed' || !err) return null;
  return `${err.code}: ${err.message ?? err.title ?? ''}`.trim();
}

/** What one webhook POST carried, after parsing. */
export interface WebhookBatch {
  readonly messages: InboundMessage[];
  readonly statuses: StatusUpdate[];
  /**
   * Epoch milliseconds when the webhook reached Baton. It stands as the messages' storage time
   * (the buffer window's clock) when storing them took longer, as it may on a busy machine.
   */
  readonly receivedAt?: number;
  /**
   * How late the receiving process's event loop ran when it read the webhook, ms: it may have
   * come that much before `receivedAt` (a stopped or starved process reads its sockets late).
   * Kept with each message ({@link StoredMessage.readLateMs}).
   */
  readonly readLateMs?: number;
}

/** Stable string form of a session key, for maps and logs. */
export function sessionId(key: SessionKey): string {
  return `${key.channel}:${key.user}`;
}

/**
 * A session id fit for logs: the user's number masked but for its last four characters, so
 * logs can correlate a conversation without holding phone numbers.
 */
export function logSessionId(key: SessionKey): string {
  const u = key.user;
  return `${key.channel}:${u.length > 4 ? '*'.repeat(Math.min(8, u.length - 4)) + u.slice(-4) : u}`;
}

/**
 * One user, two ids. A Cloud API message names its sender by phone number (`wa_id`), by
 * business-scoped id (`user_id`), or by both, and which ones it carries changes over a
 * conversation: a user who adopts a username may from then on come without a phone number. The
 * session key stays SPEC's (the `wa_id`, else the `user_id`), with one reading of "Meta omits the
 * phone number": a message that names its sender by `user_id` alone goes to the session of the
 * phone number that `user_id` last came with on its channel, when one did (both backends record
 * it at intake), so the user is not taken for a new one. This is that `user_id`, for such a
 * message.
 */
export function userIdOnly(m: InboundMessage): string | undefined {
  return m.waId === undefined && m.userId !== undefined && m.userId !== '' && m.user === m.userId
    ? m.userId
    : undefined;
}

/** `m` under the session key user `user` (itself when already there). */
export function rekeyed(m: InboundMessage, user: string): InboundMessage {
  return user === m.user ? m : { ...m, user };
}

/**
 * The name of the event a retention purge stores for a session due to expire
 * (`backends/retention.ts`): no flow's (flows name theirs in lower_snake_case).
 */
export const EXPIRY_EVENT = 'baton:expire';

/** Whether a stored message is a retention purge's expiry event (see {@link EXPIRY_EVENT}). */
export function isExpiryEvent(m: InboundMessage): boolean {
  return m.content.type === 'event' && m.content.name === EXPIRY_EVENT;
}

/**
 * The mailbox id of an event: the caller's id, scoped to the session (two users' events may
 * share an id, and a store deduplicates message ids across sessions), readable first. `kind`
 * keeps Baton's own events (`expire`, see `backends/retention.ts`) apart from the API's (`ev`),
 * whose ids a caller chooses.
 */
export function eventMessageId(key: SessionKey, id: string, kind: 'ev' | 'expire' = 'ev'): string {
  const scope = createHash('sha256').update(`${key.channel}\n${key.user}`).digest('base64url').slice(0, 12);
  return `${kind}:${id}~${scope}`;
}
