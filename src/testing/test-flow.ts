/**
 * `testFlow(flow)`: plays a conversation through a flow in memory, with no server, store or
 * gateway: the same pure `transition()` the engine runs, a mailbox where messages wait for an
 * effect's result, effects run (or answered by the test) by name, and a clock the test moves.
 * @module
 */
import { randomInt } from 'node:crypto';
import {
  actingAgent,
  agentMessage,
  agentWorker,
  escalatedOnResult,
  failedOnAwaited,
  handback,
  takeSession,
  type AgentChange,
} from '../flow/agent.ts';
import {
  eventRefusal,
  quickReplies,
  type DataOf,
  type EffectResultsOf,
  type EventPayloads,
  type EventPayloadsOf,
  type Flow,
  type FlowData,
  type StepIdOf,
} from '../flow/define.ts';
import {
  callbackNumbering,
  effectResultId,
  transition,
  type EffectStart,
  type ResolvedMessage,
  type TransitionEnv,
  type TransitionResult,
} from '../flow/transition.ts';
import { BatonError } from '../errors.ts';
import { closest } from '../spelling.ts';
import type { MessageContent } from '../model/message.ts';
import { attemptEffect, DEFAULT_EFFECT_TIMEOUT_MS, storedResult } from '../engine/effects.ts';
import {
  SNAPSHOT_FORMAT,
  type OutboundBody,
  type SessionSnapshot,
  type TransitionRecord,
} from '../model/session.ts';

/** A reply as the engine would send it. */
export interface TestReply {
  readonly step: string;
  readonly version: number;
  readonly body: OutboundBody;
  /** `baton:<flow>:<step>:<version>[#n][:<wamid>]`, as the engine tags it. */
  readonly callbackData: string;
  readonly isPrompt: boolean;
  /** Plain text of the body (its text, caption or template text), for assertions. */
  readonly text: string;
}

/** A user's message: a text, or any content. */
export type TestInput = string | MessageContent;

export interface TestFlowOptions {
  /** Start of the clock, epoch ms (default 2025-06-15T15:06:40Z). */
  readonly now?: number;
  /** Invalid inputs in a row before a hand-off, when a step sets none (default 3). */
  readonly maxRetries?: number;
  /** Idle time after which a session starts afresh, seconds (default 24 h). */
  readonly sessionTtlSec?: number;
  /**
   * How effects run: `manual` (default) leaves them in `pendingEffects` for `resolve`, `fail`
   * or `runEffects`; `auto` runs the flow's own effect functions after each batch.
   */
  readonly effects?: 'manual' | 'auto';
  /**
   * The user's wa_id (default: a number drawn for each conversation). It names the session, and
   * with it every effect id (the Idempotency-Key your API sees): a fixed one gives every test
   * conversation, in every run, the same keys, so with `effects: 'auto'` an API that answers a
   * key it has seen again would answer one test with another's result.
   */
  readonly user?: string;
  /**
   * A session as an earlier deploy stored it, to test `moved` and `migrate` (outside test
   * QA65-F7): the flow `version` that stored it (default 1), its step (one the flow may no longer
   * have) and its data. The conversation goes on from it, as the engine would load it.
   */
  readonly stored?: {
    readonly flowVersion?: number;
    readonly step: string;
    readonly data?: FlowData;
  };
}

/**
 * A conversation played through a flow: `D` its data, `S` its step ids, `R` each effect's result
 * by name and `Ev` each event's payload by name (all inferred from a `defineFlow` flow).
 */
export interface FlowTest<
  D = FlowData,
  S extends string = string,
  R extends Readonly<Record<string, unknown>> = Readonly<Record<string, unknown>>,
  Ev extends EventPayloads = EventPayloads,
