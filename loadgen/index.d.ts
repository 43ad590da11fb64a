import { type Channel } from './payloads.ts';
import { type ChaosOptions } from './scenario.ts';
import { type ReplySink } from './sink.ts';
import { type LatencySummary } from './stats.ts';
import { type Verdict } from './verdict.ts';
export { startReplySink, parseCallback } from './sink.ts';
export type { CallbackData, ReplySink, ReplySinkOptions, SinkCall } from './sink.ts';
export type { ChaosOptions, ExpectedOrder } from './scenario.ts';
export type { Verdict } from './verdict.ts';
export type { LatencySummary } from './stats.ts';
export { DEFAULT_CHANNEL } from './payloads.ts';
export type { Channel } from './payloads.ts';
/** The target cannot be load-tested as asked (unreachable, admin token refused...). */
export declare class LoadError extends Error {
    readonly name = "LoadError";
}
/** Where a run stands, for a progress display. */
export interface LoadProgress {
    readonly phase: 'running' | 'settling' | 'judging';
    readonly elapsedMs: number;
    readonly users: number;
    readonly usersDone: number;
    /** Messages the scenario plans (duplicates aside). */
    readonly planned: number;
    readonly sent: number;
    readonly acked: number;
    /** Webhook deliveries, duplicates included. */
    readonly deliveries: number;
    /** Replies that were due and came, and how many will be due in all. */
    readonly replies: number;
    readonly repliesPlanned: number;
}
export interface LoadOptions {
    /** Baton's base URL, e.g. `http://127.0.0.1:3000`. */
    readonly url: string;
    /** Baton's `ADMIN_TOKEN`: the verdict reads sessions and transition logs through the admin API. */
    readonly adminToken: string;
    /** Baton's `WHATSAPP_APP_SECRET` (webhooks are signed with it); none: unsigned. */
    readonly secret?: string | undefined;
    /** Simulated users (default 50). */
    readonly users?: number;
    /** Chaos switches (default: none). */
    readonly chaos?: Partial<ChaosOptions>;
    /** Seed of the scenario's random choices (default: random). */
    readonly seed?: number;
    /** The business number users write to (default {@link DEFAULT_CHANNEL}). */
    readonly channel?: Channel;
    /** How long a user waits for a due reply before giving up (default 15 s). */
    readonly replyTimeoutMs?: number;
    /** Webhooks in flight at most (default 64). */
    readonly maxInflight?: number;
    /** Users start spread evenly over this window, milliseconds (default 0: all at once). */
    readonly rampMs?: number;
    /** After the last user is done: wait at most this long for Baton to drain (default 10 s). */
    readonly settleTimeoutMs?: number;
    /** ...and until the sink has been quiet this long (default 300 ms). */
    readonly quietMs?: number;
    /** A sink already running (Baton pointed at it); otherwise one is started on `sinkPort`. */
    readonly sink?: ReplySink;
    readonly sinkPort?: number;
    readonly sinkHost?: string;
    /** Called every `progressIntervalMs` (default 200) while running. */
    readonly onProgress?: (p: LoadProgress) => void;
    readonly progressIntervalMs?: number;
    readonly signal?: AbortSignal;
    /** Keep every latency sample in the report (default false). */
    readonly keepSamples?: boolean;
}
/** What a run measured and concluded. */
export interface LoadReport {
    readonly verdict: Verdict;
    /** From the first webhook to the last due reply, milliseconds. */
    readonly durationMs: number;
    /** Distinct messages acknowledged per second over `durationMs` (webhook in to reply out). */
    readonly messagesPerSec: number;
    /** Webhook answer times (every delivery, duplicates and re-deliveries included). */
    readonly ack: LatencySummary;
    /** From the webhook that made a reply due to that reply's arrival at the sink. */
    readonly reply: LatencySummary;
    readonly sinkUrl: string;
    readonly seed: number;
    /** Likely causes of a bad verdict that lie outside Baton (configuration). */
    readonly hints: readonly string[];
    /** Every sample, milliseconds, when `keepSamples` was set. */
    readonly samples?: {
        readonly ackMs: readonly number[];
        readonly replyMs: readonly number[];
        readonly replyMsByStep: Readonly<Record<string, readonly number[]>>;
    };
}
/**
 * Runs the scenario against the Baton at `options.url` and judges what it did.
 * @throws LoadError when Baton cannot be reached or refuses the admin token.
 */
export declare function runLoad(options: LoadOptions): Promise<LoadReport>;
