/**
 * Open-loop load: webhooks OFFERED at a fixed rate, whatever Baton answers. The closed loop of
 * {@link runLoad} slows down with Baton and so never shows what a webhook waits for when the
 * traffic does not: here every webhook is a new user's `hi` (the order flow's start, so each one
 * is a real turn with a reply), sent on a schedule of `ratePerSec` for `durationMs`.
 *
 * Measured: webhook ack latency (from the moment the webhook was handed to the client, over a
 * pool of warm keep-alive connections as a sender keeps; the generator's own lag
 * behind the schedule is reported apart, so a starved generator is visible), replies per
 * second during the offer window, and how long after the last webhook the backlog took to
 * drain (every user answered).
 *
 * @example
 * ```ts
 * const sink = await startReplySink(); // Baton started with WHATSAPP_API_BASE_URL=sink.url
 * const r = await runOpenLoop({ url: 'http://127.0.0.1:3000', secret: 's', sink, ratePerSec: 1000, durationMs: 10_000 });
 * console.log(r.ack.p99, r.repliesPerSec);
 * ```
 * @module
 */
import { randomBytes, randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebhookClient } from './client.ts';
import { DEFAULT_CHANNEL, textMessage, webhookBody, type Channel } from './payloads.ts';
import type { ReplySink } from './sink.ts';
import { summarize, type LatencySummary } from './stats.ts';

export interface OpenLoopOptions {
  /** Baton's base URL. */
  readonly url: string;
  /** Baton's `WHATSAPP_APP_SECRET`. */
  readonly secret?: string | undefined;
  /** The sink Baton sends its replies to. */
  readonly sink: ReplySink;
  /** Webhooks offered per second (default 1000). */
  readonly ratePerSec?: number;
  /** How long the rate is offered, milliseconds (default 10 s). */
  readonly durationMs?: number;
  /** After the last webhook: wait at most this long for every user's first reply (default 15 s). */
  readonly drainTimeoutMs?: number;
  /**
   * Connections to Baton, opened before the run (default 256, as a sender keeps a pool; enough
   * for 1,000/s at 250 ms answers). A webhook that finds them all busy waits for one, and that
   * wait counts in its ack time: the schedule never waits.
   */
  readonly connections?: number;
  readonly channel?: Channel;
  readonly signal?: AbortSignal;
  /** Keep every webhook's send time and ack latency in the report (default false). */
  readonly keepSamples?: boolean;
}

export interface OpenLoopReport {
  readonly offered: number;
  readonly ratePerSec: number;
  /** Actually offered per second over the window (below `ratePerSec` if the generator lagged). */
  readonly offeredPerSec: number;
  /** Webhooks answered 200. */
  readonly acked: number;
  /** Webhooks answered otherwise or not at all (after re-deliveries). */
  readonly failed: number;
  /** Webhook answer times, from the moment each was handed to the client (waiting for a free connection included). */
  readonly ack: LatencySummary;
  /** How late each webhook left behind its schedule (the generator's own lag). */
  readonly sendLag: LatencySummary;
  /** Replies received at the sink during the offer window, per second. */
  readonly repliesPerSec: number;
  /** Users (webhooks) whose first reply came, per second, from the first webhook to the last such reply. */
  readonly answeredPerSec: number;
  /** Users whose first reply came before the drain timeout. */
  readonly answered: number;
  /** From the webhook to its user's first reply. */
  readonly reply: LatencySummary;
  /** From the last webhook sent to the last first reply (the backlog left when the offer stopped). */
  readonly drainMs: number;
  readonly windowMs: number;
  /** Per webhook, in send order: ms since the first webhook left, and its ack latency (-1: none). */
  readonly samples?: { readonly sentMs: readonly number[]; readonly ackMs: readonly number[] };
}

/** Time between the schedule's ticks: each tick sends every webhook that fell due since the last. */
const TICK_MS = 2;

/**
 * Offers `ratePerSec` webhooks per second for `durationMs`, each a new user's first message,
 * then waits for the replies and reports.
 */
export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopReport> {
  const rate = o.ratePerSec ?? 1000;
  const duration = o.durationMs ?? 10_000;
  const total = Math.max(1, Math.round((rate * duration) / 1000));
  const channel = o.channel ?? DEFAULT_CHANNEL;
  const client = new WebhookClient({
    baseUrl: o.url,
    secret: o.secret,
    maxInflight: o.connections ?? 256,
    retries: 0,
  });
  await client.warm(o.connections ?? 256);
  const prefix = `2${String(randomInt(10_000_000)).padStart(7, '0')}`;
  const tag = randomBytes(5).toString('hex').toUpperCase();
  const ts = Math.floor(Date.now() / 1000);
  const users: string[] = [];
  const sentAt: number[] = [];
  const ackMs: number[] = [];
  const ackByIndex: number[] = [];
  const lagMs: number[] = [];
  let acked = 0;
  let failed = 0;
  const posts: Promise<void>[] = [];
  const firstReply = o.sink.calls.length;

  const start = performance.now();
  let next = 0;
  try {
    while (next < total && !o.signal?.aborted) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      for (; next < due; next += 1) {
        const i = next;
        const waId = `${prefix}${String(i).padStart(6, '0')}`;
        const scheduled = start + (i * 1000) / rate;
        users.push(waId);
        const now = performance.now();
        sentAt.push(now);
        lagMs.push(Math.max(0, now - scheduled));
        const body = webhookBody(channel, [textMessage(waId, `wamid.OPEN${tag}${i.toString(36)}`, ts, 'hi')]);
        posts.push(
          client.post(body).then((r) => {
            const ms = performance.now() - now;
            ackMs.push(ms);
            ackByIndex[i] = r.status === 200 ? ms : -1;
            if (r.status === 200) acked += 1;
            else failed += 1;
          }),
        );
      }
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
    const lastSent = performance.now();
    const windowMs = lastSent - start;
    await Promise.all(posts);

    // Every user's first reply, or the drain timeout.
    const deadline = lastSent + (o.drainTimeoutMs ?? 15_000);
    const firstAt = (waId: string): number | undefined => o.sink.callsTo(waId)[0]?.at;
    while (performance.now() < deadline && !o.signal?.aborted) {
      if (users.every((u) => firstAt(u) !== undefined)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const replyMs: number[] = [];
    let lastReply = start;
    users.forEach((u, i) => {
      const at = firstAt(u);
      if (at === undefined) return;
      replyMs.push(at - sentAt[i]!);
      if (at > lastReply) lastReply = at;
    });
    let inWindow = 0;
    for (let k = firstReply; k < o.sink.calls.length; k += 1) {
      const at = o.sink.calls[k]!.at;
      if (at >= start && at <= lastSent) inWindow += 1;
    }
    return {
      offered: users.length,
      ratePerSec: rate,
      offeredPerSec: windowMs > 0 ? (users.length * 1000) / windowMs : 0,
      acked,
      failed,
      ack: summarize(ackMs),
      sendLag: summarize(lagMs),
      repliesPerSec: windowMs > 0 ? (inWindow * 1000) / windowMs : 0,
      answered: replyMs.length,
      answeredPerSec: lastReply > start ? (replyMs.length * 1000) / (lastReply - start) : 0,
      reply: summarize(replyMs),
      drainMs: Math.max(0, lastReply - lastSent),
      windowMs,
      ...(o.keepSamples
        ? {
            samples: {
              sentMs: sentAt.map((t) => t - start),
              ackMs: users.map((_, i) => ackByIndex[i] ?? -1),
            },
          }
        : {}),
    };
  } finally {
    client.close();
  }
}
