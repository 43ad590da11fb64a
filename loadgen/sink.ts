/**
 * The reply sink: a lean stand-in for the Graph API that the load generator runs itself.
 * Baton (pointed at it with `WHATSAPP_API_BASE_URL=http://127.0.0.1:<port>`) POSTs its replies
 * to `[/vXX.X]/{phoneNumberId}/messages`; the sink records each with its arrival time and
 * answers like Graph, `{messaging_product, contacts, messages: [{id}]}`, with a wamid unique
 * to this sink, so the load generator can tap a prompt's buttons with a real `context.id`.
 *
 * Unlike the test helper `test/support/fake-graph.ts` it scripts no failures: it only has to
 * be fast and exact, and it indexes calls by recipient so thousands of simulated users can
 * wait on their own replies cheaply.
 *
 * @example
 * ```ts
 * const sink = await startReplySink({ port: 4010 });
 * // run Baton with WHATSAPP_API_BASE_URL=sink.url, send it webhooks...
 * const prompt = await sink.waitFor('15550001111', (c) => c.callback?.step === 'ask_name', 0, 5_000);
 * await sink.close();
 * ```
 * @module
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { waIdOfTo } from '../src/providers/channel.ts';
import { answerJson, GRAPH_ROUTE, graphAccepted, graphError, startStubServer } from './stub-server.ts';

/**
 * `biz_opaque_callback_data` as Baton writes it: `baton:<flow>:<step>:<version>[#<n>][:<wamid>]`
 * (`#<n>`: the n-th message of one state change, from the second on).
 */
export interface CallbackData {
  readonly flow: string;
  readonly step: string;
  readonly version: number;
  /** The inbound message a notice answers without a state change (stale input), if any. */
  readonly inReplyTo?: string;
}

/** Parses Baton's `biz_opaque_callback_data`; `null` when it is not in that shape. */
export function parseCallback(value: unknown): CallbackData | null {
  if (typeof value !== 'string') return null;
  const parts = value.split(':');
  if (parts.length < 4 || parts[0] !== 'baton') return null;
  const version = Number(parts[3]!.replace(/#\d+$/, ''));
  if (!Number.isInteger(version) || version < 0) return null;
  const rest = parts.slice(4).join(':');
  return {
    flow: parts[1]!,
    step: parts[2]!,
    version,
    ...(rest === '' ? {} : { inReplyTo: rest }),
  };
}

/** One reply the sink accepted. */
export interface SinkCall {
  /** 1-based arrival order over the sink's life. */
  readonly seq: number;
  /** `performance.now()` at arrival (same clock as the load generator's send times). */
  readonly at: number;
  readonly phoneNumberId: string;
  /**
   * The user, as Meta identifies the user: the wa_id (`to` without its `+`), or `recipient` for
   * a BSUID. Replies are indexed by it; `body.to` keeps what Baton sent (`+1555…`).
   */
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
  /** The JSON body Baton POSTed (scripted conversations render and check it). */
  readonly body: Readonly<Record<string, unknown>>;
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
  waitFor(
    to: string,
    match: (call: SinkCall) => boolean,
    from: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<SinkCall | null>;
  /** `performance.now()` of the latest reply, or `null` before any. */
  lastAt(): number | null;
  close(): Promise<void>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function buttonIdsOf(body: Record<string, unknown>): string[] {
  const interactive = body.interactive;
  if (!isRecord(interactive)) return [];
  const action = interactive.action;
  if (!isRecord(action)) return [];
  const ids: string[] = [];
  if (Array.isArray(action.buttons)) {
    for (const b of action.buttons as unknown[]) {
      if (isRecord(b) && isRecord(b.reply) && typeof b.reply.id === 'string') ids.push(b.reply.id);
    }
  }
  if (Array.isArray(action.sections)) {
    for (const s of action.sections as unknown[]) {
      if (!isRecord(s) || !Array.isArray(s.rows)) continue;
      for (const r of s.rows as unknown[]) if (isRecord(r) && typeof r.id === 'string') ids.push(r.id);
    }
  }
  return ids;
}

function refuse(res: ServerResponse, status: number, code: number, message: string): void {
  answerJson(res, status, graphError(message, { code, trace: 'AloadgenSink' }));
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
export async function startReplySink(options: ReplySinkOptions = {}): Promise<ReplySink> {
  const calls: SinkCall[] = [];
  const byUser = new Map<string, SinkCall[]>();
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const run = randomBytes(4).toString('hex');
  let seq = 0;
  let refused = 0;
  let last: number | null = null;

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = GRAPH_ROUTE.exec(path);
    if (req.method !== 'POST' || route === null) {
      refused += 1;
      refuse(res, 404, 803, `no route ${req.method ?? ''} ${path}`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      body = undefined;
    }
    const phone = isRecord(body) && typeof body.to === 'string' ? body.to : undefined;
    const recipient = isRecord(body) && typeof body.recipient === 'string' ? body.recipient : undefined;
    // Keyed on the wa_id, as Meta names the user (and the load generator its users): no `+`.
    const to = phone === undefined ? recipient : waIdOfTo(phone);
    if (!isRecord(body) || body.messaging_product !== 'whatsapp' || to === undefined) {
      refused += 1;
      refuse(res, 400, 100, '(#100) Invalid parameter');
      return;
    }
    seq += 1;
    const callbackData =
      typeof body.biz_opaque_callback_data === 'string' ? body.biz_opaque_callback_data : undefined;
    const call: SinkCall = {
      seq,
      at: performance.now(),
      phoneNumberId: decodeURIComponent(route[1]!),
      to,
      callbackData,
      callback: parseCallback(callbackData),
      providerMessageId: `wamid.sink.${run}.${seq}`,
      type: typeof body.type === 'string' ? body.type : undefined,
      buttonIds: buttonIdsOf(body),
      body,
    };
    last = call.at;
    answerJson(
      res,
      200,
      graphAccepted(call.providerMessageId, phone === undefined ? { recipient: to } : { to: phone }),
    );
    calls.push(call);
    let list = byUser.get(to);
    if (list === undefined) {
      list = [];
      byUser.set(to, list);
    }
    list.push(call);
    events.emit(to, call);
  }

  const server = await startStubServer(handle, {
    host: options.host,
    port: options.port,
    keepAliveTimeoutMs: 30_000,
  });

  return {
    url: server.url,
    port: server.port,
    calls,
    get refused() {
      return refused;
    },
    callsTo: (to) => byUser.get(to) ?? [],
    waitFor(to, match, from, timeoutMs, signal) {
      const found = (byUser.get(to) ?? []).slice(from).find(match);
      if (found !== undefined) return Promise.resolve(found);
      if (signal?.aborted) return Promise.resolve(null);
      return new Promise((resolve) => {
        const done = (call: SinkCall | null): void => {
          clearTimeout(timer);
          events.off(to, onCall);
          signal?.removeEventListener('abort', onAbort);
          resolve(call);
        };
        const onCall = (call: SinkCall): void => {
          if (match(call)) done(call);
        };
        const onAbort = (): void => done(null);
        const timer = setTimeout(() => done(null), timeoutMs);
        events.on(to, onCall);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    lastAt: () => last,
    async close() {
      events.removeAllListeners();
      await server.close();
    },
  };
}