> {
  /** Sends one message (or several, as one batch); resolves with the replies it produced. */
  send(...inputs: TestInput[]): Promise<TestReply[]>;
  /**
   * Posts event `name` (the flow's `events`) as the admin API's events route does: applied in
   * order with the user's messages; resolves with the replies it produced. Rejects, as the route
   * answers, an event the flow has not (`BATON_ERR_UNKNOWN_EVENT`) or a payload its schema
   * refuses (`BATON_ERR_BAD_REQUEST`).
   */
  event<K extends keyof Ev & string>(name: K, payload?: Ev[K]): Promise<TestReply[]>;
  /**
   * Taps choice `id` of the newest prompt offering it (or, with `from`, of that reply). An id no
   * prompt offered that is close to one offered is a typo: `BATON_ERR_TEST_USAGE`, naming it.
   */
  tap(id: string, from?: TestReply): Promise<TestReply[]>;
  /**
   * Answers the oldest pending effect named `name` with `value` (none: `BATON_ERR_TEST_USAGE`), as
   * the engine stores what `run` returned: made JSON, and a value JSON cannot hold or one over
   * 256 KiB of it goes to `onFailure` instead, as it would in production.
   */
  resolve<K extends keyof R & string>(name: K, value: R[K]): Promise<TestReply[]>;
  /** Fails the oldest pending effect named `name`, with `error` (a message, or an Error's). */
  fail(name: keyof R & string, error?: string | Error): Promise<TestReply[]>;
  /** Runs every pending effect with the flow's own functions (and its retry policy, without waits). */
  runEffects(): Promise<TestReply[]>;
  /**
   * An agent takes the session (SPEC 4's hand-off), as `POST /admin/api/sessions/:wa_id/agent`
   * does: one the bot still serves is escalated; the bot then holds the user's messages.
   */
  take(agent?: string): TestReply[];
  /**
   * An agent writes to the user, as `POST /admin/api/sessions/:wa_id/messages` does; returns that
   * reply. `agent` names who writes (default: the agent who has the session): one writing to a
   * waiting session nobody took takes it, and one writing to a colleague's session is refused
   * (`BATON_ERR_TAKEN_BY_OTHER`) unless `confirm`.
   */
  agentSays(text: string, agent?: string, options?: { readonly confirm?: boolean }): TestReply[];
  /**
   * The agent hands the session back at `step`, with `data` they settled with the user (checked
   * by the flow's data schema and the step's `needs`, as the API does); resolves with the step's
   * prompt. Throws the API's error (`BATON_ERR_STEP_NEEDS_DATA`, ...) when it would refuse.
   */
  handback(step: S, data?: Partial<D>): Promise<TestReply[]>;
  /** Moves the clock. */
  advance(ms: number): void;
  /** The session as the store would hold it (`null` before the first message). */
  readonly state: SessionSnapshot | null;
  readonly step: S | null;
  readonly data: Readonly<D>;
  /** Every transition record so far. */
  readonly records: readonly TransitionRecord[];
  /** Every reply so far, in send order. */
  readonly replies: readonly TestReply[];
  /** Effects started and not yet answered. */
  readonly pendingEffects: readonly PendingEffect[];
  /** Messages waiting in the mailbox (for an effect's result). */
  readonly waiting: number;
}

/**
 * Plays a conversation through `flow` in memory.
 * @example
 * const t = testFlow(orderStatusFlow({ apiUrl: 'http://shop.test' }));
 * await t.send('hola');
 * expect(t.data.lang).toBe('es');
 * await t.send('ORD-12345');
 * expect(t.pendingEffects[0]?.name).toBe('lookup');
 * await t.resolve('lookup', { found: false });
 * expect(t.step).toBe('ask_order');
 */
