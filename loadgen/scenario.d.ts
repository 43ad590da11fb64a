/**
 * The scenario: each simulated user walks the reference bot's `order` flow (SPEC section 5)
 * the way a person on a phone does, with optional chaos.
 *
 * | stage | the user sends | and waits for |
 * | --- | --- | --- |
 * | 1 | `hi` and their name (a burst: they do not wait for the name prompt) | the product prompt |
 * | 2 | a product button, with `context.id` = the product prompt they received | the address prompt |
 * | 3 | their address | the confirm prompt |
 * | 4 | `confirm` (or now and then `cancel`), with `context.id` = the confirm prompt | the closing text |
 *
 * Chaos (each optional): duplicate deliveries of a message (same wamid: together with the
 * original, right after its ack, or after the reply it caused), names and addresses split in two
 * texts, bursts delivered in shuffled order, and a burst's webhooks fired concurrently.
 * Timestamps are strictly increasing per user, so the order the user meant is always defined.
 * @module
 */
import type { WebhookClient } from './client.ts';
import { type Channel, type CloudMessage } from './payloads.ts';
import type { ReplySink } from './sink.ts';
import { type Random } from './stats.ts';
/** The products of the reference bot (SPEC section 5). */
export declare const ORDER_PRODUCTS: readonly [{
    readonly id: "sku_550e";
    readonly title: "Trail Shoe";
}, {
    readonly id: "sku_551a";
    readonly title: "Rain Jacket";
}, {
    readonly id: "sku_777b";
    readonly title: "Day Pack";
}];
/** What the user's order must say once the flow is done. */
export interface ExpectedOrder {
    readonly step: 'completed' | 'cancelled';
    readonly data: {
        readonly customer_name: string;
        readonly product_id: string;
        readonly shipping_address: string;
    };
}
/** Chaos switches. */
export interface ChaosOptions {
    /** Share (0..1) of messages delivered twice with the same wamid. */
    readonly duplicates: number;
    /** Deliver each burst in a shuffled order (needs Baton's buffer window to cover the burst). */
    readonly shuffle: boolean;
    /** Send the name and the address as two texts each (joined by Baton when batched). */
    readonly splitTexts: boolean;
    /** Fire a burst's webhooks at once instead of one after another's ack. */
    readonly concurrentBursts: boolean;
    /**
     * Share (0..1) of users who, once past the product prompt, tap another product on that old
     * prompt (the article's "button re-clicks"): Baton must answer with a notice and change nothing.
     */
    readonly retaps: number;
}
/** How a duplicate delivery is timed. */
export type DuplicateTiming = 'together' | 'after-ack' | 'after-reply';
/** One message the user means to send. */
interface Planned {
    readonly id: string;
    readonly ts: number;
    readonly duplicate: DuplicateTiming | null;
    /** Builds the message, given the wamid of the prompt whose button is tapped. */
    readonly build: (contextId: string | undefined) => CloudMessage;
}
interface Stage {
    /** The step whose prompt this stage's input must produce, or `stale notice`. */
    readonly due: string;
    readonly messages: readonly Planned[];
    /** The stage whose reply the buttons tap (default: the previous one). */
    readonly tapsReplyOf?: number;
    /** A stale button tap: the due reply is the notice answering it, and the state must not change. */
    readonly stale?: boolean;
}
/** Everything observed about one user, for the verdict. */
export interface UserTrace {
    readonly waId: string;
    readonly expected: ExpectedOrder;
    /** Every wamid the user sent (originals; duplicates share them). */
    readonly sentIds: string[];
    /** Wamids that Baton acknowledged with 200 at least once. */
    readonly ackedIds: Set<string>;
    /** Deliveries whose final answer was not 200, with that answer. */
    readonly rejected: {
        id: string;
        status: number;
        detail: string;
    }[];
    /** Steps whose reply was due and never came (the user stopped there). */
    readonly missingReplies: string[];
    /** Whether every due reply came. */
    completed: boolean;
    readonly plannedMessages: number;
}
/** Counters the progress display reads. */
export interface LiveCounters {
    deliveries: number;
    sent: number;
    acked: number;
    replies: number;
    usersDone: number;
}
/** What a user run needs. */
export interface DriverContext {
    readonly client: WebhookClient;
    readonly sink: ReplySink;
    readonly channel: Channel;
    readonly chaos: ChaosOptions;
    readonly replyTimeoutMs: number;
    readonly counters: LiveCounters;
    /** Webhook answer times, milliseconds (every delivery, duplicates included). */
    readonly ackMs: number[];
    /** Reply latencies, milliseconds (one per due reply that came). */
    readonly replyMs: number[];
    /** The same, by the step of the reply. */
    readonly replyMsByStep: Map<string, number[]>;
    readonly signal?: AbortSignal;
    /** `performance.now()` of the latest due reply. */
    lastReplyAt: number;
}
/** A user's plan: their id, what they will send, and what their order must end as. */
export interface UserPlan {
    readonly waId: string;
    readonly expected: ExpectedOrder;
    readonly stages: readonly Stage[];
}
/**
 * Plans user `index`'s conversation. `wamid` makes fresh message ids; `baseTs` is the Unix
 * second of the user's first message.
 */
export declare function planUser(index: number, waId: string, baseTs: number, chaos: ChaosOptions, channel: Channel, rnd: Random, wamid: () => string): UserPlan;
/** Runs one user's plan against Baton, recording what happened. */
export declare function runUser(plan: UserPlan, ctx: DriverContext, rnd: Random): Promise<UserTrace>;
export {};
