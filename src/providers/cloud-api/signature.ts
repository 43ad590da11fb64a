/**
 * Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`,
 * keyed with the app secret. Always check it on the raw bytes, before JSON parsing: Meta
 * escapes non-ASCII as `\uXXXX`, so a re-serialised body no longer matches.
 *
 * See https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header Meta signs webhooks with (lower case, as Node delivers header names). */
export const META_SIGNATURE_HEADER = 'x-hub-signature-256';

const SIGNATURE_FORMAT = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * The `X-Hub-Signature-256` value for `rawBody`, as Meta would send it.
 *
 * @example
 * ```ts
 * const headers = { 'x-hub-signature-256': signMetaBody(body, 'test-secret') };
 * ```
 */
export function signMetaBody(rawBody: Buffer | string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}

/**
 * Whether `header` is a valid `X-Hub-Signature-256` for `rawBody` under `appSecret`.
 * Compares in constant time. A missing or malformed header, or an empty secret, is `false`.
 *
 * @example
 * ```ts
 * if (!verifyMetaSignature(rawBody, req.headers['x-hub-signature-256'], secret)) reply.code(401);
 * ```
 */
export function verifyMetaSignature(rawBody: Buffer, header: string | undefined, appSecret: string): boolean {
  if (appSecret.length === 0 || header === undefined) return false;
  const match = SIGNATURE_FORMAT.exec(header.trim());
  const hex = match?.[1];
  if (hex === undefined) return false;
  const given = Buffer.from(hex, 'hex');
  const expected = createHmac('sha256', appSecret).update(rawBody).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}
