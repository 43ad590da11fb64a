/** How one webhook delivery went. */
export interface PostResult {
    /** The final HTTP status; 0 when no answer came (network error or timeout). */
    readonly status: number;
    /** Time from sending the final attempt to its answer, milliseconds. */
    readonly ms: number;
    /** `performance.now()` when the first attempt was sent. */
    readonly sentAt: number;
    readonly attempts: number;
    /** The answer's body (JSON text) or the network error. */
    readonly detail: string;
}
export interface WebhookClientOptions {
    /** Baton's base URL, e.g. `http://127.0.0.1:3000`. */
    readonly baseUrl: string;
    /** The Meta app secret; without one no signature header is sent. */
    readonly secret?: string | undefined;
    /** Requests in flight at most (default 64). */
    readonly maxInflight?: number;
    /** Re-deliveries after a retryable failure (default 3). */
    readonly retries?: number;
    /** Per-attempt timeout, milliseconds (default 30 s). */
    readonly timeoutMs?: number;
}
/**
 * A signed-webhook client for one Baton.
 *
 * @example
 * ```ts
 * const client = new WebhookClient({ baseUrl: 'http://127.0.0.1:3000', secret: 'app-secret' });
 * const r = await client.post(body); // r.status === 200 once Baton stored it
 * client.close();
 * ```
 */
export declare class WebhookClient {
    private readonly o;
    private readonly url;
    private readonly agent;
    private readonly gate;
    private readonly retries;
    private readonly timeoutMs;
    constructor(o: WebhookClientOptions);
    /** Delivers `body` (re-delivering as Meta would) and reports the final answer. */
    post(body: unknown): Promise<PostResult>;
    /**
     * Delivers `bodies` at the same moment: their slots are taken together, so a burst leaves
     * together even when the client is at its in-flight limit. Re-deliveries go one by one.
     */
    postAll(bodies: readonly unknown[]): Promise<PostResult[]>;
    private headers;
    private attempt;
    /** Re-delivers after a retryable answer, as Meta does, with backoff. */
    private retry;
    private once;
    /** Closes idle connections. */
    close(): void;
}
