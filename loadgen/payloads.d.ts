/** One inbound message of a webhook's `value.messages`. */
export interface CloudMessage {
    readonly from: string;
    readonly id: string;
    readonly timestamp: string;
    readonly type: 'text' | 'interactive';
    readonly text?: {
        readonly body: string;
    };
    readonly context?: {
        readonly from: string;
        readonly id: string;
    };
    readonly interactive?: {
        readonly type: 'button_reply';
        readonly button_reply: {
            readonly id: string;
            readonly title: string;
        };
    };
}
/** The business number the simulated users write to. */
export interface Channel {
    readonly phoneNumberId: string;
    readonly displayPhone: string;
}
/** The default business number (the same as the test fixtures'). */
export declare const DEFAULT_CHANNEL: Channel;
/** A text message. */
export declare function textMessage(from: string, id: string, ts: number, body: string): CloudMessage;
/** A reply-button tap; `contextId` is the wamid of the message whose button was tapped. */
export declare function buttonTap(channel: Channel, from: string, id: string, ts: number, button: {
    id: string;
    title: string;
}, contextId: string | undefined): CloudMessage;
/**
 * A webhook body with one `messages` change from `channel`: the envelope, the change's
 * `messaging_product` and `metadata`, then `fields` (`contacts` and `messages`, or `statuses`).
 */
export declare function cloudWebhook(channel: Channel, fields: Record<string, unknown>): Record<string, unknown>;
/**
 * One webhook body carrying `messages` (all from the same business number), each sender with
 * a `contacts` entry whose profile name is `contactName`. The messages go in as they are: only
 * their `from` is read.
 */
export declare function webhookBody(channel: Channel, messages: readonly Pick<CloudMessage, 'from'>[], contactName?: string): Record<string, unknown>;
