/**
 * The scenario: each simulated user walks the reference bot's `order` flow (SPEC section 5)
 * the way a person on a phone does, with optional chaos.
 *
 * | stage | the user sends | and waits for |
 * | --- | --- | --- |
 * | 1 | `hi` and their name (a burst: they do not wait for the name prompt) | the product prompt |
 * | 2 | a product button, with `context.id` = the product prompt they received | the address prompt |
 * | 3 | their address | the confirm prompt |
 * | 4 | `confirm` (or now and then `cancel`), with `context.id` = the confirm prompt | the closing text |
 *
 * Chaos (each optional): duplicate deliveries of a message (same wamid: together with the
 * original, right after its ack, or after the reply it caused), names and addresses split in two
 * texts, bursts delivered in shuffled order, and a burst's webhooks fired concurrently.
 * Timestamps are strictly increasing per user, so the order the user meant is always defined.
 * @module
 */
import type { PostResult, WebhookClient } from './client.ts';
import { buttonTap, textMessage, webhookBody, type Channel, type CloudMessage } from './payloads.ts';
import type { ReplySink, SinkCall } from './sink.ts';
import { shuffled, type Random } from './stats.ts';

/** The products of the reference bot (SPEC section 5). */
export const ORDER_PRODUCTS = [
  { id: 'sku_550e', title: 'Trail Shoe' },
  { id: 'sku_551a', title: 'Rain Jacket' },
  { id: 'sku_777b', title: 'Day Pack' },
] as const;

/** Where a user's session must end: its step and, when given, exactly its data. */
export interface ExpectedEnd {
  readonly step: string;
  readonly data?: Readonly<Record<string, unknown>>;
  /**
   * `data` lists only the keys to check (a script's `end`: data an effect computes, an order id
   * or a price, cannot be written in advance); otherwise the session's data must be exactly it.
   */
  readonly partial?: boolean;
}

/** What the user's order must say once the flow is done. */
export interface ExpectedOrder extends ExpectedEnd {
  readonly step: 'completed' | 'cancelled';
  readonly data: {
    readonly customer_name: string;
    readonly product_id: string;
    readonly shipping_address: string;
  };
}

/** What a stage whose taps are stale waits for: the notice answering them, not a step's prompt. */
export const STALE_NOTICE = 'stale notice';

/** Chaos switches. */
export interface ChaosOptions {
  /** Share (0..1) of messages delivered twice with the same wamid. */
  readonly duplicates: number;
  /** Deliver each burst in a shuffled order (needs Baton's buffer window to cover the burst). */
  readonly shuffle: boolean;
  /** Send the name and the address as two texts each (joined by Baton when batched). */
  readonly splitTexts: boolean;
  /** Fire a burst's webhooks at once instead of one after another's ack. */
  readonly concurrentBursts: boolean;
  /**
   * Share (0..1) of users who, once past the product prompt, tap another product on that old
   * prompt (the article's "button re-clicks"): Baton must answer with a notice and change nothing.
   */
  readonly retaps: number;
}

/** How a duplicate delivery is timed. */
export type DuplicateTiming = 'together' | 'after-ack' | 'after-reply';

/** One message the user means to send. */
interface Planned {
  readonly id: string;
  readonly ts: number;
  readonly duplicate: DuplicateTiming | null;
  /** Builds the message, given the wamid of the prompt whose button is tapped. */
  readonly build: (contextId: string | undefined) => CloudMessage;
}

interface Stage {
  /** The step whose prompt this stage's input must produce, or `stale notice`. */
  readonly due: string;
  readonly messages: readonly Planned[];
  /** The stage whose reply the buttons tap (default: the previous one). */
  readonly tapsReplyOf?: number;
  /** A stale button tap: the due reply is the notice answering it, and the state must not change. */
  readonly stale?: boolean;
}

/** Everything observed about one user, for the verdict. */
export interface UserTrace {
  readonly waId: string;
  /** Where the session must end; `null`: not checked. */
  readonly expected: ExpectedEnd | null;
  /** A scripted conversation's count of replies in all (any more is a duplicate). */
  readonly expectedReplies?: number;
  /** Replies that came but did not say what the script expects. */
  readonly wrongReplies?: string[];
  /** Every wamid the user sent (originals; duplicates share them). */
  readonly sentIds: string[];
  /** The wamids of each burst of two or more messages the user sent together (one answer due). */
  readonly bursts?: string[][];
  /** Wamids that Baton acknowledged with 200 at least once. */
  readonly ackedIds: Set<string>;
  /** Deliveries whose final answer was not 200, with that answer. */
  readonly rejected: { id: string; status: number; detail: string }[];
  /** Steps whose reply was due and never came (the user stopped there). */
  readonly missingReplies: string[];
  /**
   * How many replies the user had when the wait for the missing one began: one that came after
   * the user stopped waiting (`--timeout`) is late, not lost.
   */
  missingFrom?: number;
  /**
   * The missing reply is whichever comes next (a script's steps name no flow step): any reply
   * from {@link missingFrom} on that repeats no earlier one came late.
   */
  missingNext?: boolean;
  /** The wamids the missing reply answers (the stage's messages). */
  missingFor?: readonly string[];
  /** Whether every due reply came. */
  completed: boolean;
  readonly plannedMessages: number;
}

