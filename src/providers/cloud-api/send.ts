/**
 * Sends Baton's replies through the WhatsApp Cloud API (`POST /{phone_number_id}/messages`)
 * and classifies every failure as retryable or permanent.
 *
 * See https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages and
 * https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
 * @module
 */
import { SendError } from '../../errors.ts';
import type { OutboundBody, OutboundRecord } from '../../model/session.ts';
import type { JsonObject } from '../json.ts';
import { arr, isObject, num, obj, str } from '../json.ts';
import type { HttpSendOptions, JsonResponse } from '../http.ts';
import { isRetryableHttpStatus, JsonApi, missingMessageId, parseRetryAfter } from '../http.ts';
import type { SendOptions, Sender } from '../types.ts';

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
  /** A phone number / wa_id. Absent when the user is only known by a BSUID. */
  readonly to?: string;
  /** A business-scoped user id (`US.1349…`), used when no phone number is known. */
  readonly recipient?: string;
  readonly biz_opaque_callback_data: string;
} & (
  | { readonly type: 'text'; readonly text: { readonly body: string } }
  | { readonly type: 'interactive'; readonly interactive: CloudApiInteractive }
);

/** The `interactive` object of a reply-buttons or list message. */
export type CloudApiInteractive =
  | {
      readonly type: 'button';
      readonly body: { readonly text: string };
      readonly action: {
        readonly buttons: ReadonlyArray<{
          readonly type: 'reply';
          readonly reply: { readonly id: string; readonly title: string };
        }>;
      };
    }
  | {
      readonly type: 'list';
      readonly body: { readonly text: string };
      readonly action: {
        readonly button: string;
        readonly sections: ReadonlyArray<{
          readonly title: string;
          readonly rows: ReadonlyArray<{
            readonly id: string;
            readonly title: string;
            readonly description?: string;
          }>;
        }>;
      };
    };

/** Business-scoped user ids look like `US.13491208655302741918` or `US.ENT.11815799212886844830`. */
const BSUID = /^[A-Z]{2}\.\S+$/;

/**
 * The Graph request body for one outbound record.
 *
 * @example
 * ```ts
 * buildCloudApiMessage(record).biz_opaque_callback_data; // 'baton:order:ask_name:1'
 * ```
 */
export function buildCloudApiMessage(msg: OutboundRecord): CloudApiMessageBody {
  const address = BSUID.test(msg.to) ? { recipient: msg.to } : { to: msg.to };
  return {
    messaging_product: 'whatsapp',
    recipient_type: 'individual',
    ...address,
    ...bodyFields(msg.body),
    biz_opaque_callback_data: msg.callbackData,
  };
}

function bodyFields(
  body: OutboundBody,
):
  | { readonly type: 'text'; readonly text: { readonly body: string } }
  | { readonly type: 'interactive'; readonly interactive: CloudApiInteractive } {
  switch (body.type) {
    case 'text':
      return { type: 'text', text: { body: body.text } };
    case 'buttons':
      return {
        type: 'interactive',
        interactive: {
          type: 'button',
          body: { text: body.text },
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
          body: { text: body.text },
          action: {
            button: body.button,
            sections: body.sections.map((s) => ({
              title: s.title,
              rows: s.rows.map((r) => ({
                id: r.id,
                title: r.title,
                ...(r.description === undefined ? {} : { description: r.description }),
              })),
            })),
          },
        },
      };
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
    const res = await this.#api.post(path, label, buildCloudApiMessage(msg), options?.signal);
    if (res.status >= 200 && res.status < 300) {
      const id = isObject(res.json) ? str((arr(res.json, 'messages') ?? []).find(isObject), 'id') : undefined;
      if (id !== undefined) return { providerMessageId: id };
      throw missingMessageId(label, res.status, 'messages[0].id');
    }
    throw classifyGraphFailure(res, label, this.#api.now());
  }
}

/**
 * Turns a non-2xx Graph answer into a {@link SendError}: retryable when the HTTP status or the
 * Graph error code says so ({@link RETRYABLE_GRAPH_CODES}), permanent otherwise.
 */
export function classifyGraphFailure(res: JsonResponse, label: string, nowMs: number): SendError {
  const error: JsonObject | undefined = isObject(res.json) ? obj(res.json, 'error') : undefined;
  const code = num(error, 'code');
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
