/**
 * Cloud API webhook bodies as Meta sends them (shapes from the real payloads in the
 * repository's fixtures): user messages of every kind the simulator can type, status updates
 * for the messages Baton sent, the `whatsapp_business_account` envelope around them.
 * @module
 */
import { randomBytes } from 'node:crypto';

/** The business number the simulated users write to. */
export interface SimChannel {
  readonly phoneNumberId: string;
  readonly displayPhone: string;
}

export const SIM_CHANNEL: SimChannel = { phoneNumberId: '106540352242922', displayPhone: '15550001111' };

/** What a user sends, before it gets an id and a timestamp. */
export type UserInput =
  | { readonly type: 'text'; readonly text: string }
  | {
      readonly type: 'button' | 'row';
      readonly id: string;
      readonly title: string;
      /** The wamid of the message whose button or row was tapped. */
      readonly context?: string;
    }
  | { readonly type: 'image'; readonly link: string; readonly caption?: string }
  | {
      readonly type: 'location';
      readonly latitude: number;
      readonly longitude: number;
      readonly name?: string;
    }
  | { readonly type: 'reaction'; readonly emoji: string; readonly messageId: string };

/** A fresh inbound wamid, shaped like Meta's. */
export function newWamid(): string {
  return `wamid.SIM${randomBytes(12).toString('hex').toUpperCase()}`;
}

/** One `value.messages[]` item. */
export function inboundMessage(
  channel: SimChannel,
  from: string,
  input: UserInput,
  id: string,
  tsSec: number,
): Record<string, unknown> {
  const base = { from, id, timestamp: String(tsSec) };
  switch (input.type) {
    case 'text':
      return { ...base, type: 'text', text: { body: input.text } };
    case 'button':
    case 'row': {
      const reply = { id: input.id, title: input.title };
      return {
        ...(input.context ? { context: { from: channel.displayPhone, id: input.context } } : {}),
        ...base,
        type: 'interactive',
        interactive:
          input.type === 'button'
            ? { type: 'button_reply', button_reply: reply }
            : { type: 'list_reply', list_reply: reply },
      };
    }
    case 'image': {
      const mediaId = String(Math.floor(Math.random() * 1e15));
      return {
        ...base,
        type: 'image',
        image: {
          mime_type: 'image/jpeg',
          sha256: randomBytes(32).toString('base64'),
          id: mediaId,
          url: input.link,
          ...(input.caption ? { caption: input.caption } : {}),
        },
      };
    }
    case 'location':
      return {
        ...base,
        type: 'location',
        location: {
          latitude: input.latitude,
          longitude: input.longitude,
          ...(input.name ? { name: input.name } : {}),
        },
      };
    case 'reaction':
      return { ...base, type: 'reaction', reaction: { message_id: input.messageId, emoji: input.emoji } };
  }
}

/**
 * A Cloud API webhook body with one `messages` change from `channel`: the envelope, the
 * change's `messaging_product` and `metadata`, then `value` (`contacts` and `messages`, or
 * `statuses`). The load generator builds its bodies with it too.
 */
export function cloudEnvelope(channel: SimChannel, value: Record<string, unknown>): Record<string, unknown> {
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
              metadata: {
                display_phone_number: channel.displayPhone,
                phone_number_id: channel.phoneNumberId,
              },
              ...value,
            },
          },
        ],
      },
    ],
  };
}

/** A webhook carrying one user's messages, with their `contacts` entry. */
export function messagesWebhook(
  channel: SimChannel,
  from: string,
  name: string,
  messages: readonly Record<string, unknown>[],
): Record<string, unknown> {
  return cloudEnvelope(channel, { contacts: [{ profile: { name }, wa_id: from }], messages });
}

/** A status webhook for a message Baton sent (`sent`, `delivered`, `read`). */
export function statusWebhook(
  channel: SimChannel,
  wamid: string,
  recipient: string,
  status: 'sent' | 'delivered' | 'read',
  tsSec: number,
): Record<string, unknown> {
  return cloudEnvelope(channel, {
    statuses: [
      {
        id: wamid,
        status,
        timestamp: String(tsSec),
        recipient_id: recipient,
        ...(status === 'read'
          ? {}
          : {
              conversation: { id: 'simconversation', origin: { type: 'service' } },
              pricing: { billable: true, pricing_model: 'CBP', category: 'service' },
            }),
      },
    ],
  });
}
