/**
 * Gateways: read and verify their webhooks, send through their APIs. A provider knows no
 * storage; ingress calls `verify` then `parse`, the outbox calls `send`.
 *
 * @example
 * ```ts
 * const provider = createCloudApiProvider({ appSecret: config.whatsappAppSecret });
 * if (!provider.verify(rawBody, req.headers)) return reply.code(401).send();
 * const batch = provider.parse(JSON.parse(rawBody.toString('utf8')));
 * ```
 * @module
 */
import { SendError } from '../errors.ts';
import type { ProviderName } from '../model/message.ts';
import { parseCloudApiWebhookReport } from './cloud-api/parse.ts';
import type { CloudApiSenderOptions } from './cloud-api/send.ts';
import { CloudApiSender } from './cloud-api/send.ts';
import { META_SIGNATURE_HEADER, verifyMetaSignature } from './cloud-api/signature.ts';
import type { Provider, Sender } from './types.ts';
import { singleHeader } from './types.ts';
import { parseWasenderWebhookReport } from './wasender/parse.ts';
import type { WasenderSenderOptions } from './wasender/send.ts';
import { WasenderSender } from './wasender/send.ts';
import { WASENDER_SIGNATURE_HEADER, verifyWasenderSignature } from './wasender/verify.ts';

// Contracts
export type { Provider, Sender, SendOptions, WebhookHeaders } from './types.ts';
export { singleHeader } from './types.ts';

// Meta WhatsApp Cloud API
export type { CloudApiParseOptions, CloudApiParseReport, SkippedItem } from './cloud-api/parse.ts';
export { parseCloudApiWebhook, parseCloudApiWebhookReport } from './cloud-api/parse.ts';
export { META_SIGNATURE_HEADER, signMetaBody, verifyMetaSignature } from './cloud-api/signature.ts';
export type { CloudApiInteractive, CloudApiMessageBody, CloudApiSenderOptions } from './cloud-api/send.ts';
export {
  CloudApiSender,
  RETRYABLE_GRAPH_CODES,
  buildCloudApiMessage,
  classifyGraphFailure,
} from './cloud-api/send.ts';

// WASenderApi
export type { WasenderParseOptions, WasenderParseReport } from './wasender/parse.ts';
export {
  WASENDER_DEFAULT_CHANNEL,
  WASENDER_MESSAGE_EVENTS,
  parseWasenderWebhook,
  wasenderChannel,
  parseWasenderWebhookReport,
} from './wasender/parse.ts';
export { WASENDER_SIGNATURE_HEADER, verifyWasenderSignature } from './wasender/verify.ts';
export type { WasenderSenderOptions } from './wasender/send.ts';
export { WASENDER_DEFAULT_BASE_URL, WasenderSender, renderAsText } from './wasender/send.ts';

// Shared HTTP helpers
export type { FetchFn, HttpSendOptions } from './http.ts';
export { DEFAULT_SEND_TIMEOUT_MS, parseRetryAfter } from './http.ts';

/**
 * The Cloud API webhook reader. With an `appSecret`, `verify` checks `X-Hub-Signature-256`;
 * without one (or with an empty one) it accepts every request, as SPEC section 2 says.
 * `enabled: false` turns the route off (404).
 *
 * @example
 * ```ts
 * const cloud = createCloudApiProvider({ appSecret: process.env.WHATSAPP_APP_SECRET });
 * ```
 */
export function createCloudApiProvider(
  options: { appSecret?: string | undefined; enabled?: boolean } = {},
): Provider {
  const secret = options.appSecret ?? '';
  return {
    name: 'cloud-api',
    enabled: options.enabled ?? true,
    signed: secret.length > 0,
    verify: (raw, headers) =>
      secret.length === 0 || verifyMetaSignature(raw, singleHeader(headers, META_SIGNATURE_HEADER), secret),
    parse: (json) => parseCloudApiWebhookReport(json),
  };
}

/**
 * The WASenderApi webhook reader. It is on only with a `webhookSecret`, and then `verify`
 * checks `X-Webhook-Signature`; without one the route is off (404) and `verify` refuses all.
 *
 * @example
 * ```ts
 * const wasender = createWasenderProvider({ webhookSecret: process.env.WASENDER_WEBHOOK_SECRET });
 * ```
 */
export function createWasenderProvider(options: { webhookSecret?: string | undefined } = {}): Provider {
  const secret = options.webhookSecret ?? '';
  return {
    name: 'wasender',
    enabled: secret.length > 0,
    signed: true,
    verify: (_raw, headers) =>
      secret.length > 0 && verifyWasenderSignature(singleHeader(headers, WASENDER_SIGNATURE_HEADER), secret),
    parse: (json) => parseWasenderWebhookReport(json),
  };
}

/**
 * A {@link Sender} for the Cloud API.
 *
 * @example
 * ```ts
 * const sender = createCloudApiSender({ baseUrl: 'https://graph.facebook.com/v21.0', accessToken });
 * ```
 */
export function createCloudApiSender(options: CloudApiSenderOptions): Sender {
  return new CloudApiSender(options);
}

/**
 * A {@link Sender} for WASenderApi.
 *
 * @example
 * ```ts
 * const sender = createWasenderSender({ apiKey: process.env.WASENDER_API_KEY });
 * ```
 */
export function createWasenderSender(options: WasenderSenderOptions = {}): Sender {
  return new WasenderSender(options);
}

/**
 * One {@link Sender} over several gateways: each record goes through the sender of its
 * `provider` (default `cloud-api`). A record for a gateway with no sender fails permanently.
 *
 * @example
 * ```ts
 * const sender = createRoutingSender({ 'cloud-api': createCloudApiSender(opts), wasender: createWasenderSender() });
 * ```
 */
export function createRoutingSender(senders: Readonly<Partial<Record<ProviderName, Sender>>>): Sender {
  return {
    send(msg, options) {
      const provider = msg.provider ?? 'cloud-api';
      const sender = senders[provider];
      if (sender === undefined) {
        return Promise.reject(
          new SendError(`no sender is configured for provider ${provider}`, {
            retryable: false,
            httpStatus: 0,
          }),
        );
      }
      return sender.send(msg, options);
    },
  };
}
