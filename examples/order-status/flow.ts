/**
 * Flow `order_status` (SPEC section 5b): an order-status desk that calls the shop's own API
 * through effects. Step ids, data keys, choice ids and what reaches the shop are pinned by the
 * SPEC; the wording is ours, in English and Spanish.
 * @module
 */
import { z } from 'zod';
import {
  clip,
  defineFlow,
  effect,
  EffectError,
  image,
  mediaLink,
  replyProblems,
  type OutboundBody,
  type StepContext,
  type Translate,
  WHATSAPP_LIMITS,
} from '../../src/index.ts';
import { words, type WordKey } from './words.ts';

/** One order as the shop's API describes it. */
export interface ShopOrder {
  readonly number: string;
  readonly status: string;
  readonly eta?: string;
  readonly map_url?: string;
  readonly events: ReadonlyArray<{ readonly at: string; readonly text: string }>;
}

const Order = z.object({
  number: z.string(),
  status: z.string(),
  eta: z.string().optional(),
  map_url: z.string().optional(),
  events: z.array(z.object({ at: z.string(), text: z.string() })),
});

/**
 * The shop's answer to a lookup: as `Order`, but an absent optional field may also come as `null`
 * (many JSON APIs write it so), and the events may be missing.
 */
const ShopAnswer = z.object({
  number: z.string(),
  status: z.string(),
  eta: z.string().nullish(),
  map_url: z.string().nullish(),
  events: z
    .array(z.object({ at: z.string(), text: z.string() }))
    .nullish()
    .transform((e) => e ?? []),
});

/** The shop's answer to a cancel it made. */
const CancelAnswer = z.object({ number: z.string(), status: z.literal('cancelled') });

/** The session's data, declared once: checked whenever a session is loaded. */
export const OrderStatusData = z.object({
  lang: z.enum(['en', 'es']).optional(),
  /** As `ask_order` stores it; an agent's handback `data` is held to it too (outside test QA34-F5). */
  order: z
    .string()
    .regex(/^ORD-\d{5}$/, 'must be an order number as the bot stores it: ORD- and 5 digits, like ORD-12345')
    .optional(),
  /** What the last lookup found. */
  found: Order.optional(),
});
export type OrderStatusData = z.infer<typeof OrderStatusData>;

export type OrderStatusStep =
  | 'ask_order'
  | 'looking_up'
  | 'show_status'
  | 'tracking'
  | 'confirm_cancel'
  | 'cancelling'
  | 'lookup_failed'
  | 'done';

const ORDER_NUMBER = /^ORD-\d{5}$/i;

/**
 * The order number a text is, upper case: `ORD-` and 5 digits once trimmed, in any case (SPEC
 * 5b: what reaches the shop is pinned, so a text that only mentions a number, "don't cancel
 * ORD-12345", is no answer). Else null.
 */
function orderIn(text: string): string | null {
  const trimmed = text.trim();
  return ORDER_NUMBER.test(trimmed) ? trimmed.toUpperCase() : null;
}
const SPANISH = /(^|[^\p{L}\p{N}])(hola|buenas|pedido)(?=$|[^\p{L}\p{N}])/iu;

/**
 * The session's first text (SPEC 5b): it sets the language, and an order number is looked up
 * at once; else the number is asked for, in that language.
 */
function firstText(text: string, c: StepContext<'ask_order' | 'looking_up', OrderStatusData, WordKey>) {
  const lang = SPANISH.test(text) ? 'es' : 'en';
  const order = orderIn(text);
  return order !== null ? c.goto('looking_up', { lang, order }) : c.goto('ask_order', { lang });
}

/**
 * What the shop answered, for one request. 5xx: retried (the effect runtime counts attempts).
 * A redirect is an answer, not followed: fetch would turn the cancel's POST into a GET of the
 * order (a 200 read as "cancelled") or send the idempotency key to another host.
 */
