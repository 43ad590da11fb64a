/**
 * The two contracts a WhatsApp gateway fulfils: read its webhooks, and send through its API.
 * @module
 */
import type { ProviderName, WebhookBatch } from '../model/message.ts';
import type { OutboundRecord } from '../model/session.ts';

/** Request headers as Node delivers them: lower-case names, repeated ones as arrays. */
export type WebhookHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** Reads one gateway's webhooks. Pure: no I/O, no storage. */
export interface Provider {
  readonly name: ProviderName;
  /**
   * Whether the route is on. A gateway that can only be authenticated with a secret is off
   * (its route answers 404) until the secret is configured.
   */
  readonly enabled: boolean;
  /** Whether `verify` checks a secret (false: a Cloud API reader without an app secret). */
  readonly signed: boolean;
  /**
   * Whether the request is authentic. Checked on the raw bytes, before parsing.
   * A provider configured without a secret accepts every request.
   */
  verify(raw: Buffer, headers: WebhookHeaders): boolean;
  /**
   * Normalises a JSON-parsed body: the batch to store, and the items inside a valid envelope
   * that cannot be stored at all (no sender, no channel), for the logs.
   * @throws BatonError `BATON_ERR_BAD_ENVELOPE` when the body is not this gateway's envelope.
   */
  parse(json: unknown): ParsedWebhook;
}

/** A webhook body read by a {@link Provider}. */
export interface ParsedWebhook {
  readonly batch: WebhookBatch;
  readonly skipped: readonly {
    readonly kind: 'message' | 'status';
    readonly id?: string;
    readonly reason: string;
  }[];
}

/** Options of one send. */
export interface SendOptions {
  /** Aborts the request (e.g. on shutdown); the send then fails as retryable. */
  readonly signal?: AbortSignal;
  /**
   * Asked at the last moment before the request is written to its connection (after a connection
   * was found or opened, which may take seconds): false leaves it unsent, and the send fails as
   * retryable with nothing delivered. The engine asks whether its lease still covers the send.
   */
  readonly mayStart?: () => boolean;
}

/** Sends replies through one gateway's API. */
export interface Sender {
  /**
   * Sends one outbound message.
   * @returns the gateway's id for it (status webhooks name it).
   * @throws SendError `retryable` for throttling, 5xx and transport failures, permanent otherwise.
   */
  send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }>;
}

/** A single header value, or `undefined` when absent or sent more than once. */
export function singleHeader(headers: WebhookHeaders, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== lower) continue;
    if (typeof value === 'string') return value;
    return Array.isArray(value) && value.length === 1 ? value[0] : undefined;
  }
  return undefined;
}
