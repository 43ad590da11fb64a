/**
 * Sends Baton's replies through WASenderApi (`POST /api/send-message`). Its API has no
 * interactive messages, so buttons and lists are rendered as numbered text.
 *
 * See https://wasenderapi.com/api-docs/messages/send-text-message
 * @module
 */
import { SendError } from '../../errors.ts';
import type { OutboundBody, OutboundRecord } from '../../model/session.ts';
import type { JsonObject } from '../json.ts';
import { isObject, num, obj, str } from '../json.ts';
import type { HttpSendOptions, JsonResponse } from '../http.ts';
import { isRetryableHttpStatus, JsonApi, missingMessageId, parseRetryAfter } from '../http.ts';
import type { SendOptions, Sender } from '../types.ts';

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
 * the body text (list sections as headings), so the user can answer with a number.
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
      return [body.text, '', ...body.buttons.map((b, i) => `${i + 1}. ${b.title}`)].join('\n');
    case 'list': {
      const lines = [body.text];
      let n = 0;
      for (const section of body.sections) {
        lines.push('');
        if (section.title.length > 0) lines.push(`*${section.title}*`);
        for (const row of section.rows) {
          n += 1;
          lines.push(
            row.description === undefined ? `${n}. ${row.title}` : `${n}. ${row.title} - ${row.description}`,
          );
        }
      }
      return lines.join('\n');
    }
  }
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

  constructor(options: WasenderSenderOptions = {}) {
    this.#api = new JsonApi(options.baseUrl ?? WASENDER_DEFAULT_BASE_URL, options.apiKey, options);
  }

  /**
   * POSTs `{to, text}` to `{baseUrl}/api/send-message`.
   * @throws SendError retryable on HTTP 408/429/5xx and transport failures, permanent otherwise.
   */
  async send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }> {
    const path = '/api/send-message';
    const label = `POST ${path}`;
    const res = await this.#api.post(
      path,
      label,
      { to: msg.to, text: renderAsText(msg.body) },
      options?.signal,
    );
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
