/**
 * Reads WASenderApi webhooks (`{event, timestamp, data, sessionId?}`, Baileys-shaped messages)
 * into Baton's {@link WebhookBatch}.
 *
 * Message events: `messages.received`, `messages.upsert`, `messages-personal.received` and
 * the SDK spelling `message.personal.received`. Status event: `messages.update`. Every other
 * event is acknowledged and ignored. Messages Baton itself sent (`key.fromMe`) are ignored.
 *
 * See https://wasenderapi.com/api-docs/webhooks/webhook-message-received
 * @module
 */
import { BatonError } from '../../errors.ts';
import type {
  DeliveryStatus,
  InboundMessage,
  MediaType,
  MessageContent,
  StatusUpdate,
} from '../../model/message.ts';
import { sharedChatKind, type WebhookBatch } from '../../model/message.ts';
import type { SkippedItem } from '../cloud-api/parse.ts';
import { locationContent, mediaContent, missingId, reactionContent, unsupported } from '../content.ts';
import { screenBatch } from '../screen.ts';
import { plainWaId, wasenderChannel } from '../channel.ts';
import type { JsonObject } from '../json.ts';
import { anyStr, arr, isObject, num, obj, str, unixSeconds } from '../json.ts';

export { WASENDER_DEFAULT_CHANNEL, wasenderChannel } from '../channel.ts';

/** Event names that carry inbound messages. */
export const WASENDER_MESSAGE_EVENTS: ReadonlySet<string> = new Set([
  'messages.received',
  'messages.upsert',
  'messages-personal.received',
  'message.personal.received',
]);

/** WASender's numeric message states; 1 (PENDING) says nothing Baton records. */
const STATUS_CODES: ReadonlyMap<number, DeliveryStatus> = new Map([
  [0, 'failed'],
  [2, 'sent'],
  [3, 'delivered'],
  [4, 'read'],
  [5, 'played'],
]);
const PENDING = 1;

/** Baileys message keys of downloadable media, with Baton's media type. */
const MEDIA_KEYS: ReadonlyArray<readonly [string, MediaType]> = [
  ['imageMessage', 'image'],
  ['videoMessage', 'video'],
  ['audioMessage', 'audio'],
  ['documentMessage', 'document'],
  ['stickerMessage', 'sticker'],
];

/** The parsed batch plus what had to be left out of it. */
export interface WasenderParseReport {
  readonly batch: WebhookBatch;
  readonly skipped: SkippedItem[];
}

