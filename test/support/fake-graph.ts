/**
 * A real HTTP fake of the two send APIs Baton talks to, for tests, the simulator and the bench:
 *
 * - Graph: `POST [/vXX.X]/{phoneNumberId}/messages` answers like the Cloud API
 *   (`{messaging_product, contacts: [{input, wa_id}], messages: [{id: 'wamid.fake.<n>'}]}`, with
 *   `input` the `to` as sent, `+15550001111`, and `wa_id` its digits, `15550001111`);
 * - WASender: `POST /api/send-message` answers `{success: true, data: {msgId, jid, status}}`.
 *
 * Every POST is recorded. Failures are scripted with {@link FakeGraph.failNext}; waiting is
 * event based ({@link FakeGraph.waitFor}), never a sleep loop.
 *
 * @example
 * ```ts
 * const fake = await startFakeGraph();
 * fake.failNext(1, { status: 429, retryAfter: 1 });
 * const sender = new CloudApiSender({ baseUrl: fake.url, accessToken: 't' });
 * // ... first send throws a retryable SendError, the second one lands:
 * const call = await fake.waitFor((c) => c.body.to === '+15550001111', 5_000);
 * await fake.close();
 * ```
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import {
  answerJson,
  GRAPH_ROUTE,
  graphAccepted,
  graphError,
  startStubServer,
} from '../../loadgen/stub-server.ts';

/** A scripted failure for one request. */
export interface FailureSpec {
  /** HTTP status to answer (ignored when `network` is set). */
  readonly status: number;
  /** Graph `error.code` (Graph route) to put in the error body; omitted when not given. */
  readonly graphCode?: number;
  /** Error message; a default is derived from the status/code. */
  readonly message?: string;
  /** `Retry-After` header value: seconds, or an HTTP date string. Also `retry_after` on WASender. */
  readonly retryAfter?: number | string;
  /** A whole response body to send instead of the generated error body. */
  readonly body?: unknown;
  /** Wait this long before answering (to exercise client timeouts). */
  readonly delayMs?: number;
  /** `'reset'`: destroy the connection without any answer (a network error for the client). */
  readonly network?: 'reset';
  /**
   * Only a request to this user fails; others pass it by. Keeps a test's scripted failure from
   * being used by a send another test left behind. The user as Meta identifies them: the wa_id
   * (`15550001111` for a body's `to: '+15550001111'`; `to` exactly as sent matches too) or a
   * BSUID `recipient`.
   */
  readonly to?: string;
}

/** The JSON a client POSTed; the fields Baton's senders use are typed, the rest kept. */
export interface FakeSendBody {
  readonly messaging_product?: string;
  readonly recipient_type?: string;
  readonly to?: string;
  readonly recipient?: string;
  readonly type?: string;
  readonly text?: string | { readonly body: string; readonly preview_url?: boolean };
  readonly interactive?: {
    readonly type: string;
    readonly body?: { readonly text: string };
    readonly action?: {
      readonly button?: string;
      readonly buttons?: ReadonlyArray<{
        readonly type: string;
        readonly reply: { readonly id: string; readonly title: string };
      }>;
      readonly sections?: ReadonlyArray<{
        readonly title?: string;
        readonly rows: ReadonlyArray<{
          readonly id: string;
          readonly title: string;
          readonly description?: string;
        }>;
      }>;
    };
  };
  readonly biz_opaque_callback_data?: string;
  readonly [key: string]: unknown;
}

/** One recorded POST and how the fake answered it. */
export interface RecordedCall {
  /** 1-based order of arrival over all requests. */
  readonly seq: number;
  readonly route: 'graph' | 'wasender';
  readonly path: string;
  /** The `{phoneNumberId}` of a Graph call. */
  readonly phoneNumberId?: string;
  readonly headers: IncomingHttpHeaders;
  /** Parsed JSON body (`{}` when it was not a JSON object; see `raw`). */
  readonly body: FakeSendBody;
  readonly raw: string;
  /** Epoch milliseconds at arrival. */
  readonly at: number;
  /** HTTP status answered; 0 when the connection was reset on purpose. */
  readonly status: number;
  /** Whether the answer was 2xx (then the call is also in `sent`). */
  readonly ok: boolean;
  /** `wamid.fake.<n>` (Graph) or the numeric msgId as a string (WASender) when accepted. */
  readonly providerMessageId?: string;
}

/** Options of {@link startFakeGraph}. */
export interface FakeGraphOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** When set, Graph calls without `Authorization: Bearer <token>` get 401 (Graph code 190). */
  readonly accessToken?: string;
}

