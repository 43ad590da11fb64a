/**
 * Builders of Cloud API webhook bodies, shaped like the real ones in shared/fixtures. The
 * envelope, text messages and button taps are the load generator's (loadgen/payloads.ts).
 */
import { randomBytes } from 'node:crypto';
import {
  buttonTap,
  cloudWebhook,
  DEFAULT_CHANNEL,
  textMessage,
  webhookBody,
} from '../../loadgen/payloads.ts';

export const PHONE_ID = DEFAULT_CHANNEL.phoneNumberId;
export const DISPLAY_PHONE = DEFAULT_CHANNEL.displayPhone;

let counter = 0;
/** A fresh, unique wamid. */
export function wamid(): string {
  counter += 1;
  return `wamid.TEST${randomBytes(6).toString('hex')}${counter}`;
}

export interface Msg {
  from: string;
  id: string;
  timestamp: string;
  type: string;
  [k: string]: unknown;
}

// The load generator's builders return an interface, which has no index signature: spread into a Msg.

export function text(from: string, body: string, ts: number, id = wamid()): Msg {
  return { ...textMessage(from, id, ts, body) };
}

export function button(
  from: string,
  replyId: string,
  title: string,
  ts: number,
  contextId?: string,
  id = wamid(),
): Msg {
  // An empty `contextId` counts as none.
  return { ...buttonTap(DEFAULT_CHANNEL, from, id, ts, { id: replyId, title }, contextId || undefined) };
}

export function reaction(from: string, messageId: string, ts: number, id = wamid()): Msg {
  return {
    from,
    id,
    timestamp: String(ts),
    type: 'reaction',
    reaction: { message_id: messageId, emoji: '👍' },
  };
}

export function image(from: string, ts: number, id = wamid()): Msg {
  return {
    from,
    id,
    timestamp: String(ts),
    type: 'image',
    image: { id: '1234', mime_type: 'image/jpeg', sha256: 'abc' },
  };
}

/** One webhook body carrying `messages` (each user gets a contacts entry). */
export function webhook(messages: Msg[], phoneNumberId = PHONE_ID): Record<string, unknown> {
  return webhookBody({ phoneNumberId, displayPhone: DISPLAY_PHONE }, messages, 'Test User');
}

/** A Cloud API webhook for the test channel whose change value carries `fields` as given. */
export function envelopeWith(fields: Record<string, unknown>): Record<string, unknown> {
  return cloudWebhook(DEFAULT_CHANNEL, fields);
}

/** A status webhook for an outbound message. */
export function statusWebhook(
  outboundId: string,
  status: string,
  recipient: string,
  ts: number,
): Record<string, unknown> {
  return cloudWebhook(DEFAULT_CHANNEL, {
    statuses: [{ id: outboundId, status, timestamp: String(ts), recipient_id: recipient }],
  });
}
