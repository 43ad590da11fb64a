/**
 * The flow authoring API. A flow is a set of named steps; each step declares its prompt,
 * what input it accepts and every step it can go to. `defineFlow` validates the whole
 * flow when it is loaded, and the runtime refuses any transition a step did not declare,
 * so the map of a flow (see `toMermaid`) cannot lie.
 * @module
 */
import { FlowDefinitionError } from '../errors.ts';
import type { MessageContent } from '../model/message.ts';
import type { OutboundBody } from '../model/session.ts';

/** Data a flow keeps per session. Plain JSON values only: it is persisted. */
export type FlowData = Readonly<Record<string, unknown>>;

/** A button or list row a choice step offers. Its `id` is unique across the flow. */
export interface Choice {
  readonly id: string;
  readonly title: string;
  readonly description?: string;
}

/** What a step's handler receives. */
export type StepInput =
  /** One or more consecutive texts, joined by one space and trimmed. */
  | { readonly type: 'text'; readonly text: string; readonly messageIds: readonly string[] }
  /** A tap on one of this step's choices (or, at an `any` step, on an id no step owns). */
  | {
      readonly type: 'choice';
      readonly id: string;
      readonly title: string;
      readonly messageIds: readonly string[];
    }
  /** Anything else the user sent (media, location, contacts, ...). */
  | { readonly type: 'other'; readonly content: MessageContent; readonly messageIds: readonly string[] };

/** What a handler decides. Build it with the helpers on the handler's context. */
export type Outcome<S extends string> =
  | { readonly kind: 'goto'; readonly step: S; readonly set?: FlowData; readonly clear?: boolean }
  | { readonly kind: 'retry' };

/** Handed to a step handler: the session's data and outcome builders. */
export interface StepContext<S extends string> {
  readonly data: FlowData;
  /** Go to `step`, merging `set` into the data. */
  goto(step: S, set?: FlowData): Outcome<S>;
  /** Go to `step` with the data cleared first, then `set` merged. */
  restart(step: S, set?: FlowData): Outcome<S>;
  /** The input is not valid here: prompt again, counting a retry. */
  retry(): Outcome<S>;
}

/** Which inputs a step takes. A step with `choices` takes exactly those ids. */
export type Accepts = 'text' | 'choice' | 'any';

export interface StepSpec<S extends string> {
  /** The prompt text, sent on entering the step and on each retry. */
  readonly say: string | ((data: FlowData) => string);
  /** For a choice step: the reply buttons (up to 3) or list rows (up to 10) it offers. */
  readonly choices?: readonly Choice[];
  /** Label of the list button when there are more than 3 choices. */
  readonly listButton?: string;
  /** `text` or `any`; a step with `choices` accepts `choice`. */
  readonly accepts?: 'text' | 'any';
  /** Every step this one may go to. */
  readonly to: readonly NoInfer<S>[];
  /** Decides on valid input. Pure: no I/O, no clock, no randomness. */
  readonly on: (input: StepInput, ctx: StepContext<S>) => Outcome<S>;
}

export interface FlowSpec<S extends string> {
  readonly id: string;
  /** The author's version of the flow; stored with each session. */
  readonly version?: number;
  readonly start: NoInfer<S>;
  readonly steps: { readonly [K in S]: StepSpec<S> };
  /** Texts that restart the flow from any step (compared trimmed, case-insensitive). */
  readonly resetKeywords?: readonly string[];
  readonly notices?: {
    /** Sent for a tap on a button of another step or an earlier visit. */
    readonly stale?: string;
    /** Sent when the session is handed to an agent. */
    readonly handoff?: string;
    /** Sent once when flow code fails on a batch and its messages are dead-lettered. */
    readonly error?: string;
  };
}

/** A validated flow, ready for the runtime. */
export interface Flow<S extends string = string> {
  readonly id: string;
  readonly version: number;
  readonly start: S;
  readonly steps: ReadonlyMap<S, StepDef<S>>;
  /** Choice id -> the step that offers it. */
  readonly choiceOwner: ReadonlyMap<string, S>;
  readonly resetKeywords: ReadonlySet<string>;
  readonly notices: { readonly stale: string; readonly handoff: string; readonly error: string };
}

export interface StepDef<S extends string> extends Omit<StepSpec<S>, 'accepts' | 'choices'> {
  readonly id: S;
  readonly accepts: Accepts;
  readonly choices: readonly Choice[];
}

const DEFAULT_RESET_KEYWORDS = ['reset', 'start over', 'restart'];
const STEP_ID = /^[a-z][a-z0-9_]*$/;

