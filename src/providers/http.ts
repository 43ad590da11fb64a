/**
 * The HTTP plumbing gateway senders share: one JSON POST with a timeout, a gateway API's
 * settings held once ({@link JsonApi}), `Retry-After` parsing, and the mapping of transport
 * failures to retryable {@link SendError}s.
 *
 * Sends go through one keep-alive connection pool per gateway origin (undici's `Pool`, the
 * client under Node's own `fetch`, called without the WHATWG streams and objects `fetch`
 * builds for every request): a send reuses a warm connection and costs little CPU. An injected
 * `fetch` replaces the pool.
 * @module
 */
import { Pool, type Dispatcher } from 'undici';
import type { SendOptions } from './types.ts';
import { SendError } from '../errors.ts';

/** The `fetch` signature senders use; injectable for tests. */
export type FetchFn = typeof fetch;

/** How long an idle pooled connection is kept open, ms (gateways close theirs after a few seconds). */
const KEEP_ALIVE_MS = 4_000;

/** A request's options with its last check before it is written (see `SendOptions.mayStart`). */
type CheckedOptions = Dispatcher.DispatchOptions & { readonly mayStart?: () => boolean };

/** Refused by `mayStart`: nothing was written. */
class NotStarted extends Error {}

/**
 * A keep-alive pool that asks a request's `mayStart` when the request is about to be written to
 * its connection (undici's `onConnect`, right before the write), not when it is queued: opening
 * a connection can take seconds (a gateway's accept queue full: SYNs retried after 1, 2, 4 s),
 * and a worker whose lease lapsed meanwhile sent a reply after the replies a newer holder had
 * sent (outside test QA57-F1: a name prompt 3 s after the confirmation).
 */
class CheckedPool extends Pool {
  override dispatch(options: CheckedOptions, handler: Dispatcher.DispatchHandler): boolean {
    const mayStart = options.mayStart;
    const onConnect = handler.onConnect?.bind(handler);
    if (mayStart !== undefined && onConnect !== undefined) {
      handler.onConnect = (abort) => {
        if (mayStart()) onConnect(abort);
        else abort(new NotStarted('not started: its check (the lease) refused it at the last moment'));
      };
    }
    return super.dispatch(options, handler);
  }
}

/** The keep-alive pools of this process, one per origin, shared by every sender. */
const pools = new Map<string, Pool>();

/** The pool of `origin` (`https://graph.facebook.com`), created on first use. */
function poolFor(origin: string): Pool {
  let pool = pools.get(origin);
  if (pool === undefined) {
    pool = new CheckedPool(origin, { keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: 60_000 });
    pools.set(origin, pool);
  }
  return pool;
}

/** The response headers a sender reads. */
export interface ResponseHeaders {
  /** The header's value (the first one, if repeated), or null. */
  get(name: string): string | null;
}

/** Default time a send may take, connection and response included. */
export const DEFAULT_SEND_TIMEOUT_MS = 30_000;

/** What came back from a POST that reached the server. */
export interface JsonResponse {
  readonly status: number;
  readonly headers: ResponseHeaders;
  /** The parsed JSON body, or `undefined` when the body is empty or not JSON. */
  readonly json: unknown;
}

/** Options of {@link postJson}. */
export interface PostJsonOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: unknown;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  /** See `SendOptions.mayStart`. */
  readonly mayStart?: (() => boolean) | undefined;
  /** Sends with this `fetch` instead of the keep-alive pool of the URL's origin. */
  readonly fetch?: FetchFn | undefined;
  /** Names the request in error details, e.g. `POST /123/messages`; never holds secrets. */
  readonly label: string;
}

/**
 * POSTs `body` as JSON. Resolves with any HTTP answer, whatever its status; rejects only with
 * a retryable {@link SendError} (`httpStatus` 0) when no answer arrived: connection refused or
 * reset, DNS failure, timeout, or abort by `signal`.
 */