/** Counters the progress display reads. */
export interface LiveCounters {
  deliveries: number;
  sent: number;
  acked: number;
  replies: number;
  usersDone: number;
  /** Users done without every reply (they gave up waiting, or got a wrong one). */
  usersGaveUp: number;
}

/** What a user run needs. */
export interface DriverContext {
  readonly client: WebhookClient;
  readonly sink: ReplySink;
  readonly channel: Channel;
  readonly chaos: ChaosOptions;
  readonly replyTimeoutMs: number;
  readonly counters: LiveCounters;
  /** Webhook answer times, milliseconds (every delivery, duplicates included). */
  readonly ackMs: number[];
  /** Reply latencies, milliseconds (one per due reply that came). */
  readonly replyMs: number[];
  /** The same, by the step of the reply. */
  readonly replyMsByStep: Map<string, number[]>;
  readonly signal?: AbortSignal;
  /** `performance.now()` of the latest due reply. */
  lastReplyAt: number;
}

const FIRST = ['Ana', 'Ben', 'Chloe', 'Dev', 'Eun', 'Farah', 'Goran', 'Hana', 'Ivo', 'Jun'];
const LAST = ['Silva', 'Okafor', 'Novak', 'Haddad', 'Kim', 'Moreau', 'Rossi', 'Sato', 'Weber', 'Yilmaz'];
const STREETS = ['Main St', 'Harbour Rd', 'Elm Ave', 'Kingsway', 'Rue Verte'];
const CITIES = ['Springfield', 'Porto', 'Osaka', 'Lagos', 'Leeds'];

/** A user's plan: their id, what they will send, and what their order must end as. */
export interface UserPlan {
  readonly waId: string;
  readonly expected: ExpectedOrder;
  readonly stages: readonly Stage[];
}

/**
 * Plans user `index`'s conversation. `wamid` makes fresh message ids; `baseTs` is the Unix
 * second of the user's first message.
 */
export function planUser(
  index: number,
  waId: string,
  baseTs: number,
  chaos: ChaosOptions,
  channel: Channel,
  rnd: Random,
  wamid: () => string,
): UserPlan {
  let ts = baseTs;
  const dup = (): DuplicateTiming | null => {
    if (chaos.duplicates <= 0 || rnd() >= chaos.duplicates) return null;
    const r = rnd();
    return r < 0.4 ? 'together' : r < 0.8 ? 'after-ack' : 'after-reply';
  };
  const text = (body: string): Planned => {
    const id = wamid();
    const at = ts++;
    return { id, ts: at, duplicate: dup(), build: () => textMessage(waId, id, at, body) };
  };
  const tap = (button: { id: string; title: string }): Planned => {
    const id = wamid();
    const at = ts++;
    return {
      id,
      ts: at,
      duplicate: dup(),
      build: (contextId) => buttonTap(channel, waId, id, at, button, contextId),
    };
  };

  const first = `${FIRST[index % FIRST.length]!}${index}`;
  const last = LAST[Math.floor(index / FIRST.length) % LAST.length]!;
  const street = `${1 + (index % 97)} ${STREETS[index % STREETS.length]!}`;
  const city = CITIES[Math.floor(rnd() * CITIES.length)]!;
  const product = ORDER_PRODUCTS[Math.floor(rnd() * ORDER_PRODUCTS.length)]!;
  const cancel = rnd() < 0.1;
  const retap = chaos.retaps > 0 && rnd() < chaos.retaps;
  const other = ORDER_PRODUCTS[(ORDER_PRODUCTS.indexOf(product) + 1) % ORDER_PRODUCTS.length]!;

  const stages: Stage[] = [
    {
      due: 'choose_product',
      messages: [text('hi'), ...(chaos.splitTexts ? [text(first), text(last)] : [text(`${first} ${last}`)])],
    },
    { due: 'collect_shipping_address', messages: [tap(product)] },
    // An old button: another product, tapped on the product prompt the user has moved past.
    ...(retap ? [{ due: STALE_NOTICE, messages: [tap(other)], tapsReplyOf: 0, stale: true }] : []),
    {
      due: 'confirm_order',
      messages: chaos.splitTexts ? [text(street), text(city)] : [text(`${street} ${city}`)],
    },
    {
      due: cancel ? 'cancelled' : 'completed',
      messages: [tap(cancel ? { id: 'cancel', title: 'Cancel' } : { id: 'confirm', title: 'Confirm' })],
    },
  ];
  return {
    waId,
    expected: {
      step: cancel ? 'cancelled' : 'completed',
      data: {
        customer_name: `${first} ${last}`,
        product_id: product.id,
        shipping_address: `${street} ${city}`,
      },
    },
    stages,
  };
}

