/**
 * The pure core of Baton: `transition(flow, snapshot, batch, env)` returns the next snapshot,
 * the transition records and the replies to send. No I/O, no clock (the time comes in `env`).
 * The engine commits the snapshot, records and replies atomically, then sends the replies.
 * @module
 */
import { FlowRuntimeError } from '../errors.ts';
import { IGNORED_CONTENT_TYPES, type SessionKey, type StoredMessage } from '../model/message.ts';
import {
  SNAPSHOT_FORMAT,
  type OutboundBody,
  type PromptRef,
  type SessionSnapshot,
  type TransitionKind,
  type TransitionRecord,
} from '../model/session.ts';
import {
  promptOf,
  type Choice,
  type Flow,
  type FlowData,
  type Outcome,
  type StepContext,
  type StepInput,
} from './define.ts';

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

export interface TransitionResult {
  readonly snapshot: SessionSnapshot;
  readonly records: TransitionRecord[];
  readonly effects: Effect[];
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

/** Orders a batch: WhatsApp timestamp, then arrival. */
export function orderBatch<M extends StoredMessage>(batch: readonly M[]): M[] {
  return [...batch].sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
}

/** Runs one batch of a session's messages through its flow. */
export function transition(
  flow: Flow,
  prev: SessionSnapshot | null,
  batch: readonly ResolvedMessage[],
  env: TransitionEnv,
): TransitionResult {
  return new BatchRun(flow, prev ?? freshSnapshot(flow, env.key, env.nowMs, batch[0]), env).run(
    orderBatch(batch),
  );
}

/** An agent's reset: fresh session at no step; nothing is sent. */
export function adminReset(prev: SessionSnapshot, env: TransitionEnv): TransitionResult {
  const run = new BatchRun(null, prev, env);
  run.change('admin_reset', null, [], { data: {}, retryCount: 0, needsAgent: false, lastInteraction: null });
  return run.result();
}

/** The choice a WASender user picked by typing its number or title, if any. */
function typedChoice(choices: readonly Choice[], m: StoredMessage): Choice | undefined {
  if (m.provider !== 'wasender' || m.content.type !== 'text' || choices.length === 0) return undefined;
  const said = m.content.body.trim().toLowerCase();
  const n = /^\d{1,2}$/.test(said) ? Number(said) : 0;
  return choices[n - 1] ?? choices.find((c) => c.title.toLowerCase() === said);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

class BatchRun {
  private s: SessionSnapshot;
  private readonly records: TransitionRecord[] = [];
  private readonly effects: (Effect | null)[] = [];
  /** Indexes into `effects` of the prompts sent for the current visit of the current step. */
  private visitPrompts: number[] = [];

  constructor(
    private readonly flow: Flow | null,
    snapshot: SessionSnapshot,
    private readonly env: TransitionEnv,
  ) {
    this.s = snapshot;
  }

  result(): TransitionResult {
    return {
      snapshot: this.s,
      records: this.records,
      effects: this.effects.filter((e): e is Effect => e !== null),
    };
  }

  run(messages: ResolvedMessage[]): TransitionResult {
    const flow = this.flow!;
    for (let i = 0; i < messages.length;) {
      const m = messages[i]!;
      const last = this.s.lastInteraction;
      if (last !== null && m.timestamp < last) {
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
      if (last !== null && m.timestamp - last > this.env.sessionTtlSec && this.s.version > 0) {
        this.leaveVisit();
        this.change('expired', null, [m.id], { data: {}, retryCount: 0, needsAgent: false });
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
        this.enter(this.s.step === null ? 'advance' : 'reset', flow.start, [m.id], { data: {} });
        i += 1;
        continue;
      }
      if (keyword) {
        this.enter('reset', flow.start, [m.id], { data: {} });
        i += 1;
        continue;
      }

      let input: StepInput;
      let valid: boolean;
      const typed = m.content.type === 'text' ? typedChoice(step.choices, m) : undefined;
      if (typed) {
        // A gateway without buttons (WASender) shows choices as a numbered list.
        input = { type: 'choice', id: typed.id, title: typed.title, messageIds: [m.id] };
        valid = true;
        i += 1;
      } else if (m.content.type === 'choice') {
        const owner = flow.choiceOwner.get(m.content.id);
        const ctx = m.contextPrompt;
        const earlierVisit = ctx != null && (ctx.step !== step.id || ctx.version < this.s.visitVersion);
        if (earlierVisit || (owner !== undefined && owner !== step.id)) {
          this.note('stale_input', [m.id]);
          this.emit({ body: { type: 'text', text: flow.notices.stale }, isPrompt: false, inReplyTo: m.id });
          i += 1;
          continue;
        }
        input = { type: 'choice', id: m.content.id, title: m.content.title, messageIds: [m.id] };
        valid = step.accepts === 'any' || (step.accepts === 'choice' && owner === step.id);
        i += 1;
      } else if (m.content.type === 'text') {
        const texts = [m.content.body];
        const ids = [m.id];
        for (i += 1; i < messages.length; i += 1) {
          const n = messages[i]!;
          if (n.content.type !== 'text' || this.isKeyword(n)) break;
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
        input = { type: 'text', text: joined, messageIds: ids };
        valid = step.accepts === 'text' || step.accepts === 'any';
      } else {
        input = { type: 'other', content: m.content, messageIds: [m.id] };
        valid = step.accepts === 'any';
        i += 1;
      }
      this.apply(valid ? this.decide(step.id, input) : { kind: 'retry' }, [...input.messageIds]);
    }
    return this.result();
  }

  private isKeyword(m: StoredMessage): boolean {
    return m.content.type === 'text' && this.flow!.resetKeywords.has(m.content.body.trim().toLowerCase());
  }

  private decide(stepId: string, input: StepInput): Outcome<string> {
    const flow = this.flow!;
    const step = flow.steps.get(stepId)!;
    const data = this.s.data;
    const ctx: StepContext<string> = {
      data,
      goto: (to, set) => ({ kind: 'goto', step: to, ...(set ? { set } : {}) }),
      restart: (to, set) => ({ kind: 'goto', step: to, clear: true, ...(set ? { set } : {}) }),
      retry: () => ({ kind: 'retry' }),
    };
    let outcome: Outcome<string>;
    try {
      outcome = step.on(input, ctx);
    } catch (err) {
      throw new FlowRuntimeError('BATON_ERR_FLOW_HANDLER', flow.id, stepId, String(err), err);
    }
    if (isThenable(outcome)) {
      // Forced past the type checker: never a silent retry, and never an unhandled rejection.
      outcome.then(undefined, () => undefined);
      throw new FlowRuntimeError(
        'BATON_ERR_FLOW_HANDLER',
        flow.id,
        stepId,
        'the handler returned a Promise; handlers are synchronous (start an effect for async work)',
      );
    }
    if (outcome?.kind !== 'goto' && outcome?.kind !== 'retry') {
      throw new FlowRuntimeError(
        'BATON_ERR_FLOW_HANDLER',
        flow.id,
        stepId,
        'the handler returned no outcome; return c.goto(...), c.restart(...) or c.retry()',
      );
    }
    if (outcome.kind === 'goto' && !step.to.includes(outcome.step)) {
      throw new FlowRuntimeError(
        'BATON_ERR_FLOW_UNDECLARED_TRANSITION',
        flow.id,
        stepId,
        `went to "${outcome.step}", which it does not declare in "to"`,
      );
    }
    return outcome;
  }

  private apply(outcome: Outcome<string>, ids: string[]): void {
    if (outcome.kind === 'goto') {
      const data: FlowData = outcome.clear ? { ...outcome.set } : { ...this.s.data, ...outcome.set };
      this.enter('advance', outcome.step, ids, { data });
      return;
    }
    if (this.s.retryCount + 1 > this.env.maxRetries) {
      this.leaveVisit();
      this.change('escalated', this.s.step, ids, { needsAgent: true });
      this.emit({ body: { type: 'text', text: this.flow!.notices.handoff }, isPrompt: false });
      return;
    }
    this.change('retry', this.s.step, ids, { retryCount: this.s.retryCount + 1 });
    this.prompt();
  }

  /** Enters `to` (a new visit) and queues its prompt. */
  private enter(kind: TransitionKind, to: string, ids: string[], patch: Partial<SessionSnapshot>): void {
    this.leaveVisit();
    this.change(kind, to, ids, { ...patch, retryCount: 0, needsAgent: false });
    this.s = { ...this.s, visitVersion: this.s.version };
    this.visitPrompts = [];
    this.prompt();
  }

  /** Drops the prompts of the visit being left: the user already answered them in this batch. */
  private leaveVisit(): void {
    for (const i of this.visitPrompts) this.effects[i] = null;
    this.visitPrompts = [];
  }

  private prompt(): void {
    const step = this.flow!.steps.get(this.s.step!)!;
    this.visitPrompts.push(this.effects.length);
    this.emit({ body: promptOf(step, this.s.data), isPrompt: true });
  }

  private emit(e: { body: OutboundBody; isPrompt: boolean; inReplyTo?: string }): void {
    this.effects.push({ ...e, step: this.s.step ?? this.flow?.start ?? '', version: this.s.version });
  }

  private touch(m: StoredMessage): void {
    if (this.s.lastInteraction === null || m.timestamp >= this.s.lastInteraction) {
      this.s = { ...this.s, lastInteraction: m.timestamp, lastMessageId: m.id };
    }
  }

  /** A state change: version + 1 and one record. */
  change(kind: TransitionKind, to: string | null, ids: string[], patch: Partial<SessionSnapshot>): void {
    const from = this.s.step;
    this.s = { ...this.s, ...patch, step: to, version: this.s.version + 1 };
    if (this.flow) this.s = { ...this.s, flow: this.flow.id, flowVersion: this.flow.version };
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