async function call(url: string, init: RequestInit & { signal: AbortSignal }): Promise<Response> {
  const res = await fetch(url, { ...init, redirect: 'manual' });
  if (res.status >= 500) {
    await res.body?.cancel();
    throw new EffectError(`the shop answered ${res.status}`, { retryable: true });
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    throw new EffectError(`the shop answered ${res.status} (a redirect, not followed)`, { retryable: false });
  }
  return res;
}

/** Largest answer the shop may send, bytes: an order and its events fit many times over. */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * The answer's body as JSON (undefined if it is not JSON), read up to {@link MAX_ANSWER_BYTES}:
 * a larger one, or one that never ends, fails the effect (not retried) instead of filling the
 * process's memory.
 */
async function jsonOf(res: Response): Promise<unknown> {
  const tooLarge = (): EffectError =>
    new EffectError(`the shop's answer is larger than ${MAX_ANSWER_BYTES} bytes`, { retryable: false });
  if (Number(res.headers.get('content-length') ?? 0) > MAX_ANSWER_BYTES) {
    await res.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.byteLength;
      if (size > MAX_ANSWER_BYTES) throw tooLarge(); // leaving the loop cancels the stream
      chunks.push(chunk);
    }
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

export interface OrderStatusOptions {
  /** The shop's API, e.g. `https://shop.example/api` (no trailing slash needed). */
  readonly apiUrl: string;
  /** Attempts per effect (SPEC: 3). */
  readonly attempts?: number;
  /** Per-attempt timeout, ms (SPEC: 5000). */
  readonly timeoutMs?: number;
  /** First backoff between attempts, ms (doubles). */
  readonly backoffMs?: number;
}

/**
 * Builds the flow against one shop API. Its type is what `defineFlow` infers, effects and events
 * included, so a test's `t.resolve` and `t.event` with a misspelt name do not compile (outside test
 * QA70-F4: annotated with steps and data alone, they did).
 */
export function orderStatusFlow(o: OrderStatusOptions) {
  const api = o.apiUrl.replace(/\/+$/, '');
  const policy = { attempts: o.attempts ?? 3, timeoutMs: o.timeoutMs ?? 5000, backoffMs: o.backoffMs ?? 500 };

  const lookup = effect({
    ...policy,
    run: async (input: { order: string }, { effectId, signal }) => {
      const res = await call(`${api}/orders/${encodeURIComponent(input.order)}`, {
        headers: { 'idempotency-key': effectId, accept: 'application/json' },
        signal,
      });
      if (res.status === 404) {
        await res.body?.cancel();
        return { found: false as const };
      }
      if (!res.ok) throw new EffectError(`the shop answered ${res.status}`, { retryable: false });
      // A 200 that does not read as this order will not read better on a second call: not retried.
      const answer = ShopAnswer.safeParse(await jsonOf(res));
      if (!answer.success) {
        throw new EffectError(`the shop answered 200 with no order Baton can read: ${answer.error.message}`, {
          retryable: false,
        });
      }
      if (answer.data.number.toUpperCase() !== input.order) {
        throw new EffectError(`the shop answered with another order (${answer.data.number.slice(0, 40)})`, {
          retryable: false,
        });
      }
      const { eta, map_url: mapUrl, ...rest } = answer.data;
      const order: z.infer<typeof Order> = {
        ...rest,
        // As the bot stores it (the shop may answer `ord-12345`): the order the status is of.
        number: input.order,
        ...(eta == null ? {} : { eta }),
        ...(mapUrl == null ? {} : { map_url: mapUrl }),
      };
      return { found: true as const, order };
    },
  });

  const cancel = effect({
    ...policy,
    run: async (input: { order: string }, { effectId, signal }) => {
      const res = await call(`${api}/orders/${encodeURIComponent(input.order)}/cancel`, {
        method: 'POST',
        headers: { 'idempotency-key': effectId, accept: 'application/json' },
        signal,
      });
      if (res.status === 409) {
        await res.body?.cancel();
        return { cancelled: false as const };
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new EffectError(`the shop answered ${res.status}`, { retryable: false });
      }
      // Only the shop's word that this order is cancelled tells the user so.
      const answer = CancelAnswer.safeParse(await jsonOf(res));
      if (!answer.success || answer.data.number.toUpperCase() !== input.order) {
        throw new EffectError('the shop answered 200 without saying the order is cancelled', {
          retryable: false,
        });
      }
      return { cancelled: true as const };
    },
  });

  return defineFlow({
    id: 'order_status',
    version: 1,
    data: OrderStatusData,
    effects: { lookup, cancel },
    words,
    start: 'ask_order',
    // A user who greeted in Spanish keeps Spanish after a reset.
    keepOnReset: ['lang'],
    notices: {
      stale: (_d, { t }) => t('stale'),
      handoff: (_d, { t }) => t('handoff'),
      error: (_d, { t }) => t('sorry'),
    },
    steps: {
      ask_order: {
        say: (_d, { t }) => t('ask_order'),
        accepts: 'any',
        maxRetries: 3,
        to: ['looking_up', 'ask_order'],
        // The language is the first text's (SPEC 5b): a session begun with an image or a voice
        // note is asked in English until the user writes (outside test QA122-F2: an image, then
        // "hola", was English for good), a new order after `done` too, whose start over keeps the
        // last one's (QA128-F1); a reset keyword keeps it, and does not come here.
        first: (input, c) =>
          input.type === 'text' ? firstText(input.text, c) : c.goto('ask_order', { lang: undefined }),
        on: (input, c) => {
          if (input.type === 'text' && c.data.lang === undefined) return firstText(input.text, c);
          const order = input.type === 'text' ? orderIn(input.text) : null;
          if (order !== null) return c.goto('looking_up', { order });
          return c.retry(c.t('bad_format'));
        },
      },
      looking_up: {
        needs: ['order'],
        say: (d, { t }) => t('looking_up', { order: d.order ?? '' }),
        to: ['show_status', 'ask_order', 'lookup_failed'],
        effect: {
          use: 'lookup',
          input: (d) => ({ order: d.order ?? '' }),
          onResult: (r, c) =>
            r.found
              ? c.goto('show_status', { found: r.order })
              : c.goto('ask_order', {}, c.t('not_found', { order: c.data.order ?? '' })),
          onFailure: (_f, c) => c.goto('lookup_failed'),
        },
      },
      show_status: {
        needs: ['order', 'found'],
        // A retry asks the question again without repeating the status.
        say: (d, { t, retry }) => (retry ? t('what_next') : [statusText(d, t), t('what_next')]),
        listButton: (_d, { t }) => t('options'),
        choices: [
          { id: 'track', title: (_d, { t }) => t('track') },
          { id: 'cancel_order', title: (_d, { t }) => t('cancel_order') },
          { id: 'another', title: (_d, { t }) => t('another') },
          { id: 'human', title: (_d, { t }) => t('human') },
        ],
        to: ['tracking', 'confirm_cancel', 'ask_order'],
        on: (input, c) => {
          if (input.type !== 'choice') return c.retry();
          if (input.id === 'track') return c.goto('tracking');
          if (input.id === 'cancel_order') return c.goto('confirm_cancel');
          if (input.id === 'another') return c.restart('ask_order', { lang: c.data.lang ?? 'en' });
          return c.handoff('asked for a human');
        },
      },
      tracking: {
        needs: ['order', 'found'],
        say: (d, { t, retry }) => {
          if (retry) return t('what_next');
          const events = (d.found?.events ?? []).map((e) => `• ${e.at}: ${e.text}`).join('\n');
          // The shop's events, as many as the buttons' message can hold.
          const text = clip(
            `${t('events', { order: shownOrder(d) })}\n${events || t('no_events')}`,
            WHATSAPP_LIMITS.interactiveBody,
          );
          // The shop's map when it is a link WhatsApp can fetch; anything else is left out, and
          // the events still go.
          const map = d.found?.map_url === undefined ? undefined : mapMessage(d.found.map_url, t('map'));
          return map === undefined || replyProblems(map).length > 0 ? [text] : [map, text];
        },
        choices: [
          { id: 'another', title: (_d, { t }) => t('another') },
          { id: 'human', title: (_d, { t }) => t('human') },
        ],
        to: ['ask_order'],
        on: (input, c) => {
          if (input.type !== 'choice') return c.retry();
          if (input.id === 'another') return c.restart('ask_order', { lang: c.data.lang ?? 'en' });
          return c.handoff('asked for a human');
        },
      },
      confirm_cancel: {
        needs: ['order', 'found'],
        say: (d, { t }) => t('confirm_cancel', { order: shownOrder(d) }),
        choices: [
          { id: 'cancel_yes', title: (_d, { t }) => t('cancel_yes') },
          { id: 'cancel_no', title: (_d, { t }) => t('cancel_no') },
        ],
        to: ['cancelling', 'show_status'],
        on: (input, c) => {
          if (input.type !== 'choice') return c.retry();
          return input.id === 'cancel_yes' ? c.goto('cancelling') : c.goto('show_status');
        },
      },
      cancelling: {
        needs: ['order'],
        // Entering it cancels the order: only the user's `cancel_yes` may (SPEC 5b).
        handback: false,
        say: (d, { t }) => t('cancelling', { order: shownOrder(d) }),
        to: ['done', 'show_status'],
        effect: {
          use: 'cancel',
          input: (d) => ({ order: shownOrder(d) }),
          // 409: the shop says it has shipped, whatever the lookup said before; the status shown
          // again with the list says so too.
          onResult: (r, c) =>
            r.cancelled
              ? c.goto('done')
              : c.goto(
                  'show_status',
                  c.data.found ? { found: { ...c.data.found, status: 'shipped' } } : {},
                  c.t('too_late', { order: shownOrder(c.data) }),
                ),
          onFailure: (_f, c) => c.goto('show_status', {}, c.t('cancel_failed')),
        },
      },
      lookup_failed: {
        needs: ['order'],
        say: (_d, { t }) => t('lookup_failed'),
        choices: [
          { id: 'retry_lookup', title: (_d, { t }) => t('retry_lookup') },
          { id: 'human', title: (_d, { t }) => t('human') },
        ],
        to: ['looking_up'],
        on: (input, c) => {
          if (input.type !== 'choice') return c.retry();
          return input.id === 'retry_lookup' ? c.goto('looking_up') : c.handoff('lookup failed');
        },
      },
      done: {
        needs: ['order'],
        // Its text says the order was cancelled: only a cancel the shop confirmed leads here.
        handback: false,
        say: (d, { t }) => t('cancelled', { order: shownOrder(d) }),
        accepts: 'any',
        to: ['ask_order'],
        on: (_input, c) => c.startOver(),
      },
    },
  });
}

/**
 * The order whose status the user was shown: the one the last lookup found. The same as `order`
 * but after an agent's hand-back that set another `order` at a step past the lookup: the status
 * and the cancel stay with the order the user saw and confirmed, never one nobody looked up
 * (outside test QA73-F2). The new number is looked up when the session next passes `looking_up`.
 */
function shownOrder(d: OrderStatusData): string {
  return d.found?.number ?? d.order ?? '';
}

function statusText(d: OrderStatusData, t: Translate<WordKey>): string {
  const f = d.found;
  if (!f || f.status.trim() === '') return t('status_unknown');
  const status = t('status', { order: f.number, status: f.status });
  return clip(
    f.eta === undefined ? status : `${status}\n${t('eta', { eta: f.eta })}`,
    WHATSAPP_LIMITS.textBody,
  );
}

/**
 * The map of a delivery: an image message of the shop's `map_url`, spaces and the like
 * percent-encoded (sent as written, Meta's schema refuses the link: outside tests QA73-F1, QA74-F4).
 */
function mapMessage(url: string, caption: string): OutboundBody {
  return image(mediaLink(url), { caption });
}
