/**
 * The HTTP layer: webhook routes, health, metrics and the admin API. `buildServer` returns
 * a Fastify instance without listening, so tests can `inject()` or listen on port 0.
 * @module
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { isUtf8 } from 'node:buffer';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WRITE_FAILURE_HOLD_MS, type Backend } from '../backends/types.ts';
import type { TrustProxy } from '../config/index.ts';
import { BatonError, ERROR_CODES, ERROR_DETAIL_MAX, type ErrorCode } from '../errors.ts';
import { clip } from '../flow/replies.ts';
import type { IntakeTracker } from '../engine/intake-gate.ts';
import { metricsRoute, type Metrics } from '../metrics.ts';
import type { Provider, SkippedItem } from '../providers/index.ts';
import type { QueuedWebhook } from './amqp-intake.ts';
import { dropPipelinedTooFar, guardConnections, limitPipelining } from './connection-guard.ts';
import { KnownSenders } from './known-senders.ts';
import { LARGE_BODIES_BUDGET, limitLargeBodies } from './body-budget.ts';
import { keepUnreadable, unreadableLetters } from './unreadable.ts';
import { registerAdmin, type AdminDeps } from '../admin/api.ts';
import { registerDashboard } from '../admin/dashboard.ts';
import { safeEqual } from '../admin/auth.ts';
import { adminErrorHandler, parsed } from '../admin/http.ts';
import { HandshakeQuery, zodCompiler } from '../admin/schemas.ts';
import { LogLimiter } from '../log-limit.ts';

/** Most bytes of a refused body read and dropped so that its sender gets the 413 (see drainBody). */
const DRAIN_LIMIT = 64 * 1024 * 1024;

/** A refused body still coming this long after the refusal is not waited for any longer (ms). */
const DRAIN_WAIT_MS = 3_000;

/**
 * Reads what is left of a request body and drops it, so that a client still writing gets the
 * answer. Resolves `drained` at its end; `now` at once when its declared length is over `limit`,
 * or when it is still coming after {@link DRAIN_WAIT_MS} (a slow sender of a body it declared too
 * big got 408 after 30 s instead of 413: outside test QA1-3): the caller answers and closes the
 * connection; `failed` (the connection destroyed) past `limit` bytes read or when the request fails.
 */
function drainBody(raw: IncomingMessage, limit: number): Promise<'drained' | 'now' | 'failed'> {
  // Declared too big to drain: answered at once (a client that watches for an early answer, as
  // curl does, gets it; one still writing may see the connection reset).
  if (raw.complete) return Promise.resolve('drained');
  if (Number(raw.headers['content-length'] ?? 0) > limit) return Promise.resolve('now');
  return new Promise((resolve) => {
    let read = 0;
    const timer = setTimeout(() => finish('now'), DRAIN_WAIT_MS);
    const finish = (how: 'drained' | 'now' | 'failed'): void => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('error', onError);
      raw.off('close', onError);
      if (how === 'failed') raw.socket.destroy();
      resolve(how);
    };
    const onData = (chunk: Buffer): void => {
      read += chunk.length;
      if (read > limit) finish('failed');
    };
    const onEnd = (): void => finish('drained');
    const onError = (): void => finish(raw.complete ? 'drained' : 'failed');
    raw.on('data', onData);
    raw.on('end', onEnd);
    raw.on('error', onError);
    raw.on('close', onError);
    raw.resume();
  });
}

/** Meta sends up to 3 MB; anything above 4 MiB is refused with 413. */
export const BODY_LIMIT = 4 * 1024 * 1024;

