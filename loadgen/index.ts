/**
 * Baton's load and chaos generator, usable from code (the `baton load` command, the bench and
 * the tests call it). It drives N simulated users through the reference bot's `order` flow
 * against a running Baton, receives Baton's replies on its own sink (a lean Graph API), measures
 * webhook answer times, reply latency and end-to-end throughput, then asks Baton's admin API
 * what it recorded and returns a verdict: messages lost, duplicated, out of order, duplicate
 * prompts.
 *
 * The target Baton must send its replies to the sink: start it with
 * `WHATSAPP_API_BASE_URL=http://127.0.0.1:<sink port>` (and the same app secret and admin token).
 *
 * @example
 * ```ts
 * import { runLoad, startReplySink } from './loadgen/index.ts';
 * const sink = await startReplySink({ port: 4010 });
 * // ... Baton running with WHATSAPP_API_BASE_URL=http://127.0.0.1:4010 ...
 * const report = await runLoad({ url: 'http://127.0.0.1:3000', adminToken: 't', secret: 's', sink, users: 100,
 *   chaos: { duplicates: 0.2, shuffle: true, splitTexts: true, concurrentBursts: true } });
 * console.log(report.verdict.clean, report.messagesPerSec);
 * ```
 * @module
 */
import { randomBytes, randomInt } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { WebhookClient } from './client.ts';
import { DEFAULT_CHANNEL, type Channel } from './payloads.ts';
import {
  planUser,
  runUser,
  type ChaosOptions,
  type DriverContext,
  type LiveCounters,
  type UserTrace,
} from './scenario.ts';
import { runScriptUser } from './script.ts';
import type { ConversationScript } from '../src/simulate/script.ts';
import { startReplySink, type ReplySink } from './sink.ts';
import { seededRandom, summarize, type LatencySummary } from './stats.ts';
import {
  cameLate,
  gotAReplyTwice,
  mayBeSplit,
  judge,
  type SessionEvidence,
  type TransitionEvidence,
  type UserEvidence,
  type Verdict,
} from './verdict.ts';

export { startReplySink, parseCallback } from './sink.ts';
export { runOpenLoop } from './open-loop.ts';
export type { OpenLoopOptions, OpenLoopReport } from './open-loop.ts';
export type { CallbackData, ReplySink, ReplySinkOptions, SinkCall } from './sink.ts';
export type { ChaosOptions, ExpectedOrder } from './scenario.ts';
export type { Verdict } from './verdict.ts';
export type { LatencySummary } from './stats.ts';
export { DEFAULT_CHANNEL } from './payloads.ts';
export type { Channel } from './payloads.ts';

/** The target cannot be load-tested as asked (unreachable, admin token refused...). */
export class LoadError extends Error {
  override readonly name = 'LoadError';
}

