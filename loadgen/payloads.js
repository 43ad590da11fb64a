/**
 * Cloud API webhook bodies as Meta shapes them (see shared/fixtures/cloud-api): text messages
 * and reply-button taps, wrapped in the `whatsapp_business_account` envelope.
 * @module
 */
import { DEFAULT_LOAD_CHANNEL } from "../src/cli/load.js";
/** The default business number (the same as the test fixtures'). */
export const DEFAULT_CHANNEL = { phoneNumberId: DEFAULT_LOAD_CHANNEL, displayPhone: '15550001111' };
/** A text message. */
export function textMessage(from, id, ts, body) {
    return { from, id, timestamp: String(ts), type: 'text', text: { body } };
}
/** A reply-button tap; `contextId` is the wamid of the message whose button was tapped. */
export function buttonTap(channel, from, id, ts, button, contextId) {
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
export function cloudWebhook(channel, fields) {
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
                            ...fields,
                        },
                    },
                ],
            },
        ],
    };
}
/**
 * One webhook body carrying `messages` (all from the same business number), each sender with
 * a `contacts` entry whose profile name is `contactName`. The messages go in as they are: only
 * their `from` is read.
 */
export function webhookBody(channel, messages, contactName = 'Load User') {
    const users = [...new Set(messages.map((m) => m.from))];
    return cloudWebhook(channel, {
        contacts: users.map((u) => ({ profile: { name: contactName }, wa_id: u })),
        messages,
    });
}
