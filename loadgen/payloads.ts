/**
 * Cloud API webhook bodies as Meta shapes them (see shared/fixtures/cloud-api): text messages
 * and reply-button taps, wrapped in the `whatsapp_business_account` envelope.
 * @module
 */
import { DEFAULT_LOAD_CHANNEL } from '../src/cli/load.ts';
import { cloudEnvelope } from '../src/simulate/inbound.ts';

/** One inbound message of a webhook's `value.messages`. */
export interface CloudMessage {
  readonly from: string;
  readonly id: string;
  readonly timestamp: string;
  readonly type: 'text' | 'interactive';
  readonly text?: { readonly body: string };
  readonly context?: { readonly from: string; readonly id: string };
  readonly interactive?: {
    readonly type: 'button_reply';
    readonly button_reply: { readonly id: string; readonly title: string };
  };
}

/** The business number the simulated users write to. */
export interface Channel {
  readonly phoneNumberId: string;
  readonly displayPhone: string;
}

/** The default business number (the same as the test fixtures'). */
export const DEFAULT_CHANNEL: Channel = { phoneNumberId: DEFAULT_LOAD_CHANNEL, displayPhone: '15550001111' };

/** A text message. */
export function textMessage(from: string, id: string, ts: number, body: string): CloudMessage {
  return { from, id, timestamp: String(ts), type: 'text', text: { body } };
}

/** A reply-button tap; `contextId` is the wamid of the message whose button was tapped. */
export function buttonTap(
  channel: Channel,
  from: string,
  id: string,
  ts: number,
  button: { id: string; title: string },
  contextId: string | undefined,
): CloudMessage {
  return {
    ...(contextId === undefined ? {} : { context: { from: channel.displayPhone, id: contextId } }),
    from,
    id,
    timestamp: String(ts),
    type: 'interactive',
    interactive: { type: 'button_reply', button_reply: { id: button.id, title: button.title } },
  };
}

/**
 * A webhook body with one `messages` change from `channel`: the envelope, the change's
 * `messaging_product` and `metadata`, then `fields` (`contacts` and `messages`, or `statuses`).
 */
export function cloudWebhook(channel: Channel, fields: Record<string, unknown>): Record<string, unknown> {
  return cloudEnvelope(channel, fields);
}

/**
 * One webhook body carrying `messages` (all from the same business number), each sender with
 * a `contacts` entry whose profile name is `contactName`. The messages go in as they are: only
 * their `from` is read.
 */
export function webhookBody(
  channel: Channel,
  messages: readonly Pick<CloudMessage, 'from'>[],
  contactName = 'Load User',
): Record<string, unknown> {
  const users = [...new Set(messages.map((m) => m.from))];
  return cloudWebhook(channel, {
    contacts: users.map((u) => ({ profile: { name: contactName }, wa_id: u })),
    messages,
  });
}