/** HTTP limits (SPEC section 3). */
export interface HttpLimits {
  /** A request (headers and body) not complete within this is answered 408 and closed. */
  readonly requestTimeoutMs: number;
  /** Headers not complete within this: 408 and closed. */
  readonly headersTimeoutMs: number;
  /** How often open connections are checked against the two timeouts above. */
  readonly checkIntervalMs: number;
  /** Connections open at once; more are refused at accept until some close. */
  readonly maxConnections: number;
  /** Connections one address may hold (not behind a trusted proxy); see connection-guard.ts. */
  readonly maxPerAddress: number;
  /** Near the cap, connections without complete request headers this long are closed. */
  readonly slowHeadersMs: number;
  /** Near the cap, requests whose body is not complete this long after their headers are closed. */
  readonly slowBodyMs: number;
  /** Bytes of large bodies received at once; see body-budget.ts. */
  readonly largeBodiesBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  checkIntervalMs: 1_000,
  maxConnections: 1_024,
  maxPerAddress: 512,
  slowHeadersMs: 1_000,
  slowBodyMs: 2_000,
  largeBodiesBytes: LARGE_BODIES_BUDGET,
};

export interface ServerDeps extends AdminDeps {
  readonly backend: Backend;
  /** Told of webhooks from their headers until stored, so batches wait for them (see IntakeGate). */
  readonly intake?: IntakeTracker;
  /** The process is stopping (`BATON_DRAIN_MS`): `/readyz` answers 503, answers close their connections. */
  readonly draining?: () => boolean;
  /** The clock the stores use (tests inject one): webhooks' arrival times are read from it. */
  readonly now?: () => number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly providers: { readonly whatsapp: Provider; readonly wasender: Provider };
  readonly verifyToken: string | undefined;
  /** Defaults: {@link DEFAULT_HTTP_LIMITS}. */
  readonly limits?: Partial<HttpLimits>;
  /**
   * The RabbitMQ intake (`AMQP_URL`): webhooks are queued there (answered once RabbitMQ
   * confirms) instead of stored here; consumers store them.
   */
  readonly queue?: { publish(w: QueuedWebhook): Promise<void>; readonly connected: boolean };
  /**
   * Believe a proxy's `X-Forwarded-*` headers (BATON_TRUST_PROXY): so many hops, or these
   * proxies' addresses. Default false.
   */
  readonly trustProxy?: TrustProxy;
  /**
   * Where a gateway configured without a secret takes webhooks from: `loopback` (the default:
   * this machine only, so `npm start` and `baton simulate` work and nobody else can write to a
   * user's session) or `anywhere` (BATON_ALLOW_UNSIGNED=true).
   */
  readonly unsignedFrom?: 'loopback' | 'anywhere';
}

const UNSIGNED_REMOTE =
  "WHATSAPP_APP_SECRET is not set: unsigned webhooks are taken from a loopback address (127.0.0.1, ::1), addressed to a loopback name (localhost, 127.0.0.1), only: not from this machine's other addresses nor through a proxy (set the app secret, or BATON_ALLOW_UNSIGNED=true)";

/**
 * A request made on this machine, directly: its connection comes from a loopback address, it
 * names a loopback host, and it was relayed by no proxy. A request that carries forwarding
 * headers came through one (a local nginx in front of Baton makes every client's connection look
 * local), whoever its client was; and a header is no evidence either way, since a direct client
 * can write it (BATON_TRUST_PROXY believes them by position). A proxy that adds none (nginx's
 * default `proxy_pass`: outside test QA64-F2) still shows: it speaks HTTP/1.0 to Baton unless told
 * otherwise, and passes the public name it was reached by, or its upstream's name, as `Host`.
 */
function fromThisMachine(req: FastifyRequest): boolean {
  const h = req.headers;
  return (
    isLoopback(req.socket.remoteAddress) &&
    req.raw.httpVersion !== '1.0' &&
    isLoopbackHost(h.host) &&
    // A second Host (Node keeps the first), or a request line naming a host (a proxy's absolute
    // form): not a request made here directly (outside test QA76-F7).
    req.raw.rawHeaders.filter((name, i) => i % 2 === 0 && name.toLowerCase() === 'host').length === 1 &&
    !/^[a-z][a-z\d+.-]*:/i.test(req.raw.url ?? '') &&
    PROXY_HEADERS.every((name) => h[name] === undefined) &&
    !Object.keys(h).some((name) => PROXY_HEADER_PREFIXES.some((prefix) => name.startsWith(prefix)))
  );
}

