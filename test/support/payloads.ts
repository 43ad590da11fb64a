/**
 * Builders of Cloud API webhook bodies, shaped like the real ones in shared/fixtures.
 */
import { randomBytes } from 'node:crypto';

export const PHONE_ID = '106540352242922';
export const DISPLAY_PHONE = '15550001111';

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

export function text(from: string, body: string, ts: number, id = wamid()): Msg {
  return { from, id, timestamp: String(ts), type: 'text', text: { body } };
}

export function button(
  from: string,
  replyId: string,
  title: string,
  ts: number,
  contextId?: string,
  id = wamid(),
): Msg {
  return {
    ...(contextId ? { context: { from: DISPLAY_PHONE, id: contextId } } : {}),
    from,
    id,
    timestamp: String(ts),
    type: 'interactive',
    interactive: { type: 'button_reply', button_reply: { id: replyId, title } },
  };
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
  const users = [...new Set(messages.map((m) => m.from))];
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: DISPLAY_PHONE, phone_number_id: phoneNumberId },
              contacts: users.map((u) => ({ profile: { name: 'Test User' }, wa_id: u })),
              messages,
            },
          },
        ],
      },
    ],
  };
}

/** A status webhook for an outbound message. */
export function statusWebhook(
  outboundId: string,
  status: string,
  recipient: string,
  ts: number,
): Record<string, unknown> {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: DISPLAY_PHONE, phone_number_id: PHONE_ID },
              statuses: [{ id: outboundId, status, timestamp: String(ts), recipient_id: recipient }],
            },
          },
        ],
      },
    ],
  };
}