/**
 * Defines and validates a flow.
 * @example
 * const hello = defineFlow({
 *   id: 'hello',
 *   start: 'ask_name',
 *   steps: {
 *     ask_name: { say: 'Your name?', accepts: 'text', to: ['done'], on: (i, c) => i.type === 'text' ? c.goto('done', { name: i.text }) : c.retry() },
 *     done: { say: 'Thanks!', accepts: 'any', to: ['ask_name'], on: (_i, c) => c.restart('ask_name') },
 *   },
 * });
 * @throws FlowDefinitionError naming the flow and step when the flow is inconsistent.
 */
export function defineFlow<const S extends string>(spec: FlowSpec<S>): Flow {
  const fail = (detail: string): never => {
    throw new FlowDefinitionError(`flow "${spec.id}": ${detail}`);
  };
  if (!STEP_ID.test(spec.id)) fail('id must be lower_snake_case');
  const ids = Object.keys(spec.steps) as S[];
  if (ids.length === 0) fail('has no steps');
  if (!ids.includes(spec.start)) fail(`start step "${spec.start}" is not defined`);

  const steps = new Map<S, StepDef<S>>();
  const choiceOwner = new Map<string, S>();
  for (const id of ids) {
    const s = spec.steps[id];
    if (!STEP_ID.test(id)) fail(`step "${id}": id must be lower_snake_case`);
    for (const target of s.to) {
      if (!ids.includes(target)) fail(`step "${id}": goes to unknown step "${target}"`);
    }
    const choices = s.choices ?? [];
    if (s.choices !== undefined && s.accepts !== undefined) {
      fail(`step "${id}": a step with choices accepts them; drop "accepts"`);
    }
    if (s.choices !== undefined && choices.length === 0) fail(`step "${id}": choices is empty`);
    if (choices.length > 10) fail(`step "${id}": at most 10 choices (WhatsApp list limit)`);
    if (choices.length > 3 && !s.listButton)
      fail(`step "${id}": more than 3 choices need a listButton label`);
    for (const c of choices) {
      if (c.id === '') fail(`step "${id}": a choice has an empty id`);
      if (c.title.length > (choices.length > 3 ? 24 : 20)) {
        fail(`step "${id}": choice "${c.id}" title is too long for WhatsApp`);
      }
      const owner = choiceOwner.get(c.id);
      if (owner !== undefined) fail(`step "${id}": duplicate button id "${c.id}" (also in step "${owner}")`);
      choiceOwner.set(c.id, id);
    }
    steps.set(id, {
      ...s,
      id,
      accepts: s.choices !== undefined ? 'choice' : (s.accepts ?? 'text'),
      choices,
    });
  }

  const reached = new Set<S>([spec.start]);
  const queue: S[] = [spec.start];
  for (let cur = queue.shift(); cur !== undefined; cur = queue.shift()) {
    for (const next of steps.get(cur)!.to) {
      if (!reached.has(next)) {
        reached.add(next);
        queue.push(next);
      }
    }
  }
  for (const id of ids) if (!reached.has(id)) fail(`step "${id}" is unreachable from "${spec.start}"`);

  // Step ids were checked against S above; at run time a flow is keyed by plain strings.
  return Object.freeze({
    id: spec.id,
    version: spec.version ?? 1,
    start: spec.start,
    steps: steps as unknown as ReadonlyMap<string, StepDef<string>>,
    choiceOwner: choiceOwner,
    resetKeywords: new Set((spec.resetKeywords ?? DEFAULT_RESET_KEYWORDS).map((k) => k.trim().toLowerCase())),
    notices: {
      stale:
        spec.notices?.stale ?? 'That button belongs to an earlier question; this conversation has moved on.',
      handoff:
        spec.notices?.handoff ?? 'Thanks for your patience: a member of our team will take it from here.',
      error:
        spec.notices?.error ??
        'Sorry, something went wrong on our side and we could not handle your last message. Our team has been notified.',
    },
  });
}

/** The prompt a step sends, for the session's current data. */
export function promptOf<S extends string>(step: StepDef<S>, data: FlowData): OutboundBody {
  const text = typeof step.say === 'function' ? step.say(data) : step.say;
  if (step.choices.length === 0) return { type: 'text', text };
  if (step.choices.length <= 3) {
    return { type: 'buttons', text, buttons: step.choices.map((c) => ({ id: c.id, title: c.title })) };
  }
  return {
    type: 'list',
    text,
    button: step.listButton ?? 'Choose',
    sections: [{ title: 'Options', rows: step.choices.map((c) => ({ ...c })) }],
  };
}

/** The flow's state map as a Mermaid state diagram. */
export function toMermaid(flow: Flow): string {
  const lines = ['stateDiagram-v2', `  [*] --> ${flow.start}`];
  for (const step of flow.steps.values()) {
    for (const target of step.to) lines.push(`  ${step.id} --> ${target}`);
  }
  return lines.join('\n') + '\n';
}
