/**
 * Sends Baton's replies through WASenderApi (`POST /api/send-message`). Media go by link
 * (`imageUrl`, `videoUrl`, `documentUrl`, `audioUrl`, `stickerUrl`), locations as `location`.
 * Its API has no interactive messages and no templates, so buttons and lists are rendered as
 * numbered text, and a template as its rendered text.
 *
 * See https://wasenderapi.com/api-docs/messages/send-text-message
 * @module
 */
import { SendError } from '../../errors.ts';
import type { InteractiveHeader, MediaRef, OutboundBody, OutboundRecord } from '../../model/session.ts';
import type { JsonObject } from '../json.ts';
import { isObject, num, obj, str } from '../json.ts';
import type { HttpSendOptions, JsonResponse } from '../http.ts';
import { isRetryableHttpStatus, JsonApi, missingMessageId, parseRetryAfter } from '../http.ts';
import type { SendOptions, Sender } from '../types.ts';
import { plusE164 } from '../channel.ts';

/** WASender's public API origin. */
export const WASENDER_DEFAULT_BASE_URL = 'https://www.wasenderapi.com';

/** Options of {@link WasenderSender}. */
export interface WasenderSenderOptions extends HttpSendOptions {
  /** API origin, without `/api`; default {@link WASENDER_DEFAULT_BASE_URL}. */
  readonly baseUrl?: string | undefined;
  /** The session's API key, sent as a Bearer token. */
  readonly apiKey?: string | undefined;
}

/**
 * The text WASender sends for a body: text as is; buttons and list rows numbered from 1 after
 * the body text (list sections as headings), so the user can answer with a number; a text
 * header in bold above, a footer in italics below. Media give their caption, a location its
 * name and address, a template its `text`.
 *
 * @example
 * ```ts
 * renderAsText({ type: 'buttons', text: 'Pick one', buttons: [{ id: 'a', title: 'A' }] });
 * // 'Pick one\n\n1. A'
 * ```
 */
export function renderAsText(body: OutboundBody): string {
  switch (body.type) {
    case 'text':
      return body.text;
    case 'buttons':
      return framed(body, [body.text, '', ...body.buttons.map((b, i) => `${i + 1}. ${b.title}`)]);
    case 'list': {
      const lines = [body.text];
      let n = 0;
      for (const section of body.sections) {
        lines.push('');
        if (section.title !== undefined && section.title.length > 0) lines.push(`*${section.title}*`);
        for (const row of section.rows) {
          n += 1;
          lines.push(
            row.description === undefined ? `${n}. ${row.title}` : `${n}. ${row.title} - ${row.description}`,
          );
        }
      }
      return framed(body, lines);
    }
    case 'image':
    case 'video':
    case 'document':
      return body.caption ?? '';
    case 'audio':
    case 'sticker':
      return '';
    case 'location':
      return [body.name, body.address].filter((part) => part !== undefined).join('\n');
    case 'template':
      return body.text ?? '';
  }
}

/**
 * A body as WASender delivers it, in Baton's own terms: buttons and a list as their numbered
 * text ({@link renderAsText}; under a media header, that media with the text as its caption), a
 * template as its text, anything else as it is. What the conversation view shows of a WASender
 * reply (SPEC 4: outbound as sent; outside test QA129-F3: it showed buttons the user never saw).
 */
export function asDelivered(body: OutboundBody): OutboundBody {
  switch (body.type) {
    case 'buttons':
    case 'list': {
      const text = renderAsText(body);
      const header = body.header;
      return header === undefined || header.type === 'text'
        ? { type: 'text', text }
        : { ...header, caption: text };
    }
    case 'template':
      return { type: 'text', text: body.text ?? '' };
    default:
      return body;
  }
}

function framed(body: { header?: InteractiveHeader; footer?: string }, lines: string[]): string {
  const head = body.header?.type === 'text' ? [`*${body.header.text}*`, ''] : [];
  const foot = body.footer === undefined ? [] : ['', `_${body.footer}_`];
  return [...head, ...lines, ...foot].join('\n');
}

/** The JSON body of a WASender `POST /api/send-message`. */
export interface WasenderMessageBody {
  readonly to: string;
  /** The text, or the caption of a media message. */
  readonly text?: string;
  readonly imageUrl?: string;
  readonly videoUrl?: string;
  readonly documentUrl?: string;
  readonly fileName?: string;
  readonly audioUrl?: string;
  readonly stickerUrl?: string;
  readonly location?: {
    readonly latitude: number;
    readonly longitude: number;
    readonly name?: string;
    readonly address?: string;
  };
}

/**
 * The WASender request body for one outbound record. WASender has no interactive messages and
 * no templates: buttons and lists become numbered text ({@link renderAsText}), a media header
 * their image, video or document, and a template its `text`.
 *
 * @throws SendError permanent (never retried) when the body cannot be sent through WASender:
 *   media given by a Cloud API media id instead of a link, or a template without `text`.
 * @example
 * ```ts
 * buildWasenderMessage(outbound(image('https://example.com/a.jpg', { caption: 'A' })));
 * // { to: '+15550001111', imageUrl: 'https://example.com/a.jpg', text: 'A' }
 * ```
 */