/** Where a run stands, for a progress display. */
export interface LoadProgress {
  readonly phase: 'running' | 'settling' | 'judging';
  readonly elapsedMs: number;
  readonly users: number;
  readonly usersDone: number;
  /** Of those, users who did not get every reply. */
  readonly usersGaveUp: number;
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
  /**
   * Workers (or Baton itself) are killed during the run: one repeat of a reply is the crash
   * allowance of guarantee 6, reported apart (see `judge`), and webhooks are re-delivered for up
   * to a minute while the target is down.
   */
  readonly crashes?: boolean;
  /**
   * The target's `BATON_BUFFER_MS`. With it, a burst Baton stored further apart than this was
   * allowed to split (SPEC 1.5): the verdict counts it apart, not as out of order (see `judge`).
   * Without it, every split burst is out of order.
   */
  readonly bufferMs?: number;
  /** After the last user is done: wait at most this long for Baton to drain (default 10 s). */
  readonly settleTimeoutMs?: number;
  /** ...and until the sink has been quiet this long (default 300 ms). */
  readonly quietMs?: number;
  /**
   * How long an admin API read is retried through network errors and 503s before the target
   * is taken for gone (default 30 s: a restart is ridden out).
   */
  readonly adminRetryMs?: number;
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
  /**
   * A conversation every user plays instead of the reference bot's order (`baton simulate
   * --script` format): drives any flow. `retaps` and `splitTexts` do not apply to it.
   */
  readonly script?: ConversationScript;
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

const NO_CHAOS: ChaosOptions = {
  duplicates: 0,
  shuffle: false,
  splitTexts: false,
  concurrentBursts: false,
  retaps: 0,
};

/**
 * One admin API read. A network error or a 503 (the target restarting, a store away) is tried
 * again for up to `retryMs` (30 s), as the webhooks are: a run that kills and restarts Baton
 * still gets its verdict.
 * @throws AdminUnreachableError when no answer came in that time.
 */
export async function getJson(
  url: string,
  token: string,
  retryMs = 30_000,
): Promise<{ status: number; json: unknown }> {
  const deadline = performance.now() + retryMs;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      const answer = await getJsonOnce(url, token);
      if (answer.status !== 503 || performance.now() + delay > deadline) return answer;
    } catch (err) {
      if (performance.now() + delay > deadline) throw new AdminUnreachableError(url, err);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** The admin API gave no answer at `url`, retries included (the target is down). */
export class AdminUnreachableError extends Error {
  override readonly name = 'AdminUnreachableError';
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`${url}: ${networkReason(cause)}`, { cause });
  }
}

/** `fetch failed` says nothing: its cause does (`connect ECONNREFUSED 127.0.0.1:3000`). */
function networkReason(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown } } | null;
  const inner = e?.cause?.message;
  if (typeof inner === 'string' && inner !== '') return inner;
  return typeof e?.message === 'string' ? e.message : String(err);
}

