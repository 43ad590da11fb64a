/**
 * Reads a Meta WhatsApp Cloud API webhook body into Baton's {@link WebhookBatch}.
 *
 * The envelope is checked strictly (a wrong one is refused with `BATON_ERR_BAD_ENVELOPE`);
 * everything inside it is read leniently: a message Baton cannot understand becomes
 * `unsupported` content (one without an id too, under an id drawn from its bytes), and only an
 * item that cannot be stored at all (no user, no channel) is skipped and reported. Changes of fields other than `messages` are ignored.
 *
 * See https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples
 * @module
 */
import { BatonError } from '../../errors.ts';
import type {
  DeliveryStatus,
  InboundMessage,
  MediaType,
  MessageContent,
  StatusUpdate,
  WebhookBatch,
} from '../../model/message.ts';
import { locationContent, mediaContent, missingId, reactionContent, unsupported } from '../content.ts';
import { screenBatch } from '../screen.ts';
import { isWasenderChannel, plainWaId } from '../channel.ts';
import type { JsonObject } from '../json.ts';
import { anyStr, arr, isObject, num, obj, str, unixSeconds } from '../json.ts';

/** An item of a valid envelope that could not be turned into a message or status. */
export interface SkippedItem {
  readonly kind: 'message' | 'status';
  /** The item's id when it had one. */
  readonly id?: string;
  readonly reason: string;
  /** A skipped message as it came (the ingress keeps it as an `unreadable` dead letter). */
  readonly raw?: unknown;
}

/** The parsed batch plus what had to be left out of it, for logs and metrics. */
export interface CloudApiParseReport {
  readonly batch: WebhookBatch;
  readonly skipped: SkippedItem[];
}

/** Options of the Cloud API parser. */
export interface CloudApiParseOptions {
  /**
   * Clock used only when an item carries no readable timestamp, epoch milliseconds.
   * Defaults to `Date.now`.
   */
  readonly now?: () => number;
}

const MEDIA_TYPES: ReadonlySet<string> = new Set<MediaType>([
  'image',
  'audio',
  'video',
  'document',
  'sticker',
]);
const DELIVERY_STATUSES: ReadonlySet<string> = new Set<DeliveryStatus>([
  'sent',
  'delivered',
  'read',
  'played',
  'failed',
]);

function isMediaType(type: string): type is MediaType {
  return MEDIA_TYPES.has(type);
}

function isDeliveryStatus(status: string | undefined): status is DeliveryStatus {
  return status !== undefined && DELIVERY_STATUSES.has(status);
}

/**
 * Parses a Cloud API webhook body.
 *
 * @param body - the JSON-parsed request body (verify the signature on the raw bytes first).
 * @returns every message and status of every `messages` change, in payload order.
 * @throws BatonError `BATON_ERR_BAD_ENVELOPE` when `body` is not
 *   `{object: "whatsapp_business_account", entry: [...]}`.
 *
 * @example
 * ```ts
 * const batch = parseCloudApiWebhook(JSON.parse(raw.toString('utf8')));
 * for (const m of batch.messages) console.log(m.channel, m.user, m.content.type);
 * ```
 */
export function parseCloudApiWebhook(body: unknown, options?: CloudApiParseOptions): WebhookBatch {
  return parseCloudApiWebhookReport(body, options).batch;
}

/**
 * Like {@link parseCloudApiWebhook}, and also lists the items that had to be skipped
 * (a message without an id or sender, a status without an id or with an unknown status).
 *
 * @example
 * ```ts
 * const { batch, skipped } = parseCloudApiWebhookReport(json);
 * if (skipped.length > 0) log.warn({ skipped }, 'webhook items skipped');
 * ```
 */
export function parseCloudApiWebhookReport(
  body: unknown,
  options?: CloudApiParseOptions,
): CloudApiParseReport {
  const entries = readEnvelope(body);
  const now = options?.now ?? Date.now;
  const messages: InboundMessage[] = [];
  const statuses: StatusUpdate[] = [];
  const skipped: SkippedItem[] = [];

  for (const entry of entries) {
    if (!isObject(entry)) continue;
    for (const change of arr(entry, 'changes') ?? []) {
      if (!isObject(change) || change.field !== 'messages') continue;
      const value = obj(change, 'value');
      if (value === undefined) continue;
      readChange(value, now, { messages, statuses, skipped });
    }
  }
  return screenBatch({ messages, statuses }, skipped);
}