export function buildWasenderMessage(msg: OutboundRecord): WasenderMessageBody {
  const body = msg.body;
  const to = plusE164(msg.to); // or a group's JID, as it is
  switch (body.type) {
    case 'text':
      return { to, text: body.text };
    case 'buttons':
    case 'list': {
      // As the user gets it (asDelivered): numbered text, under a media header that media with
      // the text as its caption; a header given by an upload's id is refused as the header.
      const header = body.header;
      if (header !== undefined && header.type !== 'text') mediaLink(msg, `${header.type} header`, header);
      return buildWasenderMessage({ ...msg, body: asDelivered(body) });
    }
    case 'image':
      return { to, imageUrl: mediaLink(msg, 'image', body), ...caption(body.caption) };
    case 'video':
      return { to, videoUrl: mediaLink(msg, 'video', body), ...caption(body.caption) };
    case 'document':
      return {
        to,
        documentUrl: mediaLink(msg, 'document', body),
        ...(body.filename === undefined ? {} : { fileName: body.filename }),
        ...caption(body.caption),
      };
    case 'audio':
      return { to, audioUrl: mediaLink(msg, 'audio', body) };
    case 'sticker':
      return { to, stickerUrl: mediaLink(msg, 'sticker', body) };
    case 'location':
      return {
        to,
        location: {
          latitude: body.latitude,
          longitude: body.longitude,
          ...(body.name === undefined ? {} : { name: body.name }),
          ...(body.address === undefined ? {} : { address: body.address }),
        },
      };
    case 'template':
      if (body.text === undefined || body.text.trim() === '')
        throw unsendable(
          msg,
          `template "${body.name}" has no text: WASender cannot send WhatsApp templates, so give the template's rendered text`,
        );
      return { to, text: body.text };
  }
}

function caption(text: string | undefined): { text?: string } {
  return text === undefined ? {} : { text };
}

function mediaLink(msg: OutboundRecord, what: string, media: MediaRef): string {
  if (media.link !== undefined) return media.link;
  throw unsendable(
    msg,
    `${what} is given by media id ${media.id}: WASender sends media only by link (a media id is a Cloud API upload)`,
  );
}

function unsendable(msg: OutboundRecord, why: string): SendError {
  return new SendError(`WASender cannot send outbound ${msg.id}: ${why}`, {
    retryable: false,
    httpStatus: 0,
  });
}

/**
 * Sends outbound records through WASenderApi.
 *
 * @example
 * ```ts
 * const sender = new WasenderSender({ apiKey: config.wasenderApiKey });
 * const { providerMessageId } = await sender.send(record); // WASender's msgId, as a string
 * ```
 */
export class WasenderSender implements Sender {
  readonly #api: JsonApi;
  readonly #keyed: boolean;

  constructor(options: WasenderSenderOptions = {}) {
    this.#api = new JsonApi(options.baseUrl ?? WASENDER_DEFAULT_BASE_URL, options.apiKey, options);
    this.#keyed = options.apiKey !== undefined && options.apiKey !== '';
  }

  /**
   * POSTs {@link buildWasenderMessage}'s body to `{baseUrl}/api/send-message`.
   * @throws SendError retryable on HTTP 408/429/5xx and transport failures, permanent otherwise
   *   (and, before any request, for a body WASender cannot carry); retryable, before any request,
   *   without an API key.
   */
  async send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }> {
    // A worker of a split deployment started without the key: nothing is sent from here (it went
    // to WASender's public address with no key: outside test QA89-F5); the reply stays unsent
    // for a process that has the key, and the error names what is missing.
    if (!this.#keyed)
      throw new SendError(
        'WASender is not configured in this process (no WASENDER_API_KEY): a process that has it sends this reply',
        { retryable: true, httpStatus: 0 },
      );
    const path = '/api/send-message';
    const label = `POST ${path}`;
    const res = await this.#api.post(path, label, buildWasenderMessage(msg), options);
    const json = isObject(res.json) ? res.json : undefined;
    if (res.status >= 200 && res.status < 300 && json?.success !== false) {
      const data = obj(json, 'data');
      const msgId = num(data, 'msgId') ?? str(data, 'msgId');
      if (msgId !== undefined) return { providerMessageId: String(msgId) };
      throw missingMessageId(label, res.status, 'data.msgId');
    }
    throw classifyWasenderFailure(res, json, label, this.#api.now());
  }
}

function classifyWasenderFailure(
  res: JsonResponse,
  json: JsonObject | undefined,
  label: string,
  nowMs: number,
): SendError {
  const parts = [`HTTP ${res.status}`];
  const message = str(json, 'message');
  if (message !== undefined) parts.push(message);
  const errors = obj(json, 'errors');
  if (errors !== undefined) parts.push(`errors in ${Object.keys(errors).join(', ')}`);
  const bodyRetryAfter = num(json, 'retry_after');
  const retryAfterMs =
    parseRetryAfter(res.headers.get('retry-after'), nowMs) ??
    (bodyRetryAfter === undefined ? undefined : Math.round(bodyRetryAfter * 1000));
  return new SendError(`${label} failed: ${parts.join('; ')}`, {
    retryable: isRetryableHttpStatus(res.status),
    httpStatus: res.status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}