async function getJsonOnce(url: string, token: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Checks that Baton answers and accepts the admin token, before any load is sent. */
async function preflight(base: string, token: string): Promise<void> {
  try {
    const health = await fetch(`${base}/healthz`);
    if (health.status !== 200) throw new LoadError(`${base}/healthz answered ${health.status}`);
  } catch (err) {
    if (err instanceof LoadError) throw err;
    throw new LoadError(`Baton does not answer at ${base} (${(err as Error).message})`);
  }
  const stats = await getJson(`${base}/admin/api/stats`, token);
  if (stats.status === 401)
    throw new LoadError('the admin API refused the admin token (check --admin-token / ADMIN_TOKEN)');
  if (stats.status !== 200) throw new LoadError(`${base}/admin/api/stats answered ${stats.status}`);
}

/** Messages Baton holds pending (its admin API's `queue_depth`), or null if it does not say. */
export async function queueDepth(base: string, token: string): Promise<number | null> {
  try {
    return await backlog(base, token);
  } catch {
    return null;
  }
}

/**
 * Baton's `queue_depth` (null if its stats do not say).
 * @throws AdminUnreachableError when the admin API does not answer.
 */
async function backlog(base: string, token: string, retryMs?: number): Promise<number | null> {
  const r = await getJson(`${base}/admin/api/stats`, token, retryMs);
  const depth = (r.json as { queue_depth?: unknown } | null)?.queue_depth;
  return r.status === 200 && typeof depth === 'number' ? depth : null;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function evidenceOf(
  base: string,
  token: string,
  channel: Channel,
  trace: UserTrace,
  sink: ReplySink,
  retryMs?: number,
): Promise<UserEvidence> {
  const q = `?channel=${encodeURIComponent(channel.phoneNumberId)}`;
  const path = `${base}/admin/api/sessions/${encodeURIComponent(trace.waId)}`;
  const [s, t] = await Promise.all([
    getJson(`${path}${q}`, token, retryMs),
    getJson(`${path}/transitions${q}`, token, retryMs),
  ]);
  if (s.status !== 200 && s.status !== 404) throw new LoadError(`${path} answered ${s.status}`);
  const transitions =
    t.status === 200 ? ((t.json as { transitions?: TransitionEvidence[] }).transitions ?? []) : [];
  return {
    trace,
    replies: sink.callsTo(trace.waId),
    session: s.status === 200 ? (s.json as SessionEvidence) : null,
    transitions,
  };
}

type OutboundItem = { callback_data: unknown; claims: unknown };
type MessageItem = { direction: unknown; id: unknown; at: unknown };

/** A list the admin API keeps under one of the user's sessions (`outbound`, `messages`), `[]` if none. */
async function sessionList<T>(
  base: string,
  token: string,
  channel: Channel,
  waId: string,
  list: 'outbound' | 'messages',
  retryMs?: number,
): Promise<Partial<T>[]> {
  const q = `?channel=${encodeURIComponent(channel.phoneNumberId)}${list === 'messages' ? '&limit=500' : ''}`;
  const r = await getJson(
    `${base}/admin/api/sessions/${encodeURIComponent(waId)}/${list}${q}`,
    token,
    retryMs,
  );
  return r.status === 200 ? ((r.json as Record<string, Partial<T>[] | undefined>)[list] ?? []) : [];
}

/** Baton's send attempts that may have reached the user, by callback data (its outbound records' `claims`). */
export async function claimsOf(
  base: string,
  token: string,
  channel: Channel,
  waId: string,
  retryMs?: number,
): Promise<Map<string, number>> {
  const records = await sessionList<OutboundItem>(base, token, channel, waId, 'outbound', retryMs);
  const claims = new Map<string, number>();
  for (const o of records) {
    if (typeof o.callback_data !== 'string') continue;
    // A Baton too old to say: every repeat may be a crash's, as before.
    claims.set(o.callback_data, typeof o.claims === 'number' ? o.claims : 2);
  }
  return claims;
}

/** When Baton stored each of the user's messages (its admin API's conversation), by message id. */
export async function storedTimes(
  base: string,
  token: string,
  channel: Channel,
  waId: string,
  retryMs?: number,
): Promise<Map<string, number>> {
  const items = await sessionList<MessageItem>(base, token, channel, waId, 'messages', retryMs);
  const times = new Map<string, number>();
  for (const m of items) {
    if (m.direction === 'in' && typeof m.id === 'string' && typeof m.at === 'string')
      times.set(m.id, Date.parse(m.at));
  }
  return times;
}

/**
 * Runs the scenario against the Baton at `options.url` and judges what it did.
 * @throws LoadError when Baton cannot be reached or refuses the admin token.
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const base = options.url.replace(/\/+$/, '');
  const users = options.users ?? 50;
  const chaos: ChaosOptions = { ...NO_CHAOS, ...options.chaos };
  const channel = options.channel ?? DEFAULT_CHANNEL;
  const seed = options.seed ?? randomInt(2 ** 31);
  const token = options.adminToken;
  await preflight(base, token);
  // Every waiting user listens on the signal.
  if (options.signal) setMaxListeners(0, options.signal);

  const ownSink = options.sink === undefined;
  const sink =
    options.sink ??
    (await startReplySink({
      ...(options.sinkPort !== undefined ? { port: options.sinkPort } : {}),
      ...(options.sinkHost !== undefined ? { host: options.sinkHost } : {}),
    }));
  const client = new WebhookClient({
    baseUrl: base,
    secret: options.secret,
    maxInflight: options.maxInflight ?? 64,
    // Processes are being killed: re-deliver as Meta would until the target is back.
    ...(options.crashes === true ? { retryForMs: 60_000 } : {}),
  });
  const counters: LiveCounters = {
    deliveries: 0,
    sent: 0,
    acked: 0,
    replies: 0,
    usersDone: 0,
    usersGaveUp: 0,
  };
  const ctx: DriverContext = {
    client,
    sink,
    channel,
    chaos,
    replyTimeoutMs: options.replyTimeoutMs ?? 15_000,
    counters,
    ackMs: [],
    replyMs: [],
    replyMsByStep: new Map(),
    lastReplyAt: 0,
    ...(options.signal ? { signal: options.signal } : {}),
  };

  // Fresh users for every run: a random number prefix, then the user's index.
  const prefix = `1${String(randomInt(10_000_000)).padStart(7, '0')}`;
  const baseTs = Math.floor(Date.now() / 1000);
  const ramp = options.rampMs ?? 0;
  /** When user `i` starts, ms after the first: spread evenly over the ramp. */
  const delayOf = (i: number): number => (users > 1 ? (ramp * i) / (users - 1) : 0);
  // A user who starts late in the ramp stamps their messages from when they start, as WhatsApp
  // does: stamped from the run's start, a ramp longer than BATON_DEDUPE_TTL made the later users'
  // messages `late` and the verdict NOT CLEAN (outside test QA69-F2).
  const userTs = (i: number): number => baseTs + Math.floor(delayOf(i) / 1000);
  let wamids = 0;
  const runTag = randomBytes(5).toString('hex').toUpperCase();
  const wamid = (): string => `wamid.LOAD${runTag}${(++wamids).toString(36).toUpperCase()}`;
  const rnd = seededRandom(seed);
  const script = options.script;
  const plans = script
    ? []
    : Array.from({ length: users }, (_, i) =>
        planUser(i, `${prefix}${String(i).padStart(5, '0')}`, userTs(i), chaos, channel, rnd, wamid),
      );

  const plannedMessages = script
    ? users *
      script.steps.reduce(
        (n, st) => n + (st.send.trim().startsWith('/burst') ? st.send.split('|').length : 1),
        0,
      )
    : plans.reduce((n, p) => n + p.stages.reduce((k, st) => k + st.messages.length, 0), 0);
  const plannedReplies = script
    ? users * script.steps.reduce((n, st) => n + st.expect.length, 0)
    : plans.reduce((n, p) => n + p.stages.length, 0);
  const started = performance.now();
  let phase: LoadProgress['phase'] = 'running';
  const progress = (): void =>
    options.onProgress?.({
      phase,
      elapsedMs: performance.now() - started,
      users,
      usersDone: counters.usersDone,
      usersGaveUp: counters.usersGaveUp,
      planned: plannedMessages,
      sent: counters.sent,
      acked: counters.acked,
      deliveries: counters.deliveries,
      replies: counters.replies,
      repliesPlanned: plannedReplies,
    });
  const ticker = options.onProgress ? setInterval(progress, options.progressIntervalMs ?? 200) : undefined;

  try {
    const traces = await Promise.all(
      Array.from({ length: users }, async (_, i) => {
        const delay = delayOf(i);
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        // Each user draws from its own seeded stream, so concurrency does not change the choices.
        if (script) {
          const waId = `${prefix}${String(i).padStart(5, '0')}`;
          return runScriptUser(
            { index: i, waId, baseTs: userTs(i) },
            script,
            ctx,
            seededRandom(seed + i + 1),
            wamid,
          );
        }
        return runUser(plans[i]!, ctx, seededRandom(seed + i + 1));
      }),
    );
    const durationMs = (ctx.lastReplyAt > 0 ? ctx.lastReplyAt : performance.now()) - started;

    // Let Baton drain: nothing pending, no reply for a moment, and no reply a user stopped
    // waiting for still owed. What it still holds after that is read before the evidence, so a
    // message processed in between is found, not doubted. A gateway that accepted a reply
    // delivers it when it can: Baton has nothing left to send, yet the reply is on its way, and
    // judged at once it was called lost (outside test QA85-F1: a relay holding replies 1.5 s).
    phase = 'settling';
    const owed = (): boolean =>
      traces.some((t) => t.missingReplies.some((step) => !cameLate(t, sink.callsTo(t.waId), step)));
    const quiet = options.quietMs ?? 300;
    const deadline = performance.now() + (options.settleTimeoutMs ?? 10_000);
    const retryMs = options.adminRetryMs;
    let pending: number | null = null;
    let unreachable: AdminUnreachableError | null = null;
    do {
      try {
        pending = await backlog(base, token, retryMs);
      } catch (err) {
        if (!(err instanceof AdminUnreachableError)) throw err;
        unreachable = err;
        break;
      }
      const last = sink.lastAt() ?? 0;
      if (pending === 0 && performance.now() - last >= quiet && !owed()) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (performance.now() < deadline && !options.signal?.aborted);

    phase = 'judging';
    progress();
    // The target gone (killed and not back): judge what this generator saw by itself.
    let refs = new Set<string>();
    let evidence: UserEvidence[] = traces.map((t) => ({
      trace: t,
      replies: sink.callsTo(t.waId),
      session: null,
      transitions: [],
    }));
    if (unreachable === null) {
      try {
        const dl = await getJson(`${base}/admin/api/dead-letters?limit=500`, token, retryMs);
        refs = new Set(
          dl.status === 200
            ? ((dl.json as { dead_letters?: { ref?: unknown }[] }).dead_letters ?? []).map((d) =>
                String(d.ref),
              )
            : [],
        );
        evidence = await mapLimit(traces, 16, (t) => evidenceOf(base, token, channel, t, sink, retryMs));
        // Whether a reply that came twice is a crash's one repeat rests on whether Baton made a
        // second attempt of it.
        if (options.crashes === true) {
          evidence = await mapLimit(evidence, 16, async (u) =>
            gotAReplyTwice(u)
              ? { ...u, claims: await claimsOf(base, token, channel, u.trace.waId, retryMs) }
              : u,
          );
        }
        // Whether a split burst was allowed rests on when Baton stored its parts.
        if (options.bufferMs !== undefined) {
          evidence = await mapLimit(evidence, 16, async (u) =>
            mayBeSplit(u)
              ? { ...u, storedAt: await storedTimes(base, token, channel, u.trace.waId, retryMs) }
              : u,
          );
        }
      } catch (err) {
        if (!(err instanceof AdminUnreachableError)) throw err;
        unreachable = err;
      }
    }
    const verdict = judge(evidence, refs, {
      crashes: options.crashes === true,
      ...(options.bufferMs !== undefined ? { bufferMs: options.bufferMs } : {}),
      ...(pending !== null ? { pendingInBaton: pending } : {}),
      ...(unreachable !== null ? { adminUnreachable: unreachable.message } : {}),
    });
    const acked = verdict.messages.acked;
    const hints: string[] = [];
    if (acked > 0 && traces.every((t) => sink.callsTo(t.waId).length === 0)) {
      hints.push(`the sink received no reply at all: start Baton with WHATSAPP_API_BASE_URL=${sink.url}`);
    }
    if (traces.some((t) => t.rejected.some((r) => r.status === 401))) {
      hints.push('Baton refused webhook signatures: --secret must be its WHATSAPP_APP_SECRET');
    }
    if (verdict.pendingMessages > 0) {
      hints.push(
        `Baton still held ${pending ?? 0} stored message(s) when the run was judged (queue_depth): slow or stuck workers (check locks_held and the dashboard), or give it longer to settle`,
      );
    }
    if (unreachable !== null) {
      hints.push(
        'the target stopped answering during the run: messages it acknowledged could not be checked; start it again and look at its dead letters and transition logs',
      );
    }
    if (verdict.late > 0) {
      hints.push(
        `${verdict.late} message(s) were recorded late: a burst outlasted Baton's buffer window (BATON_BUFFER_MS)`,
      );
    }
    return {
      hints,
      verdict,
      durationMs,
      messagesPerSec: durationMs > 0 ? acked / (durationMs / 1000) : 0,
      ack: summarize(ctx.ackMs),
      reply: summarize(ctx.replyMs),
      sinkUrl: sink.url,
      seed,
      ...(options.keepSamples
        ? {
            samples: {
              ackMs: ctx.ackMs,
              replyMs: ctx.replyMs,
              replyMsByStep: Object.fromEntries(ctx.replyMsByStep),
            },
          }
        : {}),
    };
  } finally {
    if (ticker) clearInterval(ticker);
    client.close();
    if (ownSink) await sink.close();
  }
}
