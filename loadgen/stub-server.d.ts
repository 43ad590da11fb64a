/**
 * What a local stand-in for the Graph API needs besides its own bookkeeping: a server that
 * hands each request its whole body and closes with its open connections, JSON answers, the
 * Graph route and Graph's answer bodies. The reply sink runs on it, and so does the tests'
 * fake Graph (`test/support/fake-graph.ts`).
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
/** `[/vXX.X]/{phoneNumberId}/messages`; group 1 is the (URL-encoded) phone number id. */
export declare const GRAPH_ROUTE: RegExp;
/** Answers `status` with `body` as JSON. */
export declare function answerJson(res: ServerResponse, status: number, body: unknown, headers?: Readonly<Record<string, string>>): void;
/**
 * Graph's answer to an accepted send: the recipient as the request named it (`to`: a phone
 * number, echoed as `wa_id` without its `+`; `recipient`: a business-scoped user id) and the
 * new message's id.
 */
export declare function graphAccepted(id: string, address: {
    readonly to: string;
} | {
    readonly recipient: string;
}): Record<string, unknown>;
/** What a Graph error body says besides its message; each part is left out when not given. */
export interface GraphErrorParts {
    /** `error.code`. */
    readonly code?: number | undefined;
    /** `error.error_data.details`. */
    readonly details?: string;
    /** `error.fbtrace_id`. */
    readonly trace?: string;
}
/** A Graph error body: `{error: {message, type: 'OAuthException', code, error_data, fbtrace_id}}`. */
export declare function graphError(message: string, parts?: GraphErrorParts): Record<string, unknown>;
/** Options of {@link startStubServer}. */
export interface StubServerOptions {
    /** Default 127.0.0.1 (loopback). */
    readonly host?: string;
    /** Default 0: any free port. */
    readonly port?: number;
    /** Idle keep-alive connections are closed after this long; default Node's. */
    readonly keepAliveTimeoutMs?: number;
}
/** A listening stub server. */
export interface StubServer {
    /** `http://host:port`. */
    readonly url: string;
    readonly port: number;
    /** Stops listening and destroys the open connections. */
    close(): Promise<void>;
}
/**
 * Starts an HTTP server that calls `handle` with each request's whole body.
 *
 * @example
 * ```ts
 * const stub = await startStubServer((_req, res) => answerJson(res, 200, { ok: true }));
 * await stub.close();
 * ```
 */
export declare function startStubServer(handle: (req: IncomingMessage, res: ServerResponse, raw: Buffer) => void, options?: StubServerOptions): Promise<StubServer>;