/** A running fake. */
export interface FakeGraph {
  /** `http://host:port`, to use as `WHATSAPP_API_BASE_URL` or `WASENDER_API_BASE_URL`. */
  readonly url: string;
  /**
   * Every POST, failed ones included, in the order they were answered (`seq` is arrival order;
   * they differ only with `delayMs`). A delayed answer is recorded even if the client has gone
   * by then: like Graph, the fake "sent" it.
   */
  readonly requests: readonly RecordedCall[];
  /** The accepted sends only, in answer order: what the user would receive. */
  readonly sent: readonly RecordedCall[];
  /** Makes the next `n` requests (either route) fail as `spec` says. Calls queue up. */
  failNext(n: number, spec: FailureSpec): void;
  /** Resolves with the first accepted send matching `predicate` (past or future); rejects after `timeoutMs`. */
  waitFor(predicate: (call: RecordedCall) => boolean, timeoutMs?: number): Promise<RecordedCall>;
  /** Like {@link FakeGraph.waitFor}, over every request, failed ones included. */
  waitForRequest(predicate: (call: RecordedCall) => boolean, timeoutMs?: number): Promise<RecordedCall>;
  /**
   * Resolves with the body of the first request matching `predicate` as soon as it arrives,
   * before it is answered (a scripted `delayMs` holds the answer, not this); past ones count.
   */
  waitForArrival(predicate: (body: FakeSendBody) => boolean, timeoutMs?: number): Promise<FakeSendBody>;
  /** Resolves once `count` sends have been accepted in total. */
  waitForSent(count: number, timeoutMs?: number): Promise<readonly RecordedCall[]>;
  /** Forgets recorded calls and scripted failures (message numbering continues). */
  reset(): void;
  close(): Promise<void>;
}

const WASENDER_ROUTE = '/api/send-message';
const DEFAULT_WAIT_MS = 5_000;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whom a request is for, as Meta identifies the user: `to` without its `+` (the wa_id), or `recipient`. */
function userOf(body: FakeSendBody): string | undefined {
  return typeof body.to === 'string' ? body.to.replace(/^\+/, '') : body.recipient;
}

/** `messages[0].id` (Graph) or `data.msgId` (WASender) of a scripted body, if it has one. */
function scriptedMessageId(body: unknown): string | undefined {
  if (!isRecord(body)) return undefined;
  const first: unknown = Array.isArray(body.messages) ? body.messages[0] : undefined;
  if (isRecord(first) && typeof first.id === 'string') return first.id;
  const data = body.data;
  if (isRecord(data) && (typeof data.msgId === 'number' || typeof data.msgId === 'string'))
    return String(data.msgId);
  return undefined;
}

function defaultMessage(spec: FailureSpec): string {
  switch (spec.graphCode) {
    case 130429:
      return '(#130429) Rate limit hit';
    case 131056:
      return '(#131056) (Business Account, Consumer Account) pair rate limit hit';
    case 131047:
      return '(#131047) Re-engagement message';
    case 80007:
      return '(#80007) Rate limit issues';
    case 4:
      return '(#4) Application request limit reached';
    default:
      return spec.status >= 500
        ? 'An unexpected error has occurred. Please retry your request later.'
        : 'Fake failure';
  }
}

/**
 * Starts the fake on a free port.
 *
 * @example
 * ```ts
 * const fake = await startFakeGraph({ accessToken: 'test-token' });
 * ```
 */
