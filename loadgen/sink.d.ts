/** `biz_opaque_callback_data` as Baton writes it: `baton:<flow>:<step>:<version>[:<wamid>]`. */
export interface CallbackData {
    readonly flow: string;
    readonly step: string;
    readonly version: number;
    /** The inbound message a notice answers without a state change (stale input), if any. */
    readonly inReplyTo?: string;
}
/** Parses Baton's `biz_opaque_callback_data`; `null` when it is not in that shape. */
export declare function parseCallback(value: unknown): CallbackData | null;
/** One reply the sink accepted. */
export interface SinkCall {
    /** 1-based arrival order over the sink's life. */
    readonly seq: number;
    /** `performance.now()` at arrival (same clock as the load generator's send times). */
    readonly at: number;
    readonly phoneNumberId: string;
    /** The recipient (`to`, or `recipient` for a BSUID). */
    readonly to: string;
    /** The raw `biz_opaque_callback_data`. */
    readonly callbackData: string | undefined;
    /** It parsed, or `null`. */
    readonly callback: CallbackData | null;
    /** The wamid the sink answered with: a button tap on this message names it as `context.id`. */
    readonly providerMessageId: string;
    /** `text` or `interactive`. */
    readonly type: string | undefined;
    /** Reply-button ids of an interactive message (empty otherwise). */
    readonly buttonIds: readonly string[];
}
/** Options of {@link startReplySink}. */
export interface ReplySinkOptions {
    /** Default 127.0.0.1 (loopback). */
    readonly host?: string;
    /** Default 0: any free port. */
    readonly port?: number;
}
/** A running sink. */
export interface ReplySink {
    /** `http://host:port`: what Baton's `WHATSAPP_API_BASE_URL` must be. */
    readonly url: string;
    readonly port: number;
    /** Every accepted reply, in arrival order. */
    readonly calls: readonly SinkCall[];
    /** Requests refused (no route, not JSON, no recipient). */
    readonly refused: number;
    /** The replies sent to `to`, in arrival order. */
    callsTo(to: string): readonly SinkCall[];
    /**
     * Resolves with the first reply to `to`, at index `from` or later of {@link ReplySink.callsTo},
     * that matches; `null` after `timeoutMs` (or at once when `signal` aborts).
     */
    waitFor(to: string, match: (call: SinkCall) => boolean, from: number, timeoutMs: number, signal?: AbortSignal): Promise<SinkCall | null>;
    /** `performance.now()` of the latest reply, or `null` before any. */
    lastAt(): number | null;
    close(): Promise<void>;
}
/**
 * Starts a sink on `host:port`.
 *
 * @example
 * ```ts
 * const sink = await startReplySink();
 * console.log(`WHATSAPP_API_BASE_URL=${sink.url}`);
 * ```
 */
export declare function startReplySink(options?: ReplySinkOptions): Promise<ReplySink>;