/** Runs one user's plan against Baton, recording what happened. */
/** Records one delivery's outcome in `trace` and the live counters. */
export function recorder(ctx: DriverContext, trace: UserTrace): (m: CloudMessage, r: PostResult) => void {
  return (m, r) => {
    ctx.counters.deliveries += 1;
    ctx.ackMs.push(r.ms);
    if (r.status === 200) {
      if (!trace.ackedIds.has(m.id)) ctx.counters.acked += 1;
      trace.ackedIds.add(m.id);
    } else {
      trace.rejected.push({ id: m.id, status: r.status, detail: r.detail.slice(0, 200) });
    }
  };
}

/** Posts one message as its own webhook and records it; resolves with the time it was sent. */
export function deliverer(
  ctx: DriverContext,
  record: (m: CloudMessage, r: PostResult) => void,
): (m: CloudMessage) => Promise<number> {
  return async (m) => {
    const r = await ctx.client.post(webhookBody(ctx.channel, [m]));
    record(m, r);
    return r.sentAt;
  };
}

export async function runUser(plan: UserPlan, ctx: DriverContext, rnd: Random): Promise<UserTrace> {
  const { client, sink, chaos, counters } = ctx;
  const trace: UserTrace = {
    waId: plan.waId,
    expected: plan.expected,
    sentIds: [],
    bursts: [],
    ackedIds: new Set(),
    rejected: [],
    missingReplies: [],
    completed: false,
    plannedMessages: plan.stages.reduce((n, s) => n + s.messages.length, 0),
  };

  const record = recorder(ctx, trace);
  const deliver = deliverer(ctx, record);
  const planned = (p: Planned): void => {
    trace.sentIds.push(p.id);
    counters.sent += 1;
  };

  /** Sends one message and any duplicate due with it; resolves with the original's send time. */
  const sendOne = async (p: Planned, m: CloudMessage): Promise<number> => {
    planned(p);
    if (p.duplicate === 'together') {
      const [at] = await Promise.all([deliver(m), deliver(m)]);
      return at;
    }
    const at = await deliver(m);
    if (p.duplicate === 'after-ack') await deliver(m);
    return at;
  };

  /** Fires a whole burst at once (duplicates due "together" included); resolves with send times. */
  const sendBurst = async (burst: readonly { p: Planned; m: CloudMessage }[]): Promise<number[]> => {
    const wire = burst.flatMap(({ p, m }) => (p.duplicate === 'together' ? [m, m] : [m]));
    for (const { p } of burst) planned(p);
    const results = await client.postAll(wire.map((m) => webhookBody(ctx.channel, [m])));
    results.forEach((r, i) => record(wire[i]!, r));
    for (const { p, m } of burst) if (p.duplicate === 'after-ack') await deliver(m);
    return results.map((r) => r.sentAt);
  };

  const replies: SinkCall[] = [];
  for (const [index, stage] of plan.stages.entries()) {
    if (ctx.signal?.aborted) break;
    const cursor = sink.callsTo(plan.waId).length;
    const contextId = replies[stage.tapsReplyOf ?? index - 1]?.providerMessageId;
    const built = stage.messages.map((p) => ({ p, m: p.build(contextId) }));
    const ids = new Set(built.map(({ p }) => p.id));
    if (ids.size > 1) trace.bursts!.push([...ids]);
    const order = chaos.shuffle ? shuffled(built, rnd) : built;
    let sentAt: number[];
    if (chaos.concurrentBursts) {
      sentAt = await sendBurst(order);
    } else {
      sentAt = [];
      for (const { p, m } of order) sentAt.push(await sendOne(p, m));
    }
    // The reply is due once the burst's last message is in.
    const triggerAt = Math.max(...sentAt);
    const reply: SinkCall | null = await sink.waitFor(
      plan.waId,
      (c) =>
        c.callback !== null &&
        (stage.stale
          ? c.callback.inReplyTo !== undefined && ids.has(c.callback.inReplyTo)
          : c.callback.inReplyTo === undefined && c.callback.step === stage.due),
      cursor,
      ctx.replyTimeoutMs,
      ctx.signal,
    );
    if (reply === null) {
      trace.missingReplies.push(stage.due);
      trace.missingFrom = cursor;
      trace.missingFor = [...ids];
      break;
    }
    counters.replies += 1;
    const latency = Math.max(0, reply.at - triggerAt);
    ctx.replyMs.push(latency);
    let byStep = ctx.replyMsByStep.get(stage.due);
    if (byStep === undefined) ctx.replyMsByStep.set(stage.due, (byStep = []));
    byStep.push(latency);
    ctx.lastReplyAt = Math.max(ctx.lastReplyAt, reply.at);
    replies[index] = reply;
    for (const { p, m } of built) if (p.duplicate === 'after-reply') await deliver(m);
  }
  trace.completed = trace.missingReplies.length === 0 && !ctx.signal?.aborted;
  counters.usersDone += 1;
  if (!trace.completed) counters.usersGaveUp += 1;
  return trace;
}
