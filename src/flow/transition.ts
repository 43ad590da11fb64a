/**
 * The pure core of Baton: `transition(flow, snapshot, batch, env)` returns the next snapshot,
 * the transition records, the replies to send and the effects to start. No I/O, no clock (the
 * time comes in `env`). The engine commits all of it atomically, then sends the replies and
 * runs the effects; an effect's result comes back as an input in the session's mailbox.
 * @module
 */
import { createHash } from 'node:crypto';
import { BatonError, FlowRuntimeError, thrownAt, thrownText, type FlowErrorCode } from '../errors.ts';
import {
  IGNORED_CONTENT_TYPES,
  isExpiryEvent,
  logSessionId,
  typesChoices,
  type SessionKey,
  type StoredMessage,
} from '../model/message.ts';
import {
  SNAPSHOT_FORMAT,
  type OutboundBody,
  type PromptRef,
  type SessionSnapshot,
  type TransitionKind,
  type TransitionRecord,
} from '../model/session.ts';
import {
  choicesOf,
  keywordForm,
  promptsOf,
  meantStep,
  schemaIssues,
  translator,
  wordsOf,
  type Choice,
  type Flow,
  type FlowData,
  type Outcome,
  type Replies,
  type StepContext,
  type StepDef,
  type StepInput,
  type Words,
} from './define.ts';
import { replyProblems } from './reply-check.ts';

/** A stored message with its `context.id` resolved by the engine. */
export interface ResolvedMessage extends StoredMessage {
  /** The prompt its `context.id` names; `null` when Baton knows no such prompt; absent without context. */
  readonly contextPrompt?: PromptRef | null;
}

export interface TransitionEnv {
  readonly key: SessionKey;
  /** Epoch milliseconds, for `at` and `created_at`. */
  readonly nowMs: number;
  readonly worker: string;
  readonly fence: number;
  readonly sessionTtlSec: number;
  readonly maxRetries: number;
  /**
   * The dedupe window, seconds: in a session with a `last_interaction`, a message whose timestamp
   * is older than its storage time minus this is recorded `late`, never applied (its id may have
   * left the dedupe store already, so a replay must have no second effect). Unset: no such check.
   */
  readonly dedupeTtlSec?: number;
  /**
   * The flow a new session would start with this message in (the router's pick), for a session
   * that expires in this batch: an expired session is handled as a new one (SPEC 5). Unset, or
   * undefined for the message: the session keeps its flow.
   */
  readonly route?: (m: StoredMessage) => Flow | undefined;
}

/** A reply to send once the batch is committed. */
export interface Effect {
  readonly body: OutboundBody;
  readonly step: string;
  /** The state version that produced it. */
  readonly version: number;
  /** The step's prompt (as opposed to a notice). */
  readonly isPrompt: boolean;
  /** For a notice answering one message without a state change: that message's id. */
  readonly inReplyTo?: string;
}

/**
 * The `biz_opaque_callback_data` of one state change's replies, in order (SPEC 3):
 * `baton:<flow>:<step>:<version>`, with `#<n>` after the version on the second and later messages
 * of one version, and `:<message id>` on a notice answering one message. One numbering per state
 * change: call this once per change, then its result once per reply.
 */
export function callbackNumbering(flow: string): (e: Effect) => string {
  const perVersion = new Map<number, number>();
  return (e) => {
    if (e.inReplyTo !== undefined) return `baton:${flow}:${e.step}:${e.version}:${e.inReplyTo}`;
    const n = (perVersion.get(e.version) ?? 0) + 1;
    perVersion.set(e.version, n);
    return `baton:${flow}:${e.step}:${e.version}${n > 1 ? `#${n}` : ''}`;
  };
}

/** An effect a step started: committed with the batch, run by the engine after commit. */
export interface EffectStart {
  /** Stable across retries and crashes, never reused (derived from the session and version). */
  readonly id: string;
  readonly name: string;
  readonly input: unknown;
  /** The data when it started (handed to the effect function). */
  readonly data: FlowData;
  readonly step: string;
  /** The state version whose transition started it. */
  readonly version: number;
}

/** The most a session's data may hold, in characters of JSON (four times an effect's result). */
export const MAX_DATA_CHARS = 1024 * 1024;

export interface TransitionResult {
  readonly snapshot: SessionSnapshot;
  readonly records: TransitionRecord[];
  /** The replies to send, in order. */
  readonly effects: Effect[];
  /** Effects to run after commit. */
  readonly started: EffectStart[];
  /**
   * Ids of the batch's messages this run applied or recorded. The others wait in the mailbox
   * (an effect's result is awaited) and come again with a later batch.
   */
  readonly consumed: string[];
  /** Why the stored data no longer fit the flow's data schema, when the session restarted for it. */
  readonly unfit?: string;
}

/**
 * The ids the user's newest message names that the session does not have yet (a phone number
 * first seen, a business-scoped id first sent, a number changed): replies go to the number the
 * user writes from, and the stores find the session by either id.
 */
function newIds(s: SessionSnapshot, m: StoredMessage): Partial<SessionSnapshot> {
  const waId = m.waId !== undefined && m.waId !== s.waId ? { waId: m.waId } : {};
  const userId = m.userId !== undefined && m.userId !== s.userId ? { userId: m.userId } : {};
  return { ...waId, ...userId };
}

/** A session that has never been stored. */
export function freshSnapshot(
  flow: Flow,
  key: SessionKey,
  nowMs: number,
  first?: StoredMessage,
): SessionSnapshot {
  return {
    channel: key.channel,
    user: key.user,
    format: SNAPSHOT_FORMAT,
    flow: flow.id,
    flowVersion: flow.version,
    step: null,
    data: {},
    version: 0,
    visitVersion: 0,
    lastInteraction: null,
    lastMessageId: null,
    retryCount: 0,
    needsAgent: false,
    createdAt: nowMs,
    outboundSeq: 0,
    ...(first?.waId !== undefined ? { waId: first.waId } : {}),
    ...(first?.userId !== undefined ? { userId: first.userId } : {}),
  };
}

/**
 * Why `flow` (as this process serves it) must not run a session stored at a step: it is another
 * flow's (`other_flow`: that flow is not served here), or a newer version of this one wrote it
 * (`newer_version`: its data and steps may be ones this version does not know). Null: it may.
 */
export function notServedBy(
  flow: Pick<Flow, 'id' | 'version'>,
  s: Pick<SessionSnapshot, 'flow' | 'flowVersion' | 'step'>,
): 'other_flow' | 'newer_version' | null {
  if (s.step === null) return null;
  if (s.flow !== flow.id) return 'other_flow';
  return s.flowVersion > flow.version ? 'newer_version' : null;
}