function readEnvelope(body: unknown): readonly unknown[] {
  if (!isObject(body)) {
    throw new BatonError('BATON_ERR_BAD_ENVELOPE', 'webhook body is not a JSON object');
  }
  if (body.object !== 'whatsapp_business_account') {
    throw new BatonError(
      'BATON_ERR_BAD_ENVELOPE',
      'webhook body "object" is not "whatsapp_business_account"',
    );
  }
  const entries = arr(body, 'entry');
  if (entries === undefined) {
    throw new BatonError('BATON_ERR_BAD_ENVELOPE', 'webhook body "entry" is not an array');
  }
  return entries;
}

interface Sink {
  messages: InboundMessage[];
  statuses: StatusUpdate[];
  skipped: SkippedItem[];
}

function readChange(value: JsonObject, now: () => number, sink: Sink): void {
  const metadata = obj(value, 'metadata');
  // A number where Meta sends a string of digits (a hand-written test payload): the same id.
  const channel =
    str(metadata, 'phone_number_id') ?? (metadata ? digits(metadata, 'phone_number_id') : undefined);
  const contacts = contactIndex((arr(value, 'contacts') ?? []).filter(isObject));
  const rawMessages = items(value, 'messages', sink);
  const rawStatuses = items(value, 'statuses', sink);

  if (channel === undefined || isWasenderChannel(channel)) {
    const why =
      channel === undefined
        ? 'change has no metadata.phone_number_id'
        : 'metadata.phone_number_id names a WASender channel';
    for (const m of rawMessages) sink.skipped.push({ ...skip('message', m, why), raw: m });
    for (const s of rawStatuses) sink.skipped.push(skip('status', s, why));
    return;
  }

  for (const raw of rawMessages) {
    const result = readMessage(raw, channel, contacts, now);
    if ('reason' in result) sink.skipped.push({ ...result, raw });
    else sink.messages.push(result);
  }
  for (const raw of rawStatuses) {
    const result = readStatus(raw, channel, now);
    if ('reason' in result) sink.skipped.push(result);
    else sink.statuses.push(result);
  }
}

/**
 * A change's `messages` or `statuses` list. Anything else there (an object, a string) is one
 * item Baton cannot read: a message is kept as a dead letter, never dropped without a trace
 * (outside test QA10-F3: `"messages": {}` was answered `received: 0` and vanished).
 */
function items(value: JsonObject, key: 'messages' | 'statuses', sink: Sink): readonly unknown[] {
  const v = value[key];
  if (v === undefined || v === null || Array.isArray(v)) return (v as readonly unknown[] | null) ?? [];
  const reason = `change "${key}" is not an array`;
  if (key === 'messages') sink.skipped.push({ kind: 'message', reason, raw: v });
  else sink.skipped.push({ kind: 'status', reason });
  return [];
}

function skip(kind: SkippedItem['kind'], raw: unknown, reason: string): SkippedItem {
  const id = isObject(raw) ? str(raw, 'id') : undefined;
  return id === undefined ? { kind, reason } : { kind, id, reason };
}

/**
 * A change's `contacts[]`, indexed by `wa_id` and `user_id` (the first entry of each, with its
 * place): each message finds its sender in constant time, so a POST of many messages and many
 * contacts costs their sum, not their product (an outside test: 10,000 x 80,000 blocked 11.6 s).
 */
interface ContactIndex {
  readonly byWaId: ReadonlyMap<string, { readonly at: number; readonly contact: JsonObject }>;
  readonly byUserId: ReadonlyMap<string, { readonly at: number; readonly contact: JsonObject }>;
  /** The only entry, when there is exactly one. */
  readonly lone: JsonObject | undefined;
}

function contactIndex(contacts: readonly JsonObject[]): ContactIndex {
  const byWaId = new Map<string, { at: number; contact: JsonObject }>();
  const byUserId = new Map<string, { at: number; contact: JsonObject }>();
  contacts.forEach((contact, at) => {
    const waId = plainWaId(str(contact, 'wa_id'));
    const userId = str(contact, 'user_id');
    if (waId !== undefined && !byWaId.has(waId)) byWaId.set(waId, { at, contact });
    if (userId !== undefined && !byUserId.has(userId)) byUserId.set(userId, { at, contact });
  });
  return { byWaId, byUserId, lone: contacts.length === 1 ? contacts[0] : undefined };
}