export function testFlow<F extends Flow>(
  flow: F,
  opts: TestFlowOptions = {},
): FlowTest<DataOf<F>, StepIdOf<F>, EffectResultsOf<F>, EventPayloadsOf<F>> {
  const key = {
    channel: 'test-channel',
    user: opts.user ?? `1555${randomInt(10_000_000).toString().padStart(7, '0')}`,
  };
  let now = opts.now ?? 1_750_000_000_000;
  let seq = 0;
  let snapshot: SessionSnapshot | null =
    opts.stored === undefined
      ? null
      : {
          ...key,
          waId: key.user,
          format: SNAPSHOT_FORMAT,
          flow: flow.id,
          flowVersion: opts.stored.flowVersion ?? 1,
          step: opts.stored.step,
          data: opts.stored.data ?? {},
          version: 1,
          visitVersion: 1,
          lastInteraction: Math.floor(now / 1000),
          lastMessageId: null,
          retryCount: 0,
          needsAgent: false,
          createdAt: now,
          outboundSeq: 0,
        };
  const records: TransitionRecord[] = [];
  const replies: TestReply[] = [];
  let mailbox: ResolvedMessage[] = [];
  const pending: EffectStart[] = [];
  const attempts = new Map<string, number>();

  const message = (content: MessageContent, extra: Partial<ResolvedMessage> = {}): ResolvedMessage => {
    seq += 1;
    return {
      id: `wamid.test.${seq}`,
      provider: 'cloud-api',
      channel: key.channel,
      user: key.user,
      waId: key.user,
      timestamp: Math.floor(now / 1000),
      seq,
      storedAt: now,
      content,
      ...extra,
    };
  };

  const textOf = (b: OutboundBody): string =>
    'text' in b && typeof b.text === 'string' ? b.text : 'caption' in b && b.caption ? b.caption : '';

  const envNow = (worker = 'test'): TransitionEnv => ({
    key,
    nowMs: now,
    worker,
    fence: 1,
    sessionTtlSec: opts.sessionTtlSec ?? 86_400,
    maxRetries: opts.maxRetries ?? 3,
  });

  /** Applies a transition's (or a handback's) result: its snapshot, records, replies, effects. */
  const applied = (r: Omit<TransitionResult, 'consumed'>): TestReply[] => {
    // The outbox numbers each reply and effect after the session's last (engine `toOutbound`).
    snapshot = { ...r.snapshot, outboundSeq: r.snapshot.outboundSeq + r.effects.length + r.started.length };
    records.push(...r.records);
    const out: TestReply[] = [];
    const callbackData = callbackNumbering(flow.id);
    for (const e of r.effects) {
      const reply: TestReply = {
        step: e.step,
        version: e.version,
        body: e.body,
        isPrompt: e.isPrompt,
        text: textOf(e.body),
        callbackData: callbackData(e),
      };
      out.push(reply);
      replies.push(reply);
    }
    // As the engine stores them: an effect's input reaches `run` as JSON (a Date as a string).
    pending.push(...r.started.map((e) => JSON.parse(JSON.stringify(e)) as EffectStart));
    return out;
  };

  /** Takes an agent's change: its snapshot, records and reply, if any. */
  const agentChange = (c: AgentChange): TestReply[] => {
    snapshot = c.snapshot;
    records.push(...c.records);
    const out = c.outbound.map((o): TestReply => ({
      step: o.step,
      version: o.version,
      body: o.body,
      isPrompt: o.isPrompt,
      text: textOf(o.body),
      callbackData: o.callbackData,
    }));
    replies.push(...out);
    return out;
  };

  const session = (): SessionSnapshot => {
    if (snapshot === null) throw new Error("no session yet: send the user's first message first");
    return snapshot;
  };

  const runBatch = async (): Promise<TestReply[]> => {
    const out: TestReply[] = [];
    // Like the engine: batches run until nothing applicable is left.
    for (let round = 0; round < 50 && mailbox.length > 0; round += 1) {
      let r: TransitionResult;
      try {
        r = transition(flow, snapshot, mailbox, envNow());
      } catch (err) {
        // As the engine does when it dead-letters such a batch: a session whose flow failed on the
        // awaited result goes to an agent, and the batch leaves the mailbox (outside test
        // QA103-F12: it stayed awaiting, and each later message failed the same way).
        if (snapshot !== null && failedOnAwaited(snapshot, mailbox)) {
          const code = err instanceof BatonError ? err.code : 'BATON_ERR_FLOW_HANDLER';
          const escalated = escalatedOnResult(snapshot, code, envNow());
          snapshot = escalated.snapshot;
          records.push(escalated.record);
        }
        // The engine dead-letters the batch, and the user's next message is handled at the same
        // step: so here too (outside test QA138-F8: every later send threw the first error again).
        mailbox = [];
        throw err;
      }
      if (r.consumed.length === 0 && r.records.length === 0) break;
      const consumed = new Set(r.consumed);
      mailbox = mailbox.filter((m) => !consumed.has(m.id));
      out.push(...applied(r));
    }
    return autoEffects(out);
  };

  /** `out`, then with `effects: 'auto'` what running the pending effects replied. */
  const autoEffects = async (out: TestReply[]): Promise<TestReply[]> => {
    if (opts.effects === 'auto' && pending.length > 0) out.push(...(await runEffects()));
    return out;
  };

  const deliver = (start: EffectStart, ok: boolean, value: unknown, error?: string): Promise<TestReply[]> => {
    pending.splice(pending.indexOf(start), 1);
    const n = attempts.get(start.id) ?? 1;
    mailbox.push(
      message(
        {
          type: 'effect_result',
          effectId: start.id,
          name: start.name,
          ok,
          ...(ok ? { value } : { error: error ?? 'failed' }),
          attempts: n,
        },
        { id: effectResultId(start.id) },
      ),
    );
    return runBatch();
  };

  const oldest = (name: string): EffectStart => {
    const e = pending.find((p) => p.name === name);
    if (!e) {
      const near = flow.effects.has(name) ? undefined : closest(name, flow.effects.keys());
      throw new BatonError(
        'BATON_ERR_TEST_USAGE',
        `no pending effect "${name}"${near ? ` (did you mean "${near}"?)` : ''} (pending: ${pending.map((p) => p.name).join(', ') || 'none'})`,
      );
    }
    return e;
  };

  const runEffects = async (): Promise<TestReply[]> => {
    const out: TestReply[] = [];
    while (pending.length > 0) {
      const start = pending[0]!;
      const def = flow.effects.get(start.name);
      const max = def?.attempts ?? 3;
      let result: { ok: true; value: unknown } | { ok: false; error: string } = {
        ok: false,
        error: `no effect "${start.name}"`,
      };
      // Each attempt as the engine makes it: cut at the effect's `timeoutMs` (an API that hangs
      // ends in `onFailure`, not in a test that never ends), its result made JSON.
      for (let attempt = 1; def && attempt <= max; attempt += 1) {
        attempts.set(start.id, attempt);
        const made = await attemptEffect(def, start.input, {
          effectId: start.id,
          data: start.data,
          attempt,
          timeoutMs: def.timeoutMs ?? DEFAULT_EFFECT_TIMEOUT_MS,
          signal: new AbortController().signal,
        });
        result = made;
        if (made.ok || !made.retryable) break;
      }
      out.push(
        ...(await deliver(
          start,
          result.ok,
          result.ok ? result.value : undefined,
          result.ok ? undefined : result.error,
        )),
      );
    }
    return out;
  };

  // Typed loosely here (names and steps are plain strings at run time), precisely for the caller.
  const t: FlowTest<never> = {
    async send(...inputs) {
      for (const input of inputs) {
        mailbox.push(message(typeof input === 'string' ? { type: 'text', body: input } : input));
      }
      return runBatch();
    },
    async event(name, payload = null) {
      // Refused as the route refuses it: no such event, or a payload its schema refuses (outside
      // test QA101-F2: a test applied payloads the route answers 400).
      const refused = eventRefusal(flow, name, payload);
      if (refused !== undefined) throw refused;
      const content = {
        type: 'event' as const,
        name,
        payload: JSON.parse(JSON.stringify(payload)) as unknown,
      };
      mailbox.push(message(content, { id: `ev:test.${seq + 1}` }));
      return runBatch();
    },
    async tap(id, from) {
      const prompt = from ?? [...replies].reverse().find((r) => r.isPrompt && choiceIds(r.body).has(id));
      if (prompt === undefined) {
        // No prompt offered it: a typo of one that was (outside test QA92-F4: `t.tap('ordr')` was
        // a silent retry), unless it is far from all of them (an `any` step's own ids).
        const near = closest(id, offeredChoices(replies));
        if (near !== undefined)
          throw new BatonError(
            'BATON_ERR_TEST_USAGE',
            `tap("${id}"): no prompt offered it; did you mean "${near}"? (to send it all the same, pass the reply it comes from: t.tap(id, reply))`,
          );
      }
      let title = id;
      if (prompt && prompt.body.type === 'buttons')
        title = prompt.body.buttons.find((b) => b.id === id)?.title ?? id;
      if (prompt && prompt.body.type === 'list')
        title = prompt.body.sections.flatMap((s) => s.rows).find((r) => r.id === id)?.title ?? id;
      mailbox.push(
        message(
          {
            type: 'choice',
            source:
              prompt?.body.type === 'list'
                ? 'list_reply'
                : prompt?.body.type === 'template'
                  ? 'template_button'
                  : 'button_reply',
            id,
            title,
          },
          prompt ? { contextPrompt: { step: prompt.step, version: prompt.version } } : {},
        ),
      );
      return runBatch();
    },
    async resolve(name, value) {
      const start = oldest(name);
      const stored = storedResult(value);
      return stored.ok ? deliver(start, true, stored.value) : deliver(start, false, undefined, stored.error);
    },
    async fail(name, error) {
      return deliver(oldest(name), false, undefined, error instanceof Error ? error.message : error);
    },
    runEffects,
    take(agent = 'agent') {
      return agentChange(takeSession(session(), agent, envNow(`agent:${agent}`)));
    },
    agentSays(text, agent, options) {
      const s = session();
      const by = actingAgent(s, agent, options?.confirm ?? false);
      return agentChange(agentMessage(s, flow, text, envNow(agentWorker(by)), by));
    },
    async handback(step, data) {
      const s = session();
      return autoEffects(
        applied(handback(s, flow, step, envNow(`agent:${s.agent?.name ?? 'unknown'}`), data)),
      );
    },
    advance(ms) {
      now += ms;
    },
    get state() {
      return snapshot;
    },
    get step() {
      return snapshot?.step ?? null;
    },
    get data() {
      return (snapshot?.data ?? {}) as never;
    },
    get records() {
      return records;
    },
    get replies() {
      return replies;
    },
    get pendingEffects() {
      return pending.map((p) => ({ ...p, effectId: p.id }));
    },
    get waiting() {
      return mailbox.length;
    },
  };
  return t as unknown as FlowTest<DataOf<F>, StepIdOf<F>, EffectResultsOf<F>, EventPayloadsOf<F>>;
}

/** An effect started and not yet answered. */
export interface PendingEffect extends EffectStart {
  /** Its `id`, as the effect's `run` gets it (`ctx.effectId`), the idempotency key to send. */
  readonly effectId: string;
}

/** The choice ids a prompt offers: any `id` in its body (buttons, rows, template buttons), and its quick replies. */
function choiceIds(body: TestReply['body']): Set<string> {
  const ids = new Set<string>(quickReplies(body));
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null)
      for (const [k, x] of Object.entries(v)) {
        if (k === 'id' && typeof x === 'string') ids.add(x);
        else walk(x);
      }
  };
  walk(body);
  return ids;
}

/** Every choice id the prompts so far offered. */
function offeredChoices(replies: readonly TestReply[]): Set<string> {
  return new Set(replies.filter((r) => r.isPrompt).flatMap((r) => [...choiceIds(r.body)]));
}