export async function startFakeGraph(options: FakeGraphOptions = {}): Promise<FakeGraph> {
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const requests: RecordedCall[] = [];
  const sent: RecordedCall[] = [];
  const failures: FailureSpec[] = [];
  const arrivals: FakeSendBody[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let seq = 0;
  let graphIds = 0;
  let wasenderIds = 100_000;

  function record(call: RecordedCall): void {
    requests.push(call);
    if (call.ok) sent.push(call);
    events.emit('request', call);
  }

  function failureBody(route: RecordedCall['route'], spec: FailureSpec): unknown {
    if (spec.body !== undefined) return spec.body;
    const message = spec.message ?? defaultMessage(spec);
    if (route === 'wasender') {
      return {
        success: false,
        message,
        ...(typeof spec.retryAfter === 'number' ? { retry_after: spec.retryAfter } : {}),
      };
    }
    return graphError(message, { code: spec.graphCode, details: message, trace: 'AfakeTrace' });
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const graphMatch = GRAPH_ROUTE.exec(path);
    const route: RecordedCall['route'] | undefined =
      path === WASENDER_ROUTE ? 'wasender' : graphMatch === null ? undefined : 'graph';
    if (req.method !== 'POST' || route === undefined) {
      answerJson(res, 404, { error: { message: `no route ${req.method ?? ''} ${path}`, code: 803 } });
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    const body: FakeSendBody = isRecord(parsed) ? parsed : {};
    const base = {
      seq: ++seq,
      route,
      path,
      ...(graphMatch?.[1] === undefined ? {} : { phoneNumberId: decodeURIComponent(graphMatch[1]) }),
      headers: req.headers,
      body,
      raw,
      at: Date.now(),
    };

    arrivals.push(body);
    events.emit('arrival', body);
    const at = failures.findIndex((f) => f.to === undefined || f.to === body.to || f.to === userOf(body));
    const spec = at < 0 ? undefined : failures.splice(at, 1)[0];
    if (spec !== undefined) {
      const respond = (): void => {
        if (spec.network === 'reset') {
          record({ ...base, status: 0, ok: false });
          req.socket.destroy();
          return;
        }
        // A scripted 2xx (e.g. a slow success) counts as accepted, like any other 2xx.
        const ok = spec.status >= 200 && spec.status < 300;
        const id = ok ? scriptedMessageId(spec.body) : undefined;
        record({ ...base, status: spec.status, ok, ...(id === undefined ? {} : { providerMessageId: id }) });
        const headers: Record<string, string> =
          spec.retryAfter === undefined ? {} : { 'retry-after': String(spec.retryAfter) };
        answerJson(res, spec.status, failureBody(route, spec), headers);
      };
      if (spec.delayMs === undefined) respond();
      else {
        const timer = setTimeout(() => {
          timers.delete(timer);
          respond();
        }, spec.delayMs);
        timers.add(timer);
      }
      return;
    }

    if (route === 'graph') {
      if (
        options.accessToken !== undefined &&
        req.headers.authorization !== `Bearer ${options.accessToken}`
      ) {
        record({ ...base, status: 401, ok: false });
        answerJson(res, 401, graphError('Invalid OAuth access token.', { code: 190, trace: 'AfakeTrace' }));
        return;
      }
      const to = typeof body.to === 'string' ? body.to : undefined;
      const recipient = typeof body.recipient === 'string' ? body.recipient : undefined;
      if (body.messaging_product !== 'whatsapp' || (to === undefined && recipient === undefined)) {
        record({ ...base, status: 400, ok: false });
        answerJson(
          res,
          400,
          graphError('(#100) Invalid parameter', {
            code: 100,
            details: 'messaging_product and to/recipient are required',
          }),
        );
        return;
      }
      const id = `wamid.fake.${++graphIds}`;
      record({ ...base, status: 200, ok: true, providerMessageId: id });
      answerJson(res, 200, graphAccepted(id, to === undefined ? { recipient: recipient! } : { to }));
      return;
    }

    const msgId = ++wasenderIds;
    record({ ...base, status: 200, ok: true, providerMessageId: String(msgId) });
    answerJson(res, 200, { success: true, data: { msgId, jid: body.to, status: 'in_progress' } });
  }

  const server = await startStubServer((req, res, raw) => handle(req, res, raw.toString('utf8')), {
    host: options.host,
    port: options.port,
  });

  function waitOn(
    pool: () => readonly RecordedCall[],
    predicate: (call: RecordedCall) => boolean,
    timeoutMs: number,
    acceptedOnly: boolean,
  ): Promise<RecordedCall> {
    const found = pool().find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onRequest = (call: RecordedCall): void => {
        if ((acceptedOnly && !call.ok) || !predicate(call)) return;
        clearTimeout(timer);
        events.off('request', onRequest);
        resolve(call);
      };
      const timer = setTimeout(() => {
        events.off('request', onRequest);
        reject(
          new Error(
            `fake graph: no ${acceptedOnly ? 'accepted send' : 'request'} matched within ${timeoutMs} ms ` +
              `(${requests.length} requests, ${sent.length} accepted)`,
          ),
        );
      }, timeoutMs);
      events.on('request', onRequest);
    });
  }

  return {
    url: server.url,
    requests,
    sent,
    failNext(n, spec) {
      for (let i = 0; i < n; i += 1) failures.push(spec);
    },
    waitFor(predicate, timeoutMs = DEFAULT_WAIT_MS) {
      return waitOn(() => sent, predicate, timeoutMs, true);
    },
    waitForRequest(predicate, timeoutMs = DEFAULT_WAIT_MS) {
      return waitOn(() => requests, predicate, timeoutMs, false);
    },
    waitForArrival(predicate, timeoutMs = DEFAULT_WAIT_MS) {
      const past = arrivals.find(predicate);
      if (past !== undefined) return Promise.resolve(past);
      return new Promise<FakeSendBody>((resolve, reject) => {
        const onArrival = (body: FakeSendBody): void => {
          if (!predicate(body)) return;
          clearTimeout(timer);
          events.off('arrival', onArrival);
          resolve(body);
        };
        const timer = setTimeout(() => {
          events.off('arrival', onArrival);
          reject(new Error(`fake graph: no request arrived matching within ${timeoutMs} ms`));
        }, timeoutMs);
        events.on('arrival', onArrival);
      });
    },
    async waitForSent(count, timeoutMs = DEFAULT_WAIT_MS) {
      if (sent.length < count) {
        await waitOn(
          () => [],
          () => sent.length >= count,
          timeoutMs,
          true,
        );
      }
      return sent.slice(0, count);
    },
    reset() {
      requests.length = 0;
      sent.length = 0;
      arrivals.length = 0;
      failures.length = 0;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      events.removeAllListeners();
      await server.close();
    },
  };
}