/** The `contacts[]` entry that describes this message's sender, if any: the first that names it. */
function contactFor(
  contacts: ContactIndex,
  from: string | undefined,
  fromUserId: string | undefined,
): JsonObject | undefined {
  const a = from === undefined ? undefined : contacts.byWaId.get(from);
  const b = fromUserId === undefined ? undefined : contacts.byUserId.get(fromUserId);
  const match = a === undefined ? b : b === undefined || a.at <= b.at ? a : b;
  if (match !== undefined) return match.contact;
  // A lone contact names the sender when the message itself does not say who it is.
  return from === undefined && fromUserId === undefined ? contacts.lone : undefined;
}

/** A phone number sent as a JSON number (not Meta's format, but unmistakable): its digits. */
function digits(raw: JsonObject, key: string): string | undefined {
  const n = num(raw, key);
  return n !== undefined && Number.isSafeInteger(n) && n > 0 ? String(n) : undefined;
}

function readMessage(
  raw: unknown,
  channel: string,
  contacts: ContactIndex,
  now: () => number,
): InboundMessage | SkippedItem {
  if (!isObject(raw)) return { kind: 'message', reason: 'message is not an object' };
  const givenId = str(raw, 'id');

  const from = plainWaId(str(raw, 'from')) ?? digits(raw, 'from');
  const fromUserId = str(raw, 'from_user_id');
  const contact = contactFor(contacts, from, fromUserId);
  const waId = from ?? plainWaId(str(contact, 'wa_id'));
  const userId = fromUserId ?? str(contact, 'user_id');
  const user = waId ?? userId;
  if (user === undefined) {
    return {
      kind: 'message',
      ...(givenId === undefined ? {} : { id: givenId }),
      reason:
        givenId === undefined
          ? 'message has no id'
          : 'message names no sender (no from, from_user_id or contact)',
    };
  }
  // A message without an id is still the user's: stored as unsupported (visible, recorded) under
  // an id drawn from its bytes, so a redelivery of it is recognised like any other.
  const id = givenId ?? missingId(raw);

  const ts = unixSeconds(raw.timestamp);
  let content = readContent(raw);
  if (givenId === undefined) {
    content = { type: 'unsupported', originalType: typeName(raw), reason: 'message has no id' };
  } else if (ts === undefined) {
    content = { type: 'unsupported', originalType: typeName(raw), reason: 'message has no valid timestamp' };
  }
  const contextId = str(obj(raw, 'context'), 'id');
  const profileName = str(obj(contact, 'profile'), 'name');

  return {
    provider: 'cloud-api',
    channel,
    user,
    id,
    timestamp: ts ?? Math.floor(now() / 1000),
    content,
    ...(waId === undefined ? {} : { waId }),
    ...(userId === undefined ? {} : { userId }),
    ...(contextId === undefined ? {} : { contextId }),
    ...(profileName === undefined ? {} : { profileName }),
  };
}

function typeName(raw: JsonObject): string {
  return str(raw, 'type') ?? 'unknown';
}

/** Maps one message's type-named payload to normalised content. Never throws. */
function readContent(raw: JsonObject): MessageContent {
  const type = typeName(raw);
  const payload = obj(raw, type);

  if (isMediaType(type)) return readMedia(type, payload);

  switch (type) {
    case 'text': {
      const body = anyStr(payload, 'body');
      return body === undefined ? unsupported(type, 'text has no body') : { type: 'text', body };
    }
    case 'interactive':
      return readInteractive(payload);
    case 'button': {
      const id = anyStr(payload, 'payload');
      const title = anyStr(payload, 'text');
      if (id === undefined || title === undefined) {
        return unsupported(type, 'template button reply lacks payload or text');
      }
      return { type: 'choice', source: 'template_button', id, title };
    }
    case 'location': {
      const latitude = num(payload, 'latitude');
      const longitude = num(payload, 'longitude');
      if (latitude === undefined || longitude === undefined) {
        return unsupported(type, 'location lacks latitude or longitude');
      }
      return locationContent(latitude, longitude, str(payload, 'name'), str(payload, 'address'));
    }
    case 'contacts': {
      const cards = arr(raw, 'contacts');
      return cards === undefined
        ? unsupported(type, 'contacts message has no contacts array')
        : { type: 'contacts', count: cards.length };
    }
    case 'order': {
      const catalogId = str(payload, 'catalog_id');
      const items = arr(payload, 'product_items');
      if (catalogId === undefined || items === undefined) {
        return unsupported(type, 'order lacks catalog_id or product_items');
      }
      return { type: 'order', catalogId, itemCount: items.length };
    }
    case 'reaction': {
      const messageId = str(payload, 'message_id');
      if (messageId === undefined) return unsupported(type, 'reaction has no message_id');
      // An omitted or empty emoji means the reaction was removed.
      return reactionContent(messageId, str(payload, 'emoji'));
    }
    case 'edit':
      return { type: 'edit' };
    case 'revoke':
      return { type: 'revoke' };
    case 'system': {
      const body = anyStr(payload, 'body');
      return body === undefined ? unsupported(type, 'system message has no body') : { type: 'system', body };
    }
    case 'unsupported':
      return {
        type: 'unsupported',
        originalType: str(payload, 'type') ?? 'unsupported',
        reason: errorReason(raw) ?? 'Meta marked the message unsupported',
      };
    default:
      return unsupported(
        type,
        type === 'unknown' ? 'message has no type' : `message type "${type}" is not read by Baton`,
      );
  }
}