/** Options of the WASender parser. */
export interface WasenderParseOptions {
  /** Clock used only when no timestamp is readable, epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * Parses a WASenderApi webhook body.
 *
 * @throws BatonError `BATON_ERR_BAD_ENVELOPE` when `body` is not an object with a string `event`.
 *
 * @example
 * ```ts
 * const batch = parseWasenderWebhook(JSON.parse(raw.toString('utf8')));
 * ```
 */
export function parseWasenderWebhook(body: unknown, options?: WasenderParseOptions): WebhookBatch {
  return parseWasenderWebhookReport(body, options).batch;
}

/**
 * Like {@link parseWasenderWebhook}, and also lists the items that had to be skipped.
 *
 * @example
 * ```ts
 * const { batch, skipped } = parseWasenderWebhookReport(json);
 * ```
 */
export function parseWasenderWebhookReport(
  body: unknown,
  options?: WasenderParseOptions,
): WasenderParseReport {
  if (!isObject(body)) throw new BatonError('BATON_ERR_BAD_ENVELOPE', 'webhook body is not a JSON object');
  const event = body.event;
  if (typeof event !== 'string') {
    throw new BatonError('BATON_ERR_BAD_ENVELOPE', 'webhook body has no string "event"');
  }
  const now = options?.now ?? Date.now;
  // A numeric id names its session too (it fell back to the default channel, where two sessions
  // with numeric ids would meet; outside test QA8-L3).
  const sid = body.sessionId;
  const channel = wasenderChannel(
    typeof sid === 'number' && Number.isSafeInteger(sid) ? String(sid) : str(body, 'sessionId'),
  );
  const envelopeTs = unixSeconds(body.timestamp);
  const messages: InboundMessage[] = [];
  const statuses: StatusUpdate[] = [];
  const skipped: SkippedItem[] = [];

  if (WASENDER_MESSAGE_EVENTS.has(event)) {
    for (const raw of messageList(body.data)) {
      // Not an object (or no data at all): kept as an unreadable dead letter, as the Cloud API's
      // are; it was answered 200 and kept nowhere (outside test QA8-L2).
      if (!isObject(raw)) {
        skipped.push({ kind: 'message', reason: 'message is not an object', raw });
        continue;
      }
      const result = readMessage(raw, channel, envelopeTs, now);
      if (result === undefined) continue;
      if ('reason' in result) skipped.push({ ...result, raw });
      else messages.push(result);
    }
  } else if (event === 'messages.update') {
    for (const raw of listOf(body.data)) {
      const result = readStatus(raw, channel, envelopeTs, now);
      if (result === undefined) continue;
      if ('reason' in result) skipped.push(result);
      else statuses.push(result);
    }
  }
  return screenBatch({ messages, statuses }, skipped);
}

/** An object or an array of objects, as a list. */
function listOf(value: unknown): JsonObject[] {
  if (Array.isArray(value)) return value.filter(isObject);
  return isObject(value) ? [value] : [];
}

/**
 * `data.messages` (one object or an array), or the older form with `key` directly under `data`;
 * items that are no object are listed too (the caller keeps them as unreadable), and so is a
 * `data` that is missing or no object at all.
 */
function messageList(data: unknown): unknown[] {
  if (!isObject(data)) return [data ?? null];
  if (data.messages !== undefined) return Array.isArray(data.messages) ? data.messages : [data.messages];
  return isObject(data.key) ? [data] : [];
}

/** The phone number of a `…@s.whatsapp.net` JID; other JIDs (`@lid`, groups) give nothing. */
function phoneOfJid(jid: string | undefined): string | undefined {
  const match = jid === undefined ? null : /^(\d+)(?::\d+)?@s\.whatsapp\.net$/.exec(jid);
  return match?.[1];
}

/** Baileys timestamps may be numbers, numeric strings, or protobuf Longs `{low, high}`. */
function messageSeconds(value: unknown): number | undefined {
  if (isObject(value)) return unixSeconds(num(value, 'low'));
  return unixSeconds(value);
}

function readMessage(
  raw: JsonObject,
  channel: string,
  envelopeTs: number | undefined,
  now: () => number,
): InboundMessage | SkippedItem | undefined {
  const key = obj(raw, 'key');
  const givenId = str(key, 'id');
  if (key?.fromMe === true) return undefined;
  // A group's (or a broadcast list's, or a channel's) message is said to that chat, not to the
  // bot: kept in a session of the chat's own (its JID), as no input to a flow (recorded
  // `ignored`, never answered). Kept in its sender's private session, its timestamp moved that
  // session's clock, and the sender's private answer stamped before it was taken as late
  // (outside test QA35-F1).
  const chat = str(key, 'remoteJid')?.trim().toLowerCase();
  const shared = chat === undefined ? undefined : sharedChatKind(chat);
  const sender =
    plainWaId(str(key, 'cleanedSenderPn')) ??
    plainWaId(str(key, 'cleanedParticipantPn')) ??
    phoneOfJid(str(key, 'senderPn')) ??
    phoneOfJid(str(key, 'remoteJid'));
  const user = shared !== undefined ? chat : sender;
  if (user === undefined) {
    return givenId === undefined
      ? { kind: 'message', reason: 'message has no key.id' }
      : { kind: 'message', id: givenId, reason: 'message names no sender phone number' };
  }
  // No id, but the user's: stored as unsupported under an id drawn from its bytes (see missingId).
  const keyId = givenId ?? missingId(raw);
  // A Baileys key id is made by the sender's phone and names a message within its chat only
  // (the key is {remoteJid, fromMe, id}): as Baton's message id, the one redeliveries are
  // recognised by, it is scoped to the chat, so another user's message (or a Cloud API wamid)
  // with the same key id is never taken for a redelivery.
  const id = `${channel}:${user}:${keyId}`;

  const message = obj(raw, 'message');
  const profileName = str(raw, 'pushName');
  const contextId = contextIdOf(message);
  const content =
    shared !== undefined
      ? unsupported(shared, 'a group, broadcast or channel message')
      : readContent(raw, message, keyId);
  return {
    provider: 'wasender',
    channel,
    user,
    ...(shared === undefined ? { waId: user } : {}),
    id,
    timestamp: messageSeconds(raw.messageTimestamp) ?? envelopeTs ?? Math.floor(now() / 1000),
    content: givenId === undefined ? unsupported(originalTypeOf(content), 'message has no key.id') : content,
    ...(contextId === undefined ? {} : { contextId }),
    ...(profileName === undefined || shared !== undefined ? {} : { profileName }),
  };
}

function originalTypeOf(c: MessageContent): string {
  return c.type === 'unsupported' ? c.originalType : c.type;
}

/** `contextInfo.stanzaId` of whichever sub-message carries one: the message replied to. */
function contextIdOf(message: JsonObject | undefined): string | undefined {
  if (message === undefined) return undefined;
  for (const value of Object.values(message)) {
    if (!isObject(value)) continue;
    const stanzaId = str(obj(value, 'contextInfo'), 'stanzaId');
    if (stanzaId !== undefined) return stanzaId;
  }
  return undefined;
}

function readContent(raw: JsonObject, message: JsonObject | undefined, id: string): MessageContent {
  for (const [field, mediaType] of MEDIA_KEYS) {
    const media = obj(message, field);
    if (media === undefined) continue;
    // WASender media has no Graph-style id: decrypting it goes through the message's key id.
    return mediaContent(mediaType, id, {
      mimeType: str(media, 'mimetype'),
      caption: str(media, 'caption'),
      url: str(media, 'url'),
      filename: str(media, 'fileName'),
    });
  }

  const location = obj(message, 'locationMessage') ?? obj(message, 'liveLocationMessage');
  if (location !== undefined) {
    const latitude = num(location, 'degreesLatitude');
    const longitude = num(location, 'degreesLongitude');
    if (latitude === undefined || longitude === undefined) {
      return unsupported('locationMessage', 'location lacks coordinates');
    }
    return locationContent(latitude, longitude, str(location, 'name'), str(location, 'address'));
  }

  if (obj(message, 'contactMessage') !== undefined) return { type: 'contacts', count: 1 };
  const contactsArray = obj(message, 'contactsArrayMessage');
  if (contactsArray !== undefined)
    return { type: 'contacts', count: arr(contactsArray, 'contacts')?.length ?? 0 };

  const reaction = obj(message, 'reactionMessage');
  if (reaction !== undefined) {
    const messageId = str(obj(reaction, 'key'), 'id');
    if (messageId === undefined) return unsupported('reactionMessage', 'reaction names no message');
    return reactionContent(messageId, str(reaction, 'text'));
  }

  const protocol = obj(message, 'protocolMessage');
  if (protocol !== undefined) {
    const kind = protocol.type;
    if (kind === 0 || kind === 'REVOKE') return { type: 'revoke' };
    if (kind === 14 || kind === 'MESSAGE_EDIT') return { type: 'edit' };
    return unsupported('protocolMessage', `protocol message type ${describeKind(kind)}`);
  }
  if (obj(message, 'editedMessage') !== undefined) return { type: 'edit' };

  const text =
    anyStr(raw, 'messageBody') ??
    anyStr(message, 'conversation') ??
    anyStr(obj(message, 'extendedTextMessage'), 'text');
  if (text !== undefined) return { type: 'text', body: text };

  const firstKey = message === undefined ? undefined : Object.keys(message)[0];
  return firstKey === undefined
    ? unsupported('unknown', 'message has no content')
    : unsupported(firstKey, `message type "${firstKey}" is not read by Baton`);
}

function readStatus(
  raw: JsonObject,
  channel: string,
  envelopeTs: number | undefined,
  now: () => number,
): StatusUpdate | SkippedItem | undefined {
  const key = obj(raw, 'key');
  // Baton knows a WASender reply by the `msgId` its send answer gave (WASender's own integer id),
  // while WhatsApp's key id is all a documented status update names: an update that carries the
  // msgId too is matched by it; one that names the key id alone matches no reply (see README).
  const msgId = num(raw, 'msgId') ?? str(raw, 'msgId');
  const messageId = msgId !== undefined ? String(msgId) : str(key, 'id');
  if (messageId === undefined) return { kind: 'status', reason: 'status update has no key.id' };
  const code = num(obj(raw, 'update'), 'status');
  if (code === PENDING) return undefined;
  const status = code === undefined ? undefined : STATUS_CODES.get(code);
  if (status === undefined) {
    return {
      kind: 'status',
      id: messageId,
      reason: `status code ${code ?? '(none)'} is not a delivery status`,
    };
  }
  const remoteJid = str(key, 'remoteJid');
  return {
    provider: 'wasender',
    channel,
    messageId,
    status,
    timestamp: envelopeTs ?? Math.floor(now() / 1000),
    recipient: phoneOfJid(remoteJid) ?? remoteJid ?? '',
  };
}

/**
 * A protocol message's `type` as a reason can quote it: a number or a short string as JSON, any
 * other value by its kind (serialising a signed array thousands of levels deep overflowed the
 * stack, and the whole webhook was answered 500: outside test QA54-F1).
 */
function describeKind(kind: unknown): string {
  if (kind === undefined) return '(none)';
  if (typeof kind === 'number' || (typeof kind === 'string' && kind.length <= 64))
    return JSON.stringify(kind);
  if (typeof kind === 'string') return '(a long string)';
  return Array.isArray(kind)
    ? '(an array)'
    : kind === null
      ? 'null'
      : `(${typeof kind === 'object' ? 'an object' : typeof kind})`;
}
