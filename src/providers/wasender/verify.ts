/**
 * WASenderApi's webhook check: the `X-Webhook-Signature` header carries the webhook secret
 * itself (not an HMAC). Compared in constant time.
 *
 * See https://wasenderapi.com/api-docs/webhooks/webhook-setup
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The header WASender puts the secret in (lower case, as Node delivers header names). */
export const WASENDER_SIGNATURE_HEADER = 'x-webhook-signature';

/**
 * Whether `header` equals `secret`, compared in constant time (both are hashed first, so their
 * lengths leak nothing). A missing header or an empty secret is `false`.
 *
 * @example
 * ```ts
 * verifyWasenderSignature(req.headers['x-webhook-signature'], config.wasenderWebhookSecret);
 * ```
 */
export function verifyWasenderSignature(header: string | undefined, secret: string): boolean {
  if (header === undefined || secret.length === 0) return false;
  const given = createHash('sha256').update(header, 'utf8').digest();
  const expected = createHash('sha256').update(secret, 'utf8').digest();
  return timingSafeEqual(given, expected);
}