function readMedia(mediaType: MediaType, payload: JsonObject | undefined): MessageContent {
  const mediaId = str(payload, 'id');
  if (mediaId === undefined) return unsupported(mediaType, `${mediaType} has no media id`);
  return mediaContent(mediaType, mediaId, {
    mimeType: str(payload, 'mime_type'),
    caption: str(payload, 'caption'),
    url: str(payload, 'url'),
    filename: str(payload, 'filename'),
  });
}

function readInteractive(payload: JsonObject | undefined): MessageContent {
  if (payload === undefined)
    return unsupported('interactive', 'interactive message has no interactive object');
  const kind = str(payload, 'type');
  switch (kind) {
    case 'button_reply':
    case 'list_reply': {
      const reply = obj(payload, kind);
      const id = anyStr(reply, 'id');
      const title = anyStr(reply, 'title');
      if (id === undefined || title === undefined) {
        return unsupported('interactive', `${kind} lacks id or title`);
      }
      return { type: 'choice', source: kind, id, title };
    }
    case 'nfm_reply': {
      const responseJson = anyStr(obj(payload, 'nfm_reply'), 'response_json');
      return responseJson === undefined
        ? unsupported('interactive', 'nfm_reply has no response_json')
        : { type: 'flow_reply', responseJson };
    }
    default:
      return unsupported('interactive', `interactive type "${kind ?? '(none)'}" is not read by Baton`);
  }
}

/** The most telling text of a message's `errors[0]`, if any. */
function errorReason(raw: JsonObject): string | undefined {
  const first = (arr(raw, 'errors') ?? []).find(isObject);
  if (first === undefined) return undefined;
  const text = str(obj(first, 'error_data'), 'details') ?? str(first, 'message') ?? str(first, 'title');
  const code = num(first, 'code');
  if (text === undefined) return code === undefined ? undefined : `error ${code}`;
  return code === undefined ? text : `${text} (error ${code})`;
}

function readStatus(raw: unknown, channel: string, now: () => number): StatusUpdate | SkippedItem {
  if (!isObject(raw)) return { kind: 'status', reason: 'status is not an object' };
  const messageId = str(raw, 'id');
  if (messageId === undefined) return { kind: 'status', reason: 'status has no id' };
  const status = str(raw, 'status');
  if (!isDeliveryStatus(status)) {
    return {
      kind: 'status',
      id: messageId,
      reason: `status "${status ?? '(none)'}" is not a delivery status`,
    };
  }
  const recipient = plainWaId(str(raw, 'recipient_id')) ?? str(raw, 'recipient_user_id') ?? '';
  const bizOpaqueCallbackData = str(raw, 'biz_opaque_callback_data');
  const errors = readErrors(raw);
  return {
    provider: 'cloud-api',
    channel,
    messageId,
    status,
    timestamp: unixSeconds(raw.timestamp) ?? Math.floor(now() / 1000),
    recipient,
    ...(bizOpaqueCallbackData === undefined ? {} : { bizOpaqueCallbackData }),
    ...(errors.length === 0 ? {} : { errors }),
  };
}

function readErrors(raw: JsonObject): Array<{ code: number; title?: string; message?: string }> {
  const out: Array<{ code: number; title?: string; message?: string }> = [];
  for (const e of arr(raw, 'errors') ?? []) {
    if (!isObject(e)) continue;
    const code = num(e, 'code');
    if (code === undefined) continue;
    const title = str(e, 'title');
    const message = str(obj(e, 'error_data'), 'details') ?? str(e, 'message');
    out.push({
      code,
      ...(title === undefined ? {} : { title }),
      ...(message === undefined ? {} : { message }),
    });
  }
  return out;
}
