/**
 * Sends Baton's replies through the WhatsApp Cloud API (`POST /{phone_number_id}/messages`)
 * and classifies every failure as retryable or permanent.
 *
 * See https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages and
 * https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
 * @module
 */
import { SendError } from '../../errors.ts';
import type {
  InteractiveHeader,
  MediaRef,
  OutboundBody,
  OutboundRecord,
  TemplateComponent,
  TemplateParameter,
} from '../../model/session.ts';
import type { JsonObject } from '../json.ts';
import { arr, isObject, num, obj, str } from '../json.ts';
import type { HttpSendOptions, JsonResponse } from '../http.ts';
import { isRetryableHttpStatus, JsonApi, missingMessageId, parseRetryAfter } from '../http.ts';
import type { SendOptions, Sender } from '../types.ts';
import { plusE164 } from '../channel.ts';

/**
 * Graph error codes that mean "not now" whatever the HTTP status (Meta usually answers 400):
 * throttling (4, 80007, 130429, 131056), maintenance (131057) and transient faults (1, 2, 131000).
 */
export const RETRYABLE_GRAPH_CODES: ReadonlySet<number> = new Set([
  4, 80007, 130429, 131056, 131057, 131000, 1, 2,
]);

/** Options of {@link CloudApiSender}. */
export interface CloudApiSenderOptions extends HttpSendOptions {
  /** Graph base URL including the version, e.g. `https://graph.facebook.com/v21.0`. */
  readonly baseUrl: string;
  /** Bearer token; no `Authorization` header is sent without one. */
  readonly accessToken?: string | undefined;
}

/** The JSON body of a Cloud API send, as Baton builds it. */
export type CloudApiMessageBody = {
  readonly messaging_product: 'whatsapp';
  readonly recipient_type: 'individual';
  /**
   * The user's phone number as `+E164` (a wa_id given its `+`): without the plus Graph prepends
   * the business number's country code, which can misroute the message. Absent when the user
   * is only known by a BSUID.
   */
  readonly to?: string;
  /** A business-scoped user id (`US.1349…`), used when no phone number is known. */
  readonly recipient?: string;
  readonly biz_opaque_callback_data: string;
} & CloudApiContent;

/** A media object of a send: by `link` or uploaded media `id`. */
export type CloudApiMedia = ({ readonly link: string } | { readonly id: string }) & {
  readonly caption?: string;
  readonly filename?: string;
};

/** The `type` and the object named after it, for every kind Baton sends. */
export type CloudApiContent =
  | { readonly type: 'text'; readonly text: { readonly body: string; readonly preview_url?: boolean } }
  | { readonly type: 'image'; readonly image: CloudApiMedia }
  | { readonly type: 'video'; readonly video: CloudApiMedia }
  | { readonly type: 'document'; readonly document: CloudApiMedia }
  | { readonly type: 'audio'; readonly audio: CloudApiMedia }
  | { readonly type: 'sticker'; readonly sticker: CloudApiMedia }
  | {
      readonly type: 'location';
      readonly location: {
        /** Decimal degrees, written as a string as Meta's schema and examples do. */
        readonly latitude: string;
        readonly longitude: string;
        readonly name?: string;
        readonly address?: string;
      };
    }
  | { readonly type: 'interactive'; readonly interactive: CloudApiInteractive }
  | { readonly type: 'template'; readonly template: CloudApiTemplate };

/** The optional header of an interactive message. */
export type CloudApiHeader =
  | { readonly type: 'text'; readonly text: string }
  | { readonly type: 'image'; readonly image: CloudApiMedia }
  | { readonly type: 'video'; readonly video: CloudApiMedia }
  | { readonly type: 'document'; readonly document: CloudApiMedia };

/** The `interactive` object of a reply-buttons or list message. */
export type CloudApiInteractive =
  | {
      readonly type: 'button';
      readonly header?: CloudApiHeader;
      readonly body: { readonly text: string };
      readonly footer?: { readonly text: string };
      readonly action: {
        readonly buttons: ReadonlyArray<{
          readonly type: 'reply';
          readonly reply: { readonly id: string; readonly title: string };
        }>;
      };
    }
  | {
      readonly type: 'list';
      readonly header?: CloudApiHeader;
      readonly body: { readonly text: string };
      readonly footer?: { readonly text: string };
      readonly action: {
        readonly button: string;
        readonly sections: ReadonlyArray<{
          readonly title?: string;
          readonly rows: ReadonlyArray<{
            readonly id: string;
            readonly title: string;
            readonly description?: string;
          }>;
        }>;
      };
    };