export async function postJson(url: string, options: PostJsonOptions): Promise<JsonResponse> {
  const deadline = stallSafeTimeout(options.timeoutMs);
  const timeout = deadline.signal;
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
  const headers = { 'content-type': 'application/json', accept: 'application/json', ...options.headers };
  const body = JSON.stringify(options.body);
  try {
    if (options.fetch !== undefined) {
      if (options.mayStart?.() === false) throw new NotStarted('not started: its check refused it');
      const res = await options.fetch(url, { method: 'POST', headers, body, signal });
      const text = await res.text();
      return { status: res.status, headers: res.headers, json: parseJsonOrUndefined(text) };
    }
    const { origin, pathname, search } = new URL(url);
    // The check rides on the options, which undici hands to `dispatch` as they are.
    const request: Dispatcher.RequestOptions & CheckedOptions = {
      method: 'POST',
      path: `${pathname}${search}`,
      headers,
      body,
      signal,
      ...(options.mayStart !== undefined ? { mayStart: options.mayStart } : {}),
    };
    const res = await poolFor(origin).request(request);
    const text = await res.body.text();
    const raw = res.headers;
    const get = (name: string): string | null => {
      const v = raw[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v;
    };
    return { status: res.statusCode, headers: { get }, json: parseJsonOrUndefined(text) };
  } catch (err) {
    const notStarted = err instanceof NotStarted;
    const why = notStarted
      ? err.message
      : timeout.aborted
        ? `timed out after ${options.timeoutMs} ms`
        : options.signal?.aborted === true
          ? 'aborted'
          : describeNetworkError(err);
    // Refused before anything was sent: nothing reached the gateway. Otherwise (a timeout, a
    // connection lost mid-request) it may have been delivered.
    const neverSent =
      notStarted ||
      ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH'].includes(
        codeOf((err as { cause?: unknown } | null)?.cause) ?? codeOf(err) ?? '',
      );
    const error = new SendError(`${options.label} failed: ${why}`, {
      retryable: true,
      httpStatus: 0,
      unknownOutcome: !notStarted && (timeout.aborted || !neverSent),
    });
    error.cause = err;
    throw error;
  } finally {
    deadline.clear();
  }
}

/**
 * A send's timeout that a stalled process does not turn into a false failure. Node runs timers
 * before the poll phase that reads sockets, so a process that woke from a stall longer than the
 * timeout (starved of CPU, a long synchronous step) gave up on sends whose answers were already
 * in its socket, and sent them again: a reply Graph had answered at once reached the user twice
 * (outside test QA30-F2). When it fires, this one lets one poll phase read the sockets first; a
 * gateway that does not answer is given up on one event-loop turn later.
 */
function stallSafeTimeout(ms: number): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    setImmediate(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')));
  }, ms);
  timer.unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/** What every sender takes besides its base URL and credentials. */
export interface HttpSendOptions {
  /** Per-request timeout; default 30 s. */
  readonly timeoutMs?: number;
  /** Injectable `fetch`; default a keep-alive connection pool per gateway origin. */
  readonly fetch?: FetchFn;
  /** Clock for `Retry-After` dates, epoch milliseconds; default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A gateway's JSON API as a sender calls it: base URL (trailing slashes dropped), bearer token
 * (an empty one counts as none), timeout, `fetch` and clock, settled once.
 *
 * @example
 * ```ts
 * const api = new JsonApi('https://graph.facebook.com/v21.0', token, {});
 * const res = await api.post('/123/messages', 'POST /123/messages', body, { signal });
 * ```
 */
export class JsonApi {
  readonly #baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: FetchFn | undefined;
  /** The clock for `Retry-After` dates, epoch milliseconds. */
  readonly now: () => number;

  constructor(baseUrl: string, token: string | undefined, options: HttpSendOptions) {
    this.#baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = token === '' ? undefined : token;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
    this.#fetch = options.fetch;
    this.now = options.now ?? Date.now;
  }

  /** {@link postJson} of `body` to `{baseUrl}{path}`, with the bearer token when there is one. */
  post(path: string, label: string, body: unknown, options: SendOptions = {}): Promise<JsonResponse> {
    return postJson(`${this.#baseUrl}${path}`, {
      headers: this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` },
      body,
      timeoutMs: this.#timeoutMs,
      signal: options.signal,
      mayStart: options.mayStart,
      fetch: this.#fetch,
      label,
    });
  }
}

/** The permanent {@link SendError} for a 2xx answer without the message id (`field`). */
export function missingMessageId(label: string, status: number, field: string): SendError {
  return new SendError(`${label} answered HTTP ${status} without ${field}`, {
    retryable: false,
    httpStatus: status,
  });
}

function parseJsonOrUndefined(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The system error code of `e` (`ECONNREFUSED`), if it has one. */
function codeOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string'
    ? e.code
    : undefined;
}

/**
 * A short description of a transport failure, with the system error code when Node gives one
 * (on the error itself from the pool, on its `cause` from `fetch`).
 */
function describeNetworkError(err: unknown): string {
  if (!(err instanceof Error)) return 'network error';
  const code = codeOf(err.cause) ?? codeOf(err);
  return code === undefined ? `network error (${err.message})` : `network error (${code})`;
}

/**
 * A `Retry-After` header value in milliseconds: delta-seconds (`"2"`, `"1.5"`) or an HTTP date.
 * A date in the past gives 0. Anything else gives `undefined`.
 *
 * @example
 * ```ts
 * parseRetryAfter('3'); // 3000
 * ```
 */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed.length === 0) return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  // HTTP dates start with a day name (IMF-fixdate, RFC 850 and asctime forms alike).
  const at = /^[A-Za-z]+,?\s/.test(trimmed) ? Date.parse(trimmed) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Whether an HTTP status says "try again later" by itself. */
export function isRetryableHttpStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