/** A `Host` header naming this machine's loopback: `localhost` (or a name under it), 127/8, ::1. */
function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host
    .trim()
    .toLowerCase()
    .replace(/:\d*$/, '')
    .replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || name.endsWith('.localhost') || name === '0.0.0.0' || isLoopback(name);
}

/** A Content-Type the framework parses: `type/subtype`, parameters after it. */
const MEDIA_TYPE = /^\s*[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+\s*(;.*)?$/;

/**
 * Headers a proxy or tunnel on this machine adds for its client (nginx, HAProxy, Cloudflare's
 * tunnel, Akamai, Fastly, a CDN's `Via`): a loopback request carrying one came from elsewhere
 * (outside test X2). A bare TCP forwarder adds none: a deployment reachable through one needs its
 * app secret, as `NODE_ENV=production` demands.
 */
const PROXY_HEADERS = [
  'x-forwarded-for',
  'forwarded',
  'x-real-ip',
  'via',
  'cf-connecting-ip',
  'true-client-ip',
  'x-client-ip',
  'fastly-client-ip',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-original-forwarded-for',
  // And what other proxies, platforms and CDNs name their client with (outside test QA78-F4).
  'x-forwarded',
  'forwarded-for',
  'x-cluster-client-ip',
  'x-proxyuser-ip',
  'x-originating-ip',
  'client-ip',
  'fly-client-ip',
  'x-vercel-forwarded-for',
  'cloudfront-viewer-address',
  'x-azure-clientip',
  'x-appengine-user-ip',
  'cf-ray',
] as const;

/** Families of proxy headers: `X-Forwarded-Server`, `X-Forwarded-Port`, Envoy's own (QA76-F7). */
const PROXY_HEADER_PREFIXES = ['x-forwarded-', 'x-envoy-', 'x-original-'] as const;

/**
 * A request a web browser made: browsers mark their requests with `Sec-Fetch-Site` and their
 * POSTs with `Origin`; gateways and command-line clients send neither (Node's `fetch` sends
 * `Sec-Fetch-Mode` alone).
 */
function fromBrowser(req: FastifyRequest): boolean {
  const h = req.headers;
  return h.origin !== undefined || h['sec-fetch-site'] !== undefined;
}

const UNSIGNED_BROWSER =
  'WHATSAPP_APP_SECRET is not set: an unsigned webhook from a web browser is refused (a web page could post it; set the app secret)';

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** The `{error, code}` body of every refusal: the code's own message unless a detail is given. */
function errorBody(code: ErrorCode, detail?: string): { error: string; code: ErrorCode } {
  return { error: detail ?? ERROR_CODES[code].message, code };
}

/** Sends a coded JSON error. */
export function sendError(reply: FastifyReply, code: ErrorCode, detail?: string): FastifyReply {
  return reply.code(ERROR_CODES[code].status).type('application/json').send(errorBody(code, detail));
}

/**
 * Answers an error Node's HTTP server raised on a connection (no request to reply to) and closes
 * it: 408 for a request not complete in time, 431 for headers too large, else 400.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'BATON_ERR_REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'BATON_ERR_HEADERS_TOO_LARGE'
        : 'BATON_ERR_BAD_REQUEST';
  // A request the HTTP parser refused is said as such, not as a bad parameter or body (outside
  // test QA96-F4: Content-Length beside Transfer-Encoding, or two Content-Lengths).
  const detail =
    code === 'BATON_ERR_BAD_REQUEST' && err.code?.startsWith('HPE_')
      ? `The request is not valid HTTP/1.1 (${err.code}): its framing or headers could not be read`
      : undefined;
  answerOnSocket(socket, code, detail);
}

/** Writes an `{error, code}` answer straight to a connection and closes it. */
function answerOnSocket(socket: Duplex, code: ErrorCode, detail?: string): void {
  const { status } = ERROR_CODES[code];
  const body = JSON.stringify(errorBody(code, detail));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * What Node's HTTP server answers on its own, answered in our `{error, code}` shape: an HTTP/1.1
 * request without `Host` (400), an `Expect` other than `100-continue` (417) and `CONNECT` (no
 * route) got an empty body, or no answer at all (outside test QA54-F4). Node's own Host check is
 * off (`requireHostHeader: false` in {@link limitedServerOptions}) so that this hook makes it.
 */
function answerWhatNodeWould(app: FastifyInstance): void {
  app.addHook('onRequest', (req, reply, done) => {
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) {
      reply.header('connection', 'close');
      sendError(reply, 'BATON_ERR_BAD_REQUEST', 'An HTTP/1.1 request must carry a Host header');
      return;
    }
    done();
  });
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const code: ErrorCode = 'BATON_ERR_EXPECTATION_FAILED';
    const body = JSON.stringify(errorBody(code));
    res.writeHead(ERROR_CODES[code].status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
    req.resume();
  });
  app.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answerOnSocket(socket, 'BATON_ERR_NOT_FOUND', `No route CONNECT ${String(req.url).slice(0, 200)}`);
  });
}