/** The `template` object of a template message. */
export interface CloudApiTemplate {
  readonly name: string;
  readonly language: { readonly policy: 'deterministic'; readonly code: string };
  readonly components?: ReadonlyArray<{
    readonly type: 'header' | 'body' | 'button';
    readonly sub_type?: 'quick_reply' | 'url';
    readonly index?: string;
    readonly parameters: ReadonlyArray<CloudApiTemplateParameter>;
  }>;
}

/** One parameter of a template component. */
export type CloudApiTemplateParameter =
  | { readonly type: 'text'; readonly text: string; readonly parameter_name?: string }
  | { readonly type: 'image'; readonly image: CloudApiMedia }
  | { readonly type: 'video'; readonly video: CloudApiMedia }
  | { readonly type: 'document'; readonly document: CloudApiMedia }
  | { readonly type: 'payload'; readonly payload: string };

/** Business-scoped user ids look like `US.13491208655302741918` or `US.ENT.11815799212886844830`. */
const BSUID = /^[A-Z]{2}\.\S+$/;

/**
 * Where a send goes: a BSUID as `recipient`; a wa_id (digits) as `to` with its `+`, as Meta
 * asks (outside test QA35-F4); anything else (already `+E164`) as `to` unchanged.
 */
function cloudApiAddress(to: string): { to: string } | { recipient: string } {
  if (BSUID.test(to)) return { recipient: to };
  return { to: plusE164(to) };
}

/**
 * The Graph request body for one outbound record.
 *
 * @example
 * ```ts
 * const body = buildCloudApiMessage(record); // record.to: '15550001111'
 * body.to; // '+15550001111' (a BSUID user instead gets `recipient: 'US.1349…'` and no `to`)
 * body.biz_opaque_callback_data; // 'baton:order:ask_name:1'
 * ```
 */
export function buildCloudApiMessage(msg: OutboundRecord): CloudApiMessageBody {
  const address = cloudApiAddress(msg.to);
  return {
    messaging_product: 'whatsapp',
    recipient_type: 'individual',
    ...address,
    ...cloudApiContent(msg.body),
    biz_opaque_callback_data: msg.callbackData,
  };
}

/**
 * The `type` and content object of a Cloud API send for a reply body.
 *
 * @example
 * ```ts
 * cloudApiContent({ type: 'image', link: 'https://example.com/a.jpg', caption: 'A' });
 * // { type: 'image', image: { link: 'https://example.com/a.jpg', caption: 'A' } }
 * ```
 */
export function cloudApiContent(body: OutboundBody): CloudApiContent {
  switch (body.type) {
    case 'text':
      return {
        type: 'text',
        text:
          body.previewUrl === undefined
            ? { body: body.text }
            : { body: body.text, preview_url: body.previewUrl },
      };
    case 'buttons':
      return {
        type: 'interactive',
        interactive: {
          type: 'button',
          ...header(body.header),
          body: { text: body.text },
          ...footer(body.footer),
          action: {
            buttons: body.buttons.map((b) => ({ type: 'reply', reply: { id: b.id, title: b.title } })),
          },
        },
      };
    case 'list':
      return {
        type: 'interactive',
        interactive: {
          type: 'list',
          ...header(body.header),
          body: { text: body.text },
          ...footer(body.footer),
          action: {
            button: body.button,
            sections: body.sections.map((s) => ({
              ...(s.title === undefined ? {} : { title: s.title }),
              rows: s.rows.map((r) => ({
                id: r.id,
                title: r.title,
                ...(r.description === undefined ? {} : { description: r.description }),
              })),
            })),
          },
        },
      };
    case 'image':
      return { type: 'image', image: media(body, body.caption) };
    case 'video':
      return { type: 'video', video: media(body, body.caption) };
    case 'document':
      return { type: 'document', document: media(body, body.caption, body.filename) };
    case 'audio':
      return { type: 'audio', audio: media(body) };
    case 'sticker':
      return { type: 'sticker', sticker: media(body) };
    case 'location':
      return {
        type: 'location',
        location: {
          latitude: String(body.latitude),
          longitude: String(body.longitude),
          ...(body.name === undefined ? {} : { name: body.name }),
          ...(body.address === undefined ? {} : { address: body.address }),
        },
      };
    case 'template':
      return {
        type: 'template',
        template: {
          name: body.name,
          language: { policy: 'deterministic', code: body.language },
          ...(body.components === undefined ? {} : { components: body.components.map(templateComponent) }),
        },
      };
  }
}

function media(ref: MediaRef, caption?: string, filename?: string): CloudApiMedia {
  return {
    ...(ref.link === undefined ? { id: ref.id } : { link: ref.link }),
    ...(caption === undefined ? {} : { caption }),
    ...(filename === undefined ? {} : { filename }),
  };
}