/**
 * Orders a batch: WhatsApp timestamp, then arrival: the mailbox's order, where a message the
 * intake log restored after a Redis restart (stored before the restart, though it joins the
 * mailbox after what came since) comes first, unless the other message's place in that log is
 * earlier (a message of the same webhook, stored by its redelivery while the reaper restored
 * this one: a CI run of test/distributed/volatile-redis-crash applied a stale button's webhook
 * text first). Not the storage times: two ingress processes stamp them with their own estimates
 * of one clock, a few milliseconds apart, and a button answered before the user typed the next
 * text was applied after it (outside test QA45-F1).
 */
export function orderBatch<M extends StoredMessage>(batch: readonly M[]): M[] {
  return [...batch].sort((a, b) => a.timestamp - b.timestamp || restoredFirst(a, b) || a.seq - b.seq);
}

/** Whether `a` reached the session's mailbox before `b` (as {@link orderBatch} tells arrival). */
function arrivedBefore(a: StoredMessage, b: StoredMessage): boolean {
  return (restoredFirst(a, b) || a.seq - b.seq) < 0;
}

/** Between a message restored from the intake log and one that was not: which comes first. */
function restoredFirst(a: StoredMessage, b: StoredMessage): number {
  const restored = Number(b.restored === true) - Number(a.restored === true);
  if (restored === 0 || a.logged === undefined || b.logged === undefined) return restored;
  return a.logged[0] - b.logged[0] || a.logged[1] - b.logged[1] || restored;
}

/** The id of the effect started by the transition to `version`: the idempotency key. */
export function effectIdFor(s: SessionSnapshot, version: number): string {
  const h = createHash('sha256').update(`${s.channel}\n${s.user}\n${s.createdAt}\n${version}`).digest('hex');
  return `fx_${version}_${h.slice(0, 24)}`;
}

/** The mailbox id of an effect's result (a second result for the same effect is a duplicate). */
export function effectResultId(effectId: string): string {
  return `fx:${effectId}`;
}

/** Whether a stored message is an effect's result rather than the user's input. */
export function isEffectResult(m: StoredMessage): boolean {
  return m.content.type === 'effect_result';
}

/** Runs one batch of a session's messages through its flow. */
export function transition(
  flow: Flow,
  prev: SessionSnapshot | null,
  batch: readonly ResolvedMessage[],
  env: TransitionEnv,
): TransitionResult {
  if (prev !== null && batch.length > 0 && batch.every(isExpiryEvent)) return expireIdle(prev, batch, env);
  const user = batch.find((m) => !isEffectResult(m));
  return new BatchRun(flow, prev ?? freshSnapshot(flow, env.key, env.nowMs, user), env).run(
    orderBatch(batch),
  );
}

/**
 * A message whose own timestamp was not trusted (far ahead: {@link trustedTimestamp}) is never
 * late: its storage time stood in, and it may still trail the newest timestamp processed when
 * that one came from a clock a little ahead (trusted, within 5 minutes). So it is taken as sent
 * then, and one bad clock after a fast one cannot silence a user (SPEC 1.5; outside test QA49-F1:
 * a name stamped 10 s ahead, then an address stamped a day ahead, recorded the address `late`).
 */
function notBehind<M extends StoredMessage>(m: M, last: number | null): M {
  return m.clockAhead === true && last !== null && m.timestamp < last ? { ...m, timestamp: last } : m;
}

/** Whether `m` is one of `flow`'s reset keywords: a text, trimmed, in any case, inner white space as one space. */
export function isResetKeyword(flow: Flow, m: StoredMessage): boolean {
  return m.content.type === 'text' && flow.resetKeywords.has(keywordForm(m.content.body));
}

/**
 * A retention purge's expiry events, alone in a batch (`backends/retention.ts`): a session idle
 * past `BATON_SESSION_TTL` expires as a user's late message would expire it (recorded `expired`,
 * a new version, no step, no data, no hand-off), and the events are recorded `ignored`. No flow
 * code runs and nothing is sent, whatever flow or version wrote the session: housekeeping must
 * not message a user (outside test QA74: a `migrate` that threw sent the user an apology for a
 * message they never wrote, and a session of a flow no longer served was handed to an agent, the
 * user told a person would answer). Awaiting an effect, it is not idle: the result comes back.
 * With a user's message in the same batch, the batch is the user's, and the events only `ignored`.
 */
function expireIdle(
  prev: SessionSnapshot,
  events: readonly ResolvedMessage[],
  env: TransitionEnv,
): TransitionResult {
  const run = new BatchRun(null, prev, env);
  run.expireIdle(
    events.map((m) => m.id),
    Math.max(...events.map((m) => m.timestamp)),
  );
  return run.result();
}

/** An agent's reset: fresh session at no step; nothing is sent. */
export function adminReset(prev: SessionSnapshot, env: TransitionEnv): TransitionResult {
  const run = new BatchRun(null, prev, env);
  // `last_interaction` stays: it is the newest timestamp processed (SPEC 1.5), and a message
  // older than it that arrives after the reset is late, not a new conversation's first.
  run.change('admin_reset', null, [], { data: {}, retryCount: 0, needsAgent: false });
  return run.result();
}

/**
 * An agent hands the session back to the bot at `step`: a new visit of that step (version + 1,
 * a `handback` record, its prompt sent, its effect started if it has one), `needs_agent`,
 * `retry_count` and the agent's claim cleared, `data` kept.
 */
export function handbackTransition(
  flow: Flow,
  prev: SessionSnapshot,
  step: string,
  env: TransitionEnv,
): TransitionResult {
  const { agent: _released, ...rest } = prev;
  const run = new BatchRun(flow, rest, env);
  run.handback(step);
  return run.result();
}

/**
 * The stored session's data as `flow` has it: through the flow's `migrate` when an earlier version
 * of the flow stored it (as a batch upgrades it), else as stored. For an agent's hand-back, which
 * enters a step with that data without running a batch.
 */
export function migratedData(flow: Flow, prev: SessionSnapshot, env: TransitionEnv): FlowData {
  if (flow.migrate === undefined || prev.flowVersion >= flow.version) return prev.data;
  return new BatchRun(flow, prev, env).migrated();
}

/**
 * The choice a user picked by typing its number or title, if any, on a gateway that shows choices
 * as text (WASender).
 */
function typedChoice(choices: readonly Choice[], m: StoredMessage): Choice | undefined {
  if (!typesChoices(m.provider) || m.content.type !== 'text' || choices.length === 0) return undefined;
  const said = m.content.body.trim().toLowerCase();
  // "3", "3." or "3)": the list shows "3. Day Pack" (outside test QA35-F7).
  const number = /^(\d{1,2})[.)]?$/.exec(said);
  const n = number === null ? 0 : Number(number[1]);
  return choices[n - 1] ?? choices.find((c) => c.title.toLowerCase() === said);
}

/** `s` active at `at` (Unix seconds) by something other than its user's message (`activeAt`). */
export function activeNow(s: SessionSnapshot, at: number): SessionSnapshot {
  return at > (s.activeAt ?? 0) ? { ...s, activeAt: at } : s;
}