/**
 * SPEC section 3's HTTP limits as Fastify options, for every server Baton listens with (the
 * webhook and admin server, and a worker's probe server: outside test QA42-F4). A body that
 * trickles in holds a socket and its buffers: Node answers 408 and closes the connection once
 * the request is not complete in time (checked every `checkIntervalMs`). What Node's HTTP parser
 * refuses before there is a request (not complete in time, headers too large, bytes that are no
 * HTTP) is answered in our `{error, code}` shape too.
 */
export function limitedServerOptions(limits: HttpLimits) {
  return {
    clientErrorHandler: answerClientError,
    requestTimeout: limits.requestTimeoutMs,
    http: {
      requireHostHeader: false, // answered by answerWhatNodeWould, in our shape
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
  } as const;
}

/**
 * The rest of SPEC section 3's limits on a server built with {@link limitedServerOptions}: the
 * connection caps (`perAddress` null: no cap per address, as behind a proxy), the slow-client
 * guard, the pipelining bound, and a 404 in our shape.
 */
export function guardServer(app: FastifyInstance, limits: HttpLimits, perAddress: number | null): void {
  app.setNotFoundHandler(notFound);
  guardConnections(app.server, {
    maxConnections: limits.maxConnections,
    perAddress,
    slowHeadersMs: limits.slowHeadersMs,
    slowBodyMs: limits.slowBodyMs,
  });
  limitPipelining(app.server);
  app.addHook('onRequest', dropPipelinedTooFar);
  answerWhatNodeWould(app);
}

/** `404 No route POST /path`, in our shape. */
function notFound(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(reply, 'BATON_ERR_NOT_FOUND', `No route ${req.method} ${req.url.split('?', 1)[0]}`);
}

/** While `draining()` (a stop with `BATON_DRAIN_MS`), every answer closes its connection. */
export function drainingAnswers(app: FastifyInstance, draining: () => boolean): void {
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (draining()) reply.header('connection', 'close');
    done(null, payload);
  });
}

/** The provider a webhook URL names (`/webhooks/whatsapp` -> `cloud-api`), or null. */
function webhookProvider(url: string): string | null {
  const path = url.split('?')[0]?.replace(/\/$/, '');
  if (path === '/webhooks/whatsapp') return 'cloud-api';
  if (path === '/webhooks/wasender') return 'wasender';
  return null;
}

/** BATON_TRUST_PROXY as Fastify takes it: the first `hops` addresses, or the proxies named. */
function fastifyTrust(trust: TrustProxy): false | string[] | ((address: string, hop: number) => boolean) {
  if (trust === false) return false;
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return [...trust];
}

/** Longest path segment the router reads (a longer one is a 400, see `routerErrorText`). */
const MAX_PARAM_LENGTH = 2000;

