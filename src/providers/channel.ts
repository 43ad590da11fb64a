/**
 * A channel belongs to one provider (SPEC section 3). Cloud API channels are Meta's
 * `phone_number_id`s; WASender channels are `wasender` or `wasender:<sessionId>`, so neither
 * gateway's webhooks can ever name the other's sessions.
 * @module
 */
import { ID_PATTERN } from './screen.ts';

/** Channel of WASender sessions when the webhook names no `sessionId`. */
export const WASENDER_DEFAULT_CHANNEL = 'wasender';

/** The channel of a WASender session: `wasender:<sessionId>`, or `wasender` without one. */
export function wasenderChannel(sessionId: string | undefined): string {
  return sessionId === undefined ? WASENDER_DEFAULT_CHANNEL : `${WASENDER_DEFAULT_CHANNEL}:${sessionId}`;
}

/** Whether `channel` is a WASender channel (and so never a Cloud API one). */
export function isWasenderChannel(channel: string): boolean {
  return channel === WASENDER_DEFAULT_CHANNEL || channel.startsWith(`${WASENDER_DEFAULT_CHANNEL}:`);
}

/**
 * Why `channel` cannot be a Cloud API `phone_number_id`, or null when it can: every message to
 * it would be dead-lettered (a command's `--channel 'a b'` was taken, and every message lost).
 */
export function cloudChannelProblem(channel: string): string | null {
  if (!ID_PATTERN.test(channel))
    return 'must be 1-128 characters with no spaces, control or format characters';
  if (isWasenderChannel(channel)) return 'names a WASender channel, not a Cloud API phone_number_id';
  return null;
}

/**
 * A user's phone number as the gateways take it, `+E164`: a bare wa_id (digits) gets its `+`
 * (without it Graph prepends the business number's country code; outside test QA35-F4); anything
 * else (already `+E164`, a BSUID, a group's JID) is left as it is.
 */
export function plusE164(to: string): string {
  return /^\d+$/.test(to) ? `+${to}` : to;
}

/** The wa_id Graph names the user of a `to` by (its `contacts[].wa_id`): the digits, without the `+`. */
export function waIdOfTo(to: string): string {
  return to.startsWith('+') ? to.slice(1) : to;
}

/**
 * A sender's wa_id as Meta writes it, digits without a `+`: a gateway or relay that passes
 * `+E164` ids on stored a session `+1555…` that the admin API, which reads a `+` number as its
 * digits, could not name (outside test QA83-F1: escalated, in the inbox, and nobody could take
 * it). Anything else is left as it is.
 */
export function plainWaId(id: string): string;
export function plainWaId(id: string | undefined): string | undefined;
export function plainWaId(id: string | undefined): string | undefined {
  return id !== undefined && /^\+\d+$/.test(id) ? id.slice(1) : id;
}