function header(h: InteractiveHeader | undefined): { header?: CloudApiHeader } {
  if (h === undefined) return {};
  switch (h.type) {
    case 'text':
      return { header: { type: 'text', text: h.text } };
    case 'image':
      return { header: { type: 'image', image: media(h) } };
    case 'video':
      return { header: { type: 'video', video: media(h) } };
    case 'document':
      return { header: { type: 'document', document: media(h, undefined, h.filename) } };
  }
}

function footer(text: string | undefined): { footer?: { text: string } } {
  return text === undefined ? {} : { footer: { text } };
}

function templateComponent(c: TemplateComponent): NonNullable<CloudApiTemplate['components']>[number] {
  const parameters = c.parameters.map(templateParameter);
  return c.type === 'button'
    ? { type: 'button', sub_type: c.subType, index: String(c.index), parameters }
    : { type: c.type, parameters };
}

function templateParameter(p: TemplateParameter): CloudApiTemplateParameter {
  switch (p.type) {
    case 'text':
      return p.name === undefined
        ? { type: 'text', text: p.text }
        : { type: 'text', parameter_name: p.name, text: p.text };
    case 'image':
      return { type: 'image', image: media(p) };
    case 'video':
      return { type: 'video', video: media(p) };
    case 'document':
      return { type: 'document', document: media(p, undefined, p.filename) };
    case 'payload':
      return { type: 'payload', payload: p.payload };
  }
}

/**
 * Sends outbound records through the Cloud API.
 *
 * @example
 * ```ts
 * const sender = new CloudApiSender({ baseUrl: config.whatsappApiBaseUrl, accessToken: config.accessToken });
 * const { providerMessageId } = await sender.send(record); // 'wamid.…'
 * ```
 */
export class CloudApiSender implements Sender {
  readonly #api: JsonApi;

  constructor(options: CloudApiSenderOptions) {
    this.#api = new JsonApi(options.baseUrl, options.accessToken, options);
  }

  /**
   * POSTs the record to `{baseUrl}/{channel}/messages`.
   * @throws SendError retryable on HTTP 408/429/5xx, throttling or transient Graph codes, and
   *   transport failures; permanent otherwise, with the Graph code and message in the detail.
   */
  async send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }> {
    const path = `/${encodeURIComponent(msg.channel)}/messages`;
    const label = `POST ${path}`;
    const res = await this.#api.post(path, label, buildCloudApiMessage(msg), options);
    if (res.status >= 200 && res.status < 300) {
      const id = isObject(res.json) ? str((arr(res.json, 'messages') ?? []).find(isObject), 'id') : undefined;
      if (id !== undefined) return { providerMessageId: id };
      // An error in a 2xx answer is Graph's error all the same: a throttling code is retried
      // whatever the HTTP status (SPEC 3).
      if (!isObject(res.json) || obj(res.json, 'error') === undefined)
        throw missingMessageId(label, res.status, 'messages[0].id');
    }
    throw classifyGraphFailure(res, label, this.#api.now());
  }
}

/**
 * A Graph error's `code`: a number, as Meta sends it, or the same digits as a string (a proxy or
 * gateway in front of Graph that re-encodes its errors): a throttling code is one either way.
 */
function graphCode(error: JsonObject | undefined): number | undefined {
  const v = error?.code;
  if (typeof v === 'string' && /^\s*\d{1,9}\s*$/.test(v)) return Number(v);
  return num(error, 'code');
}

/**
 * Turns a Graph answer that is an error (non-2xx, or a 2xx with an `error` object) into a {@link SendError}: retryable when the HTTP status or the
 * Graph error code says so ({@link RETRYABLE_GRAPH_CODES}), permanent otherwise.
 */
export function classifyGraphFailure(res: JsonResponse, label: string, nowMs: number): SendError {
  const error: JsonObject | undefined = isObject(res.json) ? obj(res.json, 'error') : undefined;
  const code = graphCode(error);
  const retryable =
    isRetryableHttpStatus(res.status) || (code !== undefined && RETRYABLE_GRAPH_CODES.has(code));
  const parts = [`HTTP ${res.status}`];
  if (code !== undefined) parts.push(`Graph error ${code}`);
  const message = str(error, 'message');
  if (message !== undefined) parts.push(message);
  const details = str(obj(error, 'error_data'), 'details');
  if (details !== undefined && details !== message) parts.push(details);
  const trace = str(error, 'fbtrace_id');
  if (trace !== undefined) parts.push(`fbtrace_id ${trace}`);
  const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), nowMs);
  return new SendError(`${label} failed: ${parts.join('; ')}`, {
    retryable,
    httpStatus: res.status,
    ...(code === undefined ? {} : { providerCode: code }),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}