/** What a URL the router could not read is told, in a few words: never the whole URL. */
function routerErrorText(err: Error & { code?: string }): string {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH')
    return `A path segment is longer than the max param length (${MAX_PARAM_LENGTH} characters)`;
  if (err.code === 'FST_ERR_BAD_URL') return 'The URL is not valid: a broken percent-encoding';
  return clip(err.message, ERROR_DETAIL_MAX);
}

export function buildServer(deps: ServerDeps): FastifyInstance {
  const logger: FastifyBaseLogger = deps.logger;
  const limits = { ...DEFAULT_HTTP_LIMITS, ...deps.limits };
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT,
    // Never `true` (which takes the left-most X-Forwarded-For address, the one a client can
    // write itself): hops or addresses, so the client is the nearest address not trusted.
    trustProxy: fastifyTrust(deps.trustProxy ?? false),
    // A URL the router cannot read (a broken percent-encoding, a path segment over the router's
    // limit) is bad input: 400 with our code, the path quoted at most in part (Fastify's message
    // quotes it whole: a 10 kB path came back as a 10 kB error, outside test QA117-F2).
    frameworkErrors: (err, _req, reply) => {
      void sendError(reply, 'BATON_ERR_BAD_REQUEST', routerErrorText(err));
    },
    // Long path ids reach the admin API's schemas (a 400 naming the id), not a bare 414.
    // A callback URL pasted with a trailing slash (`/webhooks/whatsapp/`) is the same route: Meta's
    // verification would otherwise fail on a 404 the operator never sees.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, ignoreTrailingSlash: true },
    logController: new LogController({ disableRequestLogging: true }),
    ...limitedServerOptions(limits),
  });
  // Behind a proxy every client has the proxy's address.
  guardServer(
    app,
    limits,
    deps.trustProxy !== undefined && deps.trustProxy !== false ? null : limits.maxPerAddress,
  );
  // A request answered before its body is all in (refused on its headers: no token, no route, too
  // big) ends its connection: kept open, the body's rest was waited for, and the request timeout
  // then answered it a second time, 408 after the 401 (outside test QA18-F3).
  // And while draining (a stop with `BATON_DRAIN_MS`) every answer closes its connection: one hook
  // for both, on the webhooks' path.
  // Large bodies received at once are bounded before any is read (outside test QA76-F1).
  limitLargeBodies(
    app,
    { bodyLimit: BODY_LIMIT, drainLimit: DRAIN_LIMIT, budget: limits.largeBodiesBytes },
    (reply, tooLarge) => {
      if (!tooLarge) return void sendError(reply.header('retry-after', '1'), 'BATON_ERR_BODIES_BUSY');
      const provider = webhookProvider(reply.request.url);
      if (provider) deps.metrics.webhooks.inc({ provider, outcome: 'too_large' });
      void sendError(reply, 'BATON_ERR_BODY_TOO_LARGE');
    },
  );
  const draining = deps.draining ?? (() => false);
  app.addHook('onSend', (req, reply, payload, done) => {
    if (!req.raw.complete || draining()) reply.header('connection', 'close');
    done(null, payload);
  });

  // A webhook may label its body as it likes (docs/errors.md): a missing or malformed
  // Content-Type is read as bytes like any other, not refused by the framework (outside test X4).
  app.addHook('onRequest', (req, _reply, done) => {
    const type = req.headers['content-type'];
    if (req.method === 'POST' && (type === undefined || !MEDIA_TYPE.test(type)) && webhookProvider(req.url))
      req.headers['content-type'] = 'application/octet-stream';
    done();
  });
  // Keep webhook bodies as raw bytes: the signature is checked on them before any parsing.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    done(null, body);
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof BatonError) return sendError(reply, err.code, err.message);
    if (err.statusCode === 413 || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Counted like the webhooks refused for other reasons (an operator sees a sender's 413s).
      const provider = webhookProvider(req.url);
      if (provider) deps.metrics.webhooks.inc({ provider, outcome: 'too_large' });
      // The 413 goes out once the rest of the body is read and dropped (up to a bound, within
      // the request timeout): answered early, the connection closes on unread bytes, the socket
      // is reset, and a client still writing loses the answer (an outside test: half of such
      // posts on a busy machine).
      return drainBody(req.raw, DRAIN_LIMIT).then((how) => {
        if (how === 'failed') return reply;
        // The rest of the body is not read: the connection cannot serve another request.
        if (how === 'now') void reply.header('connection', 'close');
        return sendError(reply, 'BATON_ERR_BODY_TOO_LARGE');
      });
    }
    // A post to no route is that, whatever its body's label: a mistyped callback path with an odd
    // Content-Type was told 415 (outside test QA139-F4).
    if (req.is404) return notFound(req, reply);
    if (err.statusCode === 415)
      return sendError(reply, 'BATON_ERR_UNSUPPORTED_MEDIA_TYPE', clip(err.message, ERROR_DETAIL_MAX));
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
      // Baton's codes only: a framework's own (FST_ERR_...) is no contract (outside test X4).
      return reply
        .code(err.statusCode)
        .send({ error: clip(err.message, ERROR_DETAIL_MAX), code: 'BATON_ERR_BAD_REQUEST' });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: 'internal error' });
  });

  // Each parameter at most once (given twice it is an array) and the challenge one short string,
  // else 403 like any other mismatch (SPEC 3: "otherwise 403"); never 500.
  const handshake = {
    schema: { querystring: HandshakeQuery },
    validatorCompiler: zodCompiler,
    errorHandler: adminErrorHandler,
  };
  app.get('/webhooks/whatsapp', handshake, async (req, reply) => {
    const q = parsed(HandshakeQuery, req.query);
    const challenge = q['hub.challenge'];
    // Said as what it is: a right token with a challenge too long read "verify_token does not
    // match" (outside test QA76-F8).
    if (challenge !== undefined && (typeof challenge !== 'string' || challenge.length > 512))
      return sendError(
        reply,
        'BATON_ERR_VERIFY_TOKEN',
        'hub.challenge must be given once, at most 512 characters (Meta sends a short number)',
      );
    const ok =
      q['hub.mode'] === 'subscribe' &&
      deps.verifyToken !== undefined &&
      typeof q['hub.verify_token'] === 'string' &&
      safeEqual(q['hub.verify_token'], deps.verifyToken);
    if (!ok) return sendError(reply, 'BATON_ERR_VERIFY_TOKEN');
    // The challenge is the caller's text, echoed: never sniffed as markup (outside test X8).
    return reply
      .code(200)
      .type('text/plain; charset=utf-8')
      .header('x-content-type-options', 'nosniff')
      .send(challenge ?? '');
  });

  let lastWriteFailure = 0;
  const refusals = new LogLimiter();
  /** The last publish RabbitMQ did not confirm (a frozen link stays "connected"): QA44-F3, F4. */
  let lastQueueFailure = 0;
  // A webhook's arrival is when its headers arrive (its messages' window starts there), and it
  // holds batches back until it is stored, so that a burst being stored on a busy machine, or
  // whose bodies follow on a slow link, is not split by a batch closing meanwhile. It holds them
  // from its headers if its address recently delivered a webhook that was stored, else from when
  // its body is complete: a body trickling in from anyone else (a slow client, or an attacker
  // without the app secret) holds nothing.
  // A webhook read late (the process stopped or starved) counts from when it may have come, its
  // arrival less how late the event loop was then (IntakeTracker.readLateMs).
  const arrivals = new WeakMap<FastifyRequest, { at: number; late: number; token: number | undefined }>();
  const senders = new KnownSenders(deps.now);
  const done = (req: FastifyRequest): void => {
    const a = arrivals.get(req);
    if (a?.token !== undefined) deps.intake?.end(a.token);
    arrivals.delete(req);
  };
  // Callback hooks, not async ones: no promise per request for a few map operations.
  app.addHook('onRequest', (req, _reply, next) => {
    if (req.method === 'POST' && req.url.startsWith('/webhooks/')) {
      const at = (deps.now ?? Date.now)();
      const late = deps.intake?.readLateMs() ?? 0;
      arrivals.set(req, {
        at,
        late,
        token: senders.has(req.ip) ? deps.intake?.begin(at, false, late) : undefined,
      });
    }
    next();
  });
  app.addHook('preValidation', (req, _reply, next) => {
    const a = arrivals.get(req);
    if (a !== undefined && a.token === undefined) a.token = deps.intake?.begin(a.at, false, a.late);
    next();
  });
  app.addHook('onResponse', (req, _reply, next) => {
    done(req);
    next();
  });
  app.addHook('onRequestAbort', (req, next) => {
    done(req);
    next();
  });

  const webhook = (provider: Provider) => async (req: FastifyRequest, reply: FastifyReply) => {
    const count = (outcome: string): void => deps.metrics.webhooks.inc({ provider: provider.name, outcome });
    if (!provider.enabled) {
      count('off');
      return sendError(reply, 'BATON_ERR_PROVIDER_OFF');
    }
    if (!provider.signed && fromBrowser(req)) {
      // Unsigned, a web page's post from a browser on this machine would reach users' sessions:
      // a form (text/plain, urlencoded, multipart) needs no CORS consent, and nor does JSON from
      // a page whose name was rebound to 127.0.0.1 (same origin as this Baton, to the browser).
      // Gateways, `baton simulate` and `curl` send no browser marks; a signed post may carry them.
      count('bad_signature');
      return sendError(reply, 'BATON_ERR_BAD_SIGNATURE', UNSIGNED_BROWSER);
    }
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (!provider.signed && deps.unsignedFrom !== 'anywhere' && !fromThisMachine(req)) {
      count('bad_signature');
      return sendError(reply, 'BATON_ERR_BAD_SIGNATURE', UNSIGNED_REMOTE);
    }
    if (!provider.verify(raw, req.headers)) {
      count('bad_signature');
      return sendError(reply, 'BATON_ERR_BAD_SIGNATURE');
    }
    // A compressed body said as such (RFC 9110: 415), not as JSON that is not UTF-8 (outside test
    // QA83-F6). Meta never compresses its webhooks.
    const encoding = String(req.headers['content-encoding'] ?? 'identity')
      .trim()
      .toLowerCase();
    if (encoding !== 'identity' && encoding !== '') {
      count('bad_json');
      return sendError(
        reply,
        'BATON_ERR_UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding "${encoding.slice(0, 40)}" is not taken: send the JSON uncompressed`,
      );
    }
    // JSON text is UTF-8 (RFC 8259): a stray byte would become U+FFFD in a user's text unseen.
    if (!isUtf8(raw)) {
      count('bad_json');
      return sendError(reply, 'BATON_ERR_BAD_JSON', 'body is not valid UTF-8 (JSON text must be)');
    }
    let json: unknown;
    try {
      json = webhookJson(raw);
    } catch {
      count('bad_json');
      return sendError(reply, 'BATON_ERR_BAD_JSON');
    }
    let batch;
    let skipped: readonly SkippedItem[] = [];
    try {
      const parsedBody = provider.parse(json);
      batch = parsedBody.batch;
      skipped = parsedBody.skipped;
      if (parsedBody.skipped.length > 0) {
        // Inside a valid envelope, items that name no sender or channel cannot be stored in a
        // session: say so (ids and reasons only, never a text); the messages among them are
        // kept as `unreadable` dead letters (unreadable.ts).
        req.log.warn(
          {
            provider: provider.name,
            skipped: parsedBody.skipped.length,
            items: parsedBody.skipped.slice(0, 5).map((i) => ({ kind: i.kind, id: i.id, reason: i.reason })),
          },
          'webhook items that name no session were skipped (messages kept as unreadable dead letters)',
        );
      }
    } catch (err) {
      if (err instanceof BatonError) {
        count('bad_envelope');
        return sendError(reply, err.code, err.message);
      }
      throw err;
    }
    const arrival = arrivals.get(req);
    try {
      if (deps.queue) {
        const publishing = Date.now();
        await deps.queue.publish({
          provider: provider.name,
          body: raw,
          receivedAt: arrival?.at ?? Date.now(),
          readLateMs: arrival?.late ?? 0,
        });
        if (publishing > lastQueueFailure) lastQueueFailure = 0;
        count('queued');
        senders.delivered(req.ip);
        return reply.code(200).send({ queued: batch.messages.length + batch.statuses.length });
      }
      const started = Date.now();
      await keepUnreadable(deps.backend, unreadableLetters(provider.name, skipped, started));
      const result = await deps.backend.ingest(
        arrival === undefined ? batch : { ...batch, receivedAt: arrival.at, readLateMs: arrival.late },
      );
      count('stored');
      // A write begun after the last refusal went through: the store takes writes again.
      if (started > lastWriteFailure) lastWriteFailure = 0;
      senders.delivered(req.ip);
      deps.backend.countStored(result.accepted);
      deps.metrics.stored(result);
      return reply.code(200).send({ received: result.accepted, duplicates: result.duplicates });
    } catch (err) {
      // RabbitMQ's refusal is not the store's: readiness says which one failed.
      if (deps.queue) lastQueueFailure = Date.now();
      else lastWriteFailure = Date.now();
      count('unavailable');
      // Once per 5 s (during an outage every webhook fails alike), naming how many more did.
      refusals.run(deps.queue ? 'queue' : 'store', (suppressed) =>
        req.log.error(
          { err, ...(suppressed > 0 ? { suppressed } : {}) },
          deps.queue
            ? 'webhook could not be queued; answering 503 so the sender retries'
            : 'webhook could not be stored; answering 503 so the sender retries',
        ),
      );
      // The queue named when it is the one away (outside test QA84-F5: "Storage is unavailable").
      return sendError(
        reply,
        'BATON_ERR_STORAGE_UNAVAILABLE',
        deps.queue ? 'The intake queue (RabbitMQ) is unavailable; retry later' : undefined,
      );
    }
  };
  app.post('/webhooks/whatsapp', webhook(deps.providers.whatsapp));
  app.post('/webhooks/wasender', webhook(deps.providers.wasender));

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    const reachable: Record<string, boolean> = await deps.backend.health().catch(() => ({ store: false }));
    // Reachable is not enough: a full disk answers pings and refuses writes.
    const checks = {
      ...reachable,
      // (The store's own view as well: a full disk refuses the engine's batches too.)
      writes: reachable.writes !== false && Date.now() - lastWriteFailure > WRITE_FAILURE_HOLD_MS,
      ...(deps.queue
        ? { rabbitmq: deps.queue.connected && Date.now() - lastQueueFailure > WRITE_FAILURE_HOLD_MS }
        : {}),
    };
    if (draining()) return reply.code(503).send({ ok: false, draining: true, checks });
    // With the RabbitMQ intake, webhooks need RabbitMQ alone: they go in while the store is away.
    const ok = deps.queue ? checks.rabbitmq === true : Object.values(checks).every(Boolean);
    return reply.code(ok ? 200 : 503).send({ ok, checks });
  });
  metricsRoute(app, deps.metrics, deps.stats ?? (() => deps.backend.stats()));

  const auth = registerAdmin(app, deps);
  registerDashboard(app, deps, auth);
  return app;
}

/**
 * A webhook's JSON. A UTF-8 byte-order mark before it is skipped, as RFC 8259 allows a parser to:
 * relays written on .NET's default UTF-8 writer send one, and it was refused as "not valid JSON"
 * (outside test QA139-F3). The signature is checked on the bytes as they came, mark included.
 */
export function webhookJson(raw: Buffer): unknown {
  const text = raw.toString('utf8');
  return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
}