/** When the session was last active: its user's newest message, or a newer event or agent's act (Unix seconds). */
function lastActive(s: SessionSnapshot): number {
  return Math.max(s.lastInteraction ?? 0, s.activeAt ?? 0);
}

/** A snapshot without the bookkeeping of a visit that is over. */
function leftVisit(s: SessionSnapshot): SessionSnapshot {
  if (s.awaiting === undefined && s.handoffReason === undefined) return s;
  const { awaiting: _a, handoffReason: _h, ...rest } = s;
  return rest;
}

/** An outcome that begins the conversation anew: a goto that clears the data, or a start over. */
function startsAnew(o: Outcome): boolean {
  return o.kind === 'start_over' || (o.kind === 'goto' && o.clear === true);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

class BatchRun {
  private s: SessionSnapshot;
  private readonly records: TransitionRecord[] = [];
  private readonly effects: (Effect | null)[] = [];
  private readonly started: EffectStart[] = [];
  private unfit: string | undefined;
  private readonly consumed: string[] = [];
  /** Indexes into `effects` of the prompts sent for the current visit of the current step. */
  private visitPrompts: number[] = [];
  /** The indices (in `effects`) of the prompts this batch's retries queued for the current visit. */
  private retryPrompts: number[] = [];
  /**
   * Prompts of the current visit that no input of this batch can have answered (the visit began
   * with an effect's result or an event): kept when the batch leaves the visit; a retry that
   * repeats one word for word still asks it once.
   */
  private keptPrompts: number[] = [];

  /** The step the batch started at (errors outside handlers are named by it). */
  private readonly startStep: string | null;

  constructor(
    /** The session's flow; another one once it expires and the router picks that (`env.route`). */
    private flow: Flow | null,
    snapshot: SessionSnapshot,
    private readonly env: TransitionEnv,
  ) {
    this.s = snapshot;
    this.startStep = snapshot.step;
  }

  result(): TransitionResult {
    return {
      snapshot: this.s,
      records: this.records,
      effects: this.effects.filter((e): e is Effect => e !== null),
      started: this.started,
      consumed: this.consumed,
      ...(this.unfit === undefined ? {} : { unfit: this.unfit }),
    };
  }

  run(ordered: ResolvedMessage[]): TransitionResult {
    this.upgrade();
    const results = ordered.filter(isEffectResult);
    const messages = ordered.filter((m) => !isEffectResult(m));
    // An awaited effect's result goes first: the messages that waited for it come after it. But
    // a reset keyword never waits (SPEC 5b): one that arrived before the result is applied first,
    // with the messages before it (at the effect's step, where they are retries), and the result
    // then comes for a visit the session has left (recorded, not applied, nothing sent). The
    // result came first when both were in the mailbox at once: the user who wrote "reset" while a
    // lookup ran was sent the old order's status (outside test QA99-F1).
    const reset =
      this.s.awaiting === undefined || results.length === 0
        ? -1
        : messages.findIndex((m) => this.isKeyword(m) && results.some((r) => arrivedBefore(m, r)));
    this.applyMessages(messages.slice(0, reset + 1));
    for (const m of results) this.applyResult(m);
    this.applyMessages(messages.slice(reset + 1));
    this.storable();
    return this.result();
  }

  /**
   * What flow code gave this batch can be stored as JSON: the data, the messages, the effects'
   * inputs. A BigInt or a circular object failed only in the store's commit, which was tried
   * again and again: the session stuck, no dead letter, no notice, the error naming no flow nor
   * step (outside test QA138-F1). It is the flow's error, final, like data its schema refuses.
   */
  private storable(): void {
    const refuse = (detail: string, err?: unknown): FlowRuntimeError =>
      this.flowError('BATON_ERR_FLOW_DATA', this.s.step, `${detail}${this.beganElsewhere(this.s.step)}`, err);
    const json = (what: string, value: unknown): string => {
      try {
        return JSON.stringify(value) ?? '';
      } catch (err) {
        throw refuse(`${what} cannot be stored as JSON: ${thrownText(err)}`, err);
      }
    };
    // Read and written with every batch: 5 MB of data a handler set was taken (outside test
    // QA138-F2), where an effect's result may hold 256 KiB.
    const data = json('its data', this.s.data).length;
    if (data > MAX_DATA_CHARS)
      throw refuse(
        `its data is ${data} characters of JSON, over the ${MAX_DATA_CHARS} a session's data may hold`,
      );
    this.effects.forEach((e, i) => e !== null && json(`message ${i + 1} it sends`, e.body));
    for (const e of this.started) json(`the input of its effect ${e.name}`, e.input);
  }

  /** Applies the user's messages (and events) in order; those that wait stay in the mailbox. */
  private applyMessages(messages: ResolvedMessage[]): void {
    let flow = this.flow!;
    let i = 0;
    while (i < messages.length) {
      const m = notBehind(messages[i]!, this.s.lastInteraction);
      if (this.s.awaiting !== undefined && !messages.slice(i).some((n) => this.isKeyword(n))) {
        // Waiting for an effect: these stay in the mailbox. A reset keyword never waits: the
        // messages before it are applied here (at the effect's step, where they are retries).
        break;
      }
      if (isExpiryEvent(m)) {
        // Beside a user's message: the user's message expires the session, or shows it in use.
        this.note('ignored', [m.id]);
        i += 1;
        continue;
      }
      if (m.content.type === 'event') {
        this.applyEvent(m);
        i += 1;
        continue;
      }
      const last = this.s.lastInteraction;
      // A replay whose id the dedupe store has forgotten (stamped beyond the window) and that is
      // not newer than `last_interaction` may be the newest message applied, come again: late.
      // One strictly newer was never applied, whatever its age (SPEC 1.5: outside test
      // QA104-F1, a conversation replayed from 8-day-old bodies was all late after its first
      // message), and a new session's first message has nothing to repeat.
      const beyondDedupe =
        last !== null &&
        m.timestamp <= last &&
        this.env.dedupeTtlSec !== undefined &&
        m.timestamp < Math.floor(m.storedAt / 1000) - this.env.dedupeTtlSec;
      if ((last !== null && m.timestamp < last) || beyondDedupe) {
        this.note('late', [m.id]);
        i += 1;
        continue;
      }
      if (IGNORED_CONTENT_TYPES.has(m.content.type)) {
        // No input to a flow: it neither expires the session nor answers anything.
        this.touch(m);
        this.note(this.s.needsAgent ? 'held' : 'ignored', [m.id]);
        i += 1;
        continue;
      }
      // A session at no step (reset by an agent) has nothing to expire: it starts as a new one.
      // An event applied, or an agent's act, since keeps it alive too.
      if (this.idleAt(m.timestamp)) {
        this.startAfresh('expired', [m.id]);
        // A new session from here: the router picks its flow, as for any first message.
        const routed = this.env.route?.(m);
        if (routed !== undefined && routed.id !== flow.id) {
          this.flow = flow = routed;
          this.s = { ...this.s, flow: routed.id, flowVersion: routed.version };
        }
      }
      this.touch(m);
      if (this.s.needsAgent) {
        this.note('held', [m.id]);
        i += 1;
        continue;
      }
      const keyword = this.isKeyword(m);
      const step = this.s.step === null ? undefined : flow.steps.get(this.s.step);
      if (step === undefined) {
        // A new session (or one reset by an agent, or whose step the flow no longer has).
        const kind = this.s.step === null ? 'advance' : 'reset';
        const start = flow.steps.get(flow.start)!;
        if (start.first === undefined || keyword) {
          this.enter(kind, flow.start, [m.id], { data: this.shaped({}) });
          i += 1;
          continue;
        }
        const input = this.readInput(messages, i, start, true);
        i = input.next;
        this.s = { ...this.s, data: {} };
        this.begin(kind, input.input);
        continue;
      }
      if (keyword) {
        this.enter('reset', flow.start, [m.id], { data: this.shaped(this.keptOnReset()) });
        i += 1;
        continue;
      }
      const handoff = this.handoffKeyword(m);
      if (handoff !== undefined && !this.picksChoice(step, m)) {
        this.escalate([m.id], `asked for a person ("${handoff}")`);
        i += 1;
        continue;
      }
      const before = this.s;
      const read = this.readInput(messages, i, step, false);
      const at = i;
      i = read.next;
      if (read.stale) {
        this.note('stale_input', [m.id]);
        this.emit({
          body: { type: 'text', text: this.words(flow.notices.stale) },
          isPrompt: false,
          inReplyTo: m.id,
        });
        continue;
      }
      if (step.effect !== undefined && this.s.awaiting === undefined) {
        // At an effect's step with no effect awaited (an agent handed the session back here):
        // the input starts the step's effect, as entering the step would have.
        this.enter('advance', step.id, [...read.input.messageIds], {});
        continue;
      }
      let input = read.input;
      let outcome =
        read.valid && step.on ? this.decide(step, 'on', () => step.on!(input, this.ctx(step))) : null;
      if (
        outcome !== null &&
        startsAnew(outcome) &&
        input.messageIds.length > 1 &&
        m.content.type === 'text'
      ) {
        // Texts of a burst, joined at a step whose answer starts the conversation anew (the
        // reference bot's `completed`: any message is a new order): the first text starts it,
        // and the texts after it are answers at the step it goes to, as in a new session
        // (outside test QA36-F1: "hi again", "Mary" was a new order that swallowed the name).
        const alone: StepInput = { type: 'text', text: m.content.body.trim(), messageIds: [m.id] };
        const again = this.decide(step, 'on', () => step.on!(alone, this.ctx(step)));
        if (startsAnew(again)) {
          [input, outcome, i] = [alone, again, at + 1];
          // The texts after it are read again: the session has not seen them yet.
          this.s = {
            ...this.s,
            lastInteraction: before.lastInteraction,
            lastMessageId: before.lastMessageId,
          };
        }
      }
      if (outcome?.kind === 'start_over') {
        // The flow's own reset: what `keepOnReset` names stays, as after a reset keyword.
        const kept = this.keptOnReset();
        this.s = { ...this.s, data: kept };
        const start = flow.steps.get(flow.start)!;
        if (start.first === undefined)
          this.enter('advance', flow.start, [...input.messageIds], { data: this.shaped(kept) });
        else this.begin('advance', input);
        continue;
      }
      this.apply(step, outcome ?? { kind: 'retry' }, [...input.messageIds]);
    }
    for (const m of messages.slice(0, i)) this.consumed.push(m.id);
  }

  /** The data a reset keeps: the keys the flow's `keepOnReset` names that the session has. */
  private keptOnReset(): Record<string, unknown> {
    return Object.fromEntries(
      this.flow!.keepOnReset.filter((k) => k in this.s.data).map((k) => [k, this.s.data[k]]),
    );
  }

  /** Reads the input at `messages[i]`: consecutive texts joined; a tapped button judged. */
  private readInput(
    messages: ResolvedMessage[],
    i: number,
    step: StepDef,
    first: boolean,
  ): { input: StepInput; valid: boolean; stale: boolean; next: number } {
    const flow = this.flow!;
    const m = messages[i]!;
    const choices = first
      ? []
      : this.guard(step, 'choices', () => choicesOf(step, this.s.data, this.wordsCtx()));
    const typed = m.content.type === 'text' ? typedChoice(choices, m) : undefined;
    if (typed) {
      // A gateway without buttons (WASender) shows choices as a numbered list.
      return {
        input: { type: 'choice', id: typed.id, title: typed.title, messageIds: [m.id] },
        valid: true,
        stale: false,
        next: i + 1,
      };
    }
    if (m.content.type === 'choice') {
      const id = m.content.id;
      const accepted = choices.some((c) => c.id === id);
      const owners = flow.choiceSteps.get(id) ?? [];
      const ctx = m.contextPrompt;
      const earlierVisit =
        !first && ctx != null && (ctx.step !== step.id || ctx.version < this.s.visitVersion);
      const stale = earlierVisit || (!first && !accepted && owners.some((o) => o !== step.id));
      return {
        input: { type: 'choice', id, title: m.content.title, messageIds: [m.id] },
        valid: step.accepts === 'any' || (step.accepts === 'choice' && accepted) || first,
        stale,
        next: i + 1,
      };
    }
    if (m.content.type === 'text') {
      const texts = [m.content.body];
      const ids = [m.id];
      let j = i + 1;
      // Joined only at a step that takes text (SPEC 5), or one that asks for it (`joinTexts`): at
      // a choice step each text is an input of its own (a retry each, so a burst of them
      // escalates as the same texts one by one would, and a typed number after a word is still a
      // choice on a gateway without buttons); at a step that takes anything, too, unless it asks:
      // an order number and a "thanks" typed after it were one input that matched no number, so
      // the user was asked for the number they had just sent (outside test QA67-F1; SPEC 5b's
      // "first text" and "later messages wait, those in the same batch too").
      const joins = step.joinTexts;
      for (; joins && j < messages.length; j += 1) {
        const n = messages[j]!;
        if (n.content.type !== 'text' || this.isKeyword(n) || this.handoffKeyword(n) !== undefined) break;
        if (n.timestamp - this.s.lastInteraction! > this.env.sessionTtlSec) break;
        texts.push(n.content.body);
        ids.push(n.id);
        this.touch(n);
      }
      // Joined by one space, each part trimmed: line breaks inside a part (an address) stay.
      const joined = texts
        .map((t) => t.trim())
        .filter((t) => t !== '')
        .join(' ');
      return {
        input: { type: 'text', text: joined, messageIds: ids },
        valid: step.accepts === 'text' || step.accepts === 'any' || first,
        stale: false,
        next: j,
      };
    }
    return {
      input: { type: 'other', content: m.content, messageIds: [m.id] },
      valid: step.accepts === 'any' || first,
      stale: false,
      next: i + 1,
    };
  }

  /** A new session's first message, handed to the start step's `first`. */
  private begin(kind: TransitionKind, input: StepInput): void {
    const flow = this.flow!;
    const start = flow.steps.get(flow.start)!;
    const outcome = this.decide(start, 'first', () => start.first!(input, this.ctx(start)), true);
    const ids = [...input.messageIds];
    // The data begun with: none, or what a `c.startOver()` kept (`keepOnReset`).
    const kept = this.s.data;
    switch (outcome.kind) {
      case 'goto': {
        const data = this.fitting(start, { ...kept, ...outcome.set });
        this.enter(kind, outcome.step, ids, { data }, outcome.say);
        return;
      }
      case 'handoff':
        this.enter(kind, flow.start, ids, { data: this.shaped(kept) });
        this.escalate(ids, outcome.reason);
        return;
      case 'retry':
        // The user was not asked anything yet, so no retry is counted; a message the handler gave
        // is the prompt's text, as a retry's is (outside test QA97-F5: it was dropped).
        this.enter(kind, flow.start, ids, { data: this.shaped(kept) }, undefined, outcome.message);
        return;
      default:
        this.enter(kind, flow.start, ids, { data: this.shaped(kept) });
    }
  }

  /** The result (or failure) of an effect: applied when the current visit awaits it. */
  private applyResult(m: ResolvedMessage): void {
    this.consumed.push(m.id);
    if (m.content.type !== 'effect_result') return;
    const r = m.content;
    const a = this.s.awaiting;
    const step = a === undefined ? undefined : this.flow!.steps.get(a.step);
    if (a === undefined || a.id !== r.effectId || step?.effect === undefined || step.id !== this.s.step) {
      // For a visit the session has left (a reset came first): recorded, not applied, nothing
      // sent. Left for an agent (the hand-off ended the visit), it is `held` like the user's
      // messages then: the agent sees it waited for them (outside test QA73-F5).
      this.note(this.s.needsAgent ? 'held' : 'stale_input', [m.id]);
      return;
    }
    const eff = step.effect;
    this.s = leftVisit(this.s);
    const outcome = r.ok
      ? this.decide(step, 'onResult', () => eff.onResult(r.value, this.ctx(step)))
      : this.decide(step, 'onFailure', () =>
          eff.onFailure({ error: r.error ?? 'failed', attempts: r.attempts }, this.ctx(step)),
        );
    if (outcome.kind === 'retry' || outcome.kind === 'start_over') {
      throw this.flowError(
        'BATON_ERR_FLOW_HANDLER',
        step.id,
        `an effect's ${r.ok ? 'onResult' : 'onFailure'} must go to a step or hand off, not ${outcome.kind}`,
      );
    }
    this.apply(step, outcome, [m.id]);
    this.keepVisitPrompts();
  }

  /**
   * Nobody is ahead of an effect's result or an event: no message of this batch was written after
   * seeing what it leads to (that is sent after this commit), so the inputs after it never drop
   * its prompts, as inputs that leave a visit drop the visit's (SPEC 1.6: "the user is ahead").
   * An event's news ("your bike is ready") reached nobody when the user wrote in the same batch
   * (outside test QA7-F1).
   */
  private keepVisitPrompts(): void {
    this.keptPrompts = this.visitPrompts;
    this.visitPrompts = [];
    this.retryPrompts = [];
  }

  /**
   * An event from the bot's own systems (the flow's `events`): held while an agent has the
   * session, `ignored` when the flow has no such event or its `on` returns nothing, else it goes
   * to a step its `to` declares, or hands off, from wherever the session is. It expires an idle
   * session first, as a user's message does, and keeps the session alive as one does; it is
   * never `late` (stamped by Baton's clock, not WhatsApp's) and is no user interaction.
   */
  private applyEvent(m: ResolvedMessage): void {
    if (m.content.type !== 'event') return;
    const flow = this.flow!;
    const { name, payload } = m.content;
    if (this.idleAt(m.timestamp)) this.startAfresh('expired', [m.id]);
    const ev = flow.events.get(name);
    if (this.s.needsAgent || ev === undefined) {
      this.note(this.s.needsAgent ? 'held' : 'ignored', [m.id]);
      return;
    }
    const current = this.s.step === null ? undefined : flow.steps.get(this.s.step);
    const step = current ?? flow.steps.get(flow.start)!;
    const what = `event "${name}"`;
    // `on` gets the payload as its schema reads it (trimmed, coerced, defaulted), as its type
    // says: it got the JSON as posted, which the route had only checked (outside test QA101-F1).
    const read =
      ev.payload === undefined ? undefined : this.guard(step, what, () => ev.payload!.safeParse(payload));
    if (read !== undefined && !read.success)
      throw this.flowError(
        'BATON_ERR_FLOW_HANDLER',
        step.id,
        `${what}: its payload schema refuses the payload it was posted with (the flow changed since?): ${schemaIssues(read.error, '(payload)')}`,
      );
    const input = read === undefined ? payload : read.data;
    const outcome = this.guard(
      step,
      what,
      // A step's context (its retry and startOver are refused below), and the step it is at.
      () => ev.on(input, { ...this.ctx(step), step: current?.id ?? null }),
      true,
    );
    if (outcome === undefined || outcome === null) {
      this.note('ignored', [m.id]);
      return;
    }
    if (typeof outcome !== 'object' || (outcome.kind !== 'goto' && outcome.kind !== 'handoff'))
      throw this.flowError(
        'BATON_ERR_FLOW_HANDLER',
        step.id,
        `${what} returned ${JSON.stringify(outcome)}: an event goes to a step (c.goto), hands off (c.handoff) or returns nothing`,
      );
    if (outcome.kind === 'goto' && !ev.to.includes(outcome.step))
      throw this.flowError(
        'BATON_ERR_FLOW_UNDECLARED_TRANSITION',
        step.id,
        `${what} ${this.wentTo(outcome.step)}`,
      );
    this.s = activeNow(this.s, m.timestamp);
    this.apply(step, outcome, [m.id]);
    this.keepVisitPrompts();
  }

  private isKeyword(m: StoredMessage): boolean {
    return isResetKeyword(this.flow!, m);
  }

  /**
   * Whether `m` picks one of `step`'s choices by its number or title (a gateway without buttons):
   * then it is that choice, not a hand-off keyword of the same words (outside test QA9-F3).
   */
  private picksChoice(step: StepDef, m: ResolvedMessage): boolean {
    if (!typesChoices(m.provider)) return false;
    const choices = this.guard(step, 'choices', () => choicesOf(step, this.s.data, this.wordsCtx()));
    return typedChoice(choices, m) !== undefined;
  }

  /** The hand-off keyword `m` is (the flow's `handoffKeywords`), as the user wrote it, trimmed. */
  private handoffKeyword(m: StoredMessage): string | undefined {
    if (m.content.type !== 'text') return undefined;
    const text = m.content.body.trim();
    return this.flow!.handoffKeywords.has(keywordForm(text)) ? text : undefined;
  }

  private wordsCtx(extra: { retry?: { count: number; message?: string }; reason?: string } = {}): {
    t: ReturnType<typeof translator>;
    retry?: { count: number; message?: string };
    reason?: string;
  } {
    return { t: translator(this.flow!, this.s.data), ...extra };
  }

  private words(w: Words<FlowData>, extra: { reason?: string } = {}): string {
    // Named by the step the session is at: a notice's missing text said "step (none)" (outside test A8).
    const at = this.s.step === null ? null : (this.flow!.steps.get(this.s.step) ?? null);
    const text = this.guard(at, 'notice', () => wordsOf(w, this.s.data, this.wordsCtx(extra)));
    // Computed, a notice is checked as it is built, as a step's message is (outside test QA138-F5).
    const problems = replyProblems({ type: 'text', text });
    if (problems.length > 0)
      throw this.flowError('BATON_ERR_FLOW_REPLY', this.s.step, `a notice: ${problems.join('; ')}`);
    return text;
  }

  private ctx(step: StepDef): StepContext {
    void step;
    return {
      data: this.s.data,
      t: translator(this.flow!, this.s.data),
      goto: (to, set, say) => ({ kind: 'goto', step: to, ...(set ? { set } : {}), ...(say ? { say } : {}) }),
      restart: (to, set, say) => ({
        kind: 'goto',
        step: to,
        clear: true,
        ...(set ? { set } : {}),
        ...(say ? { say } : {}),
      }),
      retry: (message) => ({ kind: 'retry', ...(message !== undefined ? { message } : {}) }),
      handoff: (reason) => ({ kind: 'handoff', reason }),
      startOver: () => ({ kind: 'start_over' }),
    };
  }

  /**
   * The one boundary around author code: whatever it throws, or a Promise it returns, becomes a
   * `FlowRuntimeError` naming the flow, the step and the session. A handler's failure (`on`,
   * `first`, `onResult`, `onFailure`) is final: the batch is dead-lettered. Anything else (`say`,
   * `choices`, words, an effect's input) may be passing, so the engine tries the batch again
   * first; it is named by the step whose code failed (and the step the batch began at, when
   * another).
   */
  private guard<T>(step: StepDef | null, what: string, fn: () => T, handler = false): T {
    const flow = this.flow!;
    const session = logSessionId(this.env.key);
    let out: T;
    try {
      out = fn();
    } catch (err) {
      if (err instanceof FlowRuntimeError) {
        // Raised without a step (a text the catalogue lacks): named by the step whose code ran.
        if (err.step === null && step !== null && err.flow === flow.id) {
          throw new FlowRuntimeError(
            err.code as FlowErrorCode,
            flow.id,
            step.id,
            `${what}: ${err.detail}${this.beganElsewhere(step.id)}`,
            err.cause,
            err.retryable,
            session,
          );
        }
        err.session ??= session;
        throw err;
      }
      if (err instanceof BatonError) throw err;
      const where = step?.id ?? this.startStep;
      const thrown = handler
        ? this.flowError(
            'BATON_ERR_FLOW_HANDLER',
            step?.id ?? this.s.step,
            `${what}: ${thrownText(err)}${thrownAt(err)}`,
            err,
          )
        : new FlowRuntimeError(
            'BATON_ERR_FLOW_HANDLER',
            flow.id,
            where,
            `${what}: ${err instanceof Error ? `${err.name}: ${err.message}` : `threw ${thrownText(err)}`}${thrownAt(err)}${this.beganElsewhere(where)}`,
            err,
            true,
            session,
          );
      thrown.phase = what;
      throw thrown;
    }
    if (isThenable(out)) {
      // Swallow the abandoned promise's outcome: it must not become an unhandled rejection.
      out.then(undefined, () => undefined);
      throw this.flowError(
        'BATON_ERR_FLOW_HANDLER',
        step?.id ?? this.s.step,
        `${what} returned a Promise; handlers are synchronous (start an effect for async work)`,
      );
    }
    return out;
  }

  /**
   * `data` as the flow's data schema reads it (its defaults set), or as it is if it does not fit
   * yet: for a session entering a step with data no handler set (new, or reset); data a handler
   * sets is read by `fitting`, once.
   */
  private shaped(data: FlowData): FlowData {
    const checked = this.flow?.data?.safeParse(data);
    return checked?.success === true ? checked.data : data;
  }

  /** Where the batch began, for an error named by another step; '' when it began there. */
  private beganElsewhere(step: string | null): string {
    return step === this.startStep ? '' : ` (the batch began at ${this.startStep ?? 'no step'})`;
  }

  /**
   * Why a `goto` to `target` is refused: a step the flow has not (a typo; outside test QA22-F9:
   * the author was told to add it to "to"), or one the step does not declare.
   */
  private wentTo(target: string): string {
    return this.flow!.steps.has(target)
      ? `went to "${target}", which it does not declare in "to" (add "${target}" to its "to")`
      : `went to "${target}", which is no step of flow ${this.flow!.id}${meantStep(target, [...this.flow!.steps.keys()])}`;
  }

  /** A final error of flow code at `stepId` (not tried again: the batch is dead-lettered). */
  private flowError(
    code: FlowErrorCode,
    stepId: string | null,
    detail: string,
    cause?: unknown,
  ): FlowRuntimeError {
    return new FlowRuntimeError(
      code,
      this.flow!.id,
      stepId,
      detail,
      cause,
      false,
      logSessionId(this.env.key),
    );
  }

  private decide(step: StepDef, what: string, fn: () => Outcome, first = false): Outcome {
    const outcome = this.guard(step, what, fn, true);
    const kinds = ['goto', 'retry', 'handoff', 'start_over'];
    if (typeof outcome !== 'object' || outcome === null || !kinds.includes(outcome.kind)) {
      throw this.flowError(
        'BATON_ERR_FLOW_HANDLER',
        step.id,
        `${what} returned ${JSON.stringify(outcome)}, not an outcome (use c.goto, c.retry, c.handoff)`,
      );
    }
    if (outcome.kind === 'goto' && !step.to.includes(outcome.step) && !(first && outcome.step === step.id)) {
      throw this.flowError('BATON_ERR_FLOW_UNDECLARED_TRANSITION', step.id, this.wentTo(outcome.step));
    }
    return outcome;
  }

  private apply(step: StepDef, outcome: Outcome, ids: string[]): void {
    if (outcome.kind === 'goto') {
      if (outcome.say !== undefined) this.checkSay(step, outcome.say);
      const data = this.fitting(
        step,
        outcome.clear ? { ...outcome.set } : { ...this.s.data, ...outcome.set },
      );
      this.enter('advance', outcome.step, ids, { data }, outcome.say);
      return;
    }
    if (outcome.kind === 'handoff') {
      this.escalate(ids, outcome.reason);
      return;
    }
    const max = step.maxRetries ?? this.env.maxRetries;
    if (this.s.retryCount + 1 > max) {
      this.escalate(ids, 'max_retries');
      return;
    }
    // A retry's prompts already queued in this batch were answered (wrongly) by this input: the
    // user is asked again once, by the last retry (SPEC 1.6). The visit's own first prompts stay
    // when they say more than the retry repeats (an order's status, a retry's own hint), but one
    // the retry repeats word for word is asked once, by the retry: two identical questions in a
    // row are a duplicate question (outside test QA3-1: "Jane" and a photo in one burst).
    //
    // A prompt nobody had seen (a result's or an event's, kept) stands instead: the retry's copy of
    // it is dropped, since a later input of the batch that leaves the visit (a hand-off, a reset)
    // drops the retry's prompts, and then nothing asked it (outside test QA9-F1).
    for (const i of this.retryPrompts) this.effects[i] = null;
    this.retryPrompts = [];
    const body = (i: number): string => JSON.stringify(this.effects[i]!.body);
    const queued = this.visitPrompts.filter((i) => this.effects[i] != null);
    const kept = new Set(this.keptPrompts.filter((i) => this.effects[i] != null).map(body));
    this.change('retry', this.s.step, ids, { retryCount: this.s.retryCount + 1 });
    const message = outcome.kind === 'retry' ? outcome.message : undefined;
    this.prompt({ count: this.s.retryCount, ...(message !== undefined ? { message } : {}) });
    for (const i of this.retryPrompts) if (kept.has(body(i))) this.effects[i] = null;
    const asked = new Set(this.retryPrompts.filter((i) => this.effects[i] != null).map(body));
    for (const i of queued) if (asked.has(body(i))) this.effects[i] = null;
  }

  /**
   * The messages a handler gives `c.goto` (or `c.restart`) are checked against WhatsApp's limits
   * as a step's computed prompts are: one that breaks them was sent, refused by Meta, and the
   * user saw nothing (outside test A1). The batch is dead-lettered as `BATON_ERR_FLOW_REPLY`.
   */
  private checkSay(step: StepDef, say: Replies): void {
    const list = bodiesOf(say);
    list.forEach((body, i) => {
      const problems = replyProblems(body);
      if (problems.length === 0) return;
      const which = list.length > 1 ? ` ${i + 1}` : '';
      throw this.flowError(
        'BATON_ERR_FLOW_REPLY',
        step.id,
        `the message${which} it gives c.goto: ${problems.join('; ')}`,
      );
    });
  }

  /**
   * `data` as the flow's data schema reads it (defaults set, unknown keys dropped), if the schema
   * takes it. Data a step sets that the schema refuses is flow
   * code's error, said where it is made (the batch dead-lettered, naming the keys): committed, it
   * restarted the session at its next message, recorded like a user's reset (an outside test: a
   * shop's `"price": "16.50"` threw the user back to the start at the order's last step).
   */
  private fitting(step: StepDef, data: FlowData): FlowData {
    const flow = this.flow!;
    const checked = flow.data?.safeParse(data);
    if (checked === undefined) return data;
    // As the schema reads it: its defaults set, keys it does not have dropped.
    if (checked.success) return checked.data;
    throw this.flowError(
      'BATON_ERR_FLOW_DATA',
      step.id,
      `set data its data schema refuses: ${schemaIssues(checked.error)}`,
      checked.error,
    );
  }

  /** Hands the session to a human: `escalated`, the hand-off notice, `needs_agent`. */
  private escalate(ids: string[], reason: string, patch: Partial<SessionSnapshot> = {}): void {
    // Too many invalid answers: said so to the agent (the notice's words get `max_retries`, as
    // before); an agent saw no reason at all (outside test QA7-F2).
    const invalid = this.s.retryCount + 1;
    const kept =
      reason === 'max_retries' ? `${invalid} invalid answer${invalid === 1 ? '' : 's'} in a row` : reason;
    this.leaveVisit();
    this.s = leftVisit(this.s);
    this.change('escalated', this.s.step, ids, { ...patch, needsAgent: true });
    this.s = { ...this.s, handoffReason: kept };
    this.emit({
      body: { type: 'text', text: this.words(this.flow!.notices.handoff, { reason }) },
      isPrompt: false,
    });
  }

  /**
   * A session stored by an earlier version of the flow: its data goes through the flow's
   * `migrate`, and a step the flow no longer has is left for the step `moved` names (an
   * `advance`), or the session is held for an agent (`escalated`). Never misread, never silently
   * restarted.
   */
  private upgrade(): void {
    const flow = this.flow!;
    const old = this.s.step;
    if (old === null) return;
    const unserved = notServedBy(flow, this.s);
    if (unserved === 'other_flow') {
      // Its own flow is not served here (taken out of BATON_FLOWS, or a worker started without
      // it): run by another flow, its data and step were read as that flow's, and its answers
      // applied to the wrong questions without a word (outside test QA58-F1). Held for an agent,
      // still under its own flow's name, until its flow is served again or an agent acts.
      if (this.s.needsAgent) return;
      const own = { flow: this.s.flow, flowVersion: this.s.flowVersion };
      this.escalate([], `flow ${own.flow} of this session is not served (BATON_FLOWS); ${flow.id} is`, own);
      return;
    }
    const from = this.s.flowVersion;
    if (unserved === 'newer_version') {
      // Written by a newer version of this flow (a rolling deploy, or a rollback): read by this
      // one, its data failed the older schema and was wiped, or its step was missing (outside test
      // QA65-F2). Held for an agent as it stands, still under its own version.
      if (this.s.needsAgent) return;
      const reason = `written by version ${from} of flow ${flow.id}; this process serves version ${flow.version}`;
      this.escalate([], reason, { flowVersion: from });
      return;
    }
    if (flow.migrate !== undefined && from < flow.version) {
      this.s = { ...this.s, data: this.migrated(), flowVersion: flow.version };
    }
    if (flow.data) {
      const stored = flow.data.safeParse(this.s.data);
      // Stored data that no longer fits the flow's schema is never misread: the session restarts,
      // and that is all (before the step's check, so a removed step does not also hand it to an
      // agent in the same batch: outside test QA65-F3).
      if (!stored.success) {
        // Said by the engine's warning: the paths and what the schema wanted, never the values
        // (outside test QA138-F6: a warning that named no field).
        this.unfit = schemaIssues(stored.error);
        this.startAfresh('reset', []);
        return;
      }
      // As the schema reads it: defaults a newer schema added are there for the flow's code.
      this.s = { ...this.s, data: stored.data };
    }
    if (flow.steps.has(old) || this.s.needsAgent) return;
    const to = flow.moved.get(old);
    if (to === undefined) {
      this.escalate([], `step "${old}" is no longer in flow ${flow.id} (version ${flow.version})`);
      return;
    }
    // A step renamed while its effect runs: the step it became runs the same effect, so the
    // session goes on awaiting the call under way, its visit and prompt kept. Entered anew, it
    // called the API a second time, under a new Idempotency-Key, and the first call's result was
    // thrown away (outside test QA65-F1).
    const a = this.s.awaiting;
    if (a !== undefined && a.step === old && flow.steps.get(to)!.effect?.use === a.name) {
      this.change('advance', to, [], { awaiting: { ...a, step: to } });
      return;
    }
    this.enter('advance', to, [], {});
  }

  /** The session's data through the flow's `migrate`, from the version that stored it. */
  migrated(): FlowData {
    const flow = this.flow!;
    const from = this.s.flowVersion;
    return this.guard(null, `migrate from version ${from}`, () => flow.migrate!(this.s.data, from));
  }

  /**
   * Whether an input at `at` (Unix seconds) finds the session expired: at a step (one at none has
   * nothing to expire) and idle longer than `BATON_SESSION_TTL` since its user's newest message,
   * or a newer event or agent's act.
   */
  private idleAt(at: number): boolean {
    const active = lastActive(this.s);
    return this.s.step !== null && active > 0 && at - active > this.env.sessionTtlSec;
  }

  /** The session at no step, its data and bookkeeping cleared: its next input starts it anew. */
  private startAfresh(kind: 'reset' | 'expired', ids: string[]): void {
    this.leaveVisit();
    this.change(kind, null, ids, { data: {}, retryCount: 0, needsAgent: false });
  }

  /** See {@link expireIdle}: `at`, the events' time (Unix seconds). */
  expireIdle(ids: string[], at: number): void {
    if (this.s.awaiting === undefined && this.idleAt(at)) this.startAfresh('expired', ids);
    this.note('ignored', ids);
    this.consumed.push(...ids);
  }

  /** See `handbackTransition`. */
  handback(step: string): void {
    this.enter('handback', step, [], {});
  }

  /** Enters `to` (a new visit), queues its prompt, and starts its effect if it has one. */
  private enter(
    kind: TransitionKind,
    to: string,
    ids: string[],
    patch: Partial<SessionSnapshot>,
    say?: Replies,
    retryMessage?: string,
  ): void {
    this.leaveVisit();
    this.s = leftVisit(this.s);
    this.change(kind, to, ids, { ...patch, retryCount: 0, needsAgent: false });
    this.s = { ...this.s, visitVersion: this.s.version };
    this.visitPrompts = [];
    if (say !== undefined) for (const body of bodiesOf(say)) this.emit({ body, isPrompt: false });
    this.prompt(retryMessage === undefined ? undefined : { count: 0, message: retryMessage });
    const step = this.flow!.steps.get(to)!;
    const eff = step.effect;
    if (eff !== undefined) {
      const data = this.s.data;
      const input = eff.input ? this.guard(step, 'effect input', () => eff.input!(data)) : data;
      const id = effectIdFor(this.s, this.s.version);
      this.s = { ...this.s, awaiting: { id, name: eff.use, step: to, version: this.s.version } };
      this.started.push({ id, name: eff.use, input, data, step: to, version: this.s.version });
    }
  }

  /** Drops the prompts of the visit being left: the user already answered them in this batch. */
  private leaveVisit(): void {
    for (const i of this.visitPrompts) this.effects[i] = null;
    this.visitPrompts = [];
    this.retryPrompts = [];
    this.keptPrompts = [];
  }

  private prompt(retry?: { count: number; message?: string }): void {
    const flow = this.flow!;
    const step = flow.steps.get(this.s.step!)!;
    const bodies = this.guard(step, 'say', () => promptsOf(flow, step, this.s.data, retry));
    for (const body of bodies) {
      this.visitPrompts.push(this.effects.length);
      if (retry !== undefined) this.retryPrompts.push(this.effects.length);
      this.emit({ body, isPrompt: true });
    }
  }

  private emit(e: { body: OutboundBody; isPrompt: boolean; inReplyTo?: string }): void {
    this.effects.push({ ...e, step: this.s.step ?? this.flow?.start ?? '', version: this.s.version });
  }

  private touch(m: StoredMessage): void {
    if (this.s.lastInteraction === null || m.timestamp >= this.s.lastInteraction) {
      this.s = { ...this.s, lastInteraction: m.timestamp, lastMessageId: m.id, ...newIds(this.s, m) };
    }
  }

  /**
   * A state change: version + 1 and one record. The session is stamped as the running flow's
   * unless `patch` names its flow (a session of a flow not served here keeps its own).
   */
  change(kind: TransitionKind, to: string | null, ids: string[], patch: Partial<SessionSnapshot>): void {
    const from = this.s.step;
    if (to !== from || kind === 'admin_reset' || kind === 'expired') this.s = leftVisit(this.s);
    const stamp = this.flow ? { flow: this.flow.id, flowVersion: this.flow.version } : {};
    this.s = { ...this.s, ...stamp, ...patch, step: to, version: this.s.version + 1 };
    this.s = waiting(this.s, kind, this.env.nowMs);
    this.records.push(this.record(kind, from, to, ids));
  }

  /** A record that changes nothing (late, stale, held, ignored). */
  private note(kind: TransitionKind, ids: string[]): void {
    this.records.push(this.record(kind, this.s.step, this.s.step, ids));
  }

  private record(
    kind: TransitionKind,
    from: string | null,
    to: string | null,
    ids: string[],
  ): TransitionRecord {
    return {
      version: this.s.version,
      from_step: from,
      to_step: to,
      kind,
      message_ids: ids,
      at: new Date(this.env.nowMs).toISOString(),
      worker: this.env.worker,
      fencing_token: this.env.fence,
    };
  }
}

/**
 * Keeps `waitingSince` with `needsAgent`: set by an escalation (`kind`, at `nowMs`, the record's
 * time), dropped once the session no longer waits for an agent.
 */
export function waiting(s: SessionSnapshot, kind: TransitionKind, nowMs: number): SessionSnapshot {
  if (kind === 'escalated' && s.needsAgent) return { ...s, waitingSince: nowMs };
  if (s.needsAgent || s.waitingSince === undefined) return s;
  const { waitingSince: _over, ...rest } = s;
  return rest;
}

/** The messages a handler gives `c.goto`, as bodies (a string is a text). */
function bodiesOf(say: Replies): OutboundBody[] {
  const list = Array.isArray(say)
    ? (say as readonly (string | OutboundBody)[])
    : [say as string | OutboundBody];
  return list.map((r) => (typeof r === 'string' ? { type: 'text', text: r } : r));
}
