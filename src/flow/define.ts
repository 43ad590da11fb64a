/**
 * The flow authoring API. A flow is a set of named steps; each step declares its prompt,
 * what input it accepts, every step it can go to, and optionally an effect (work outside
 * Baton whose result comes back as an input). `defineFlow` validates the whole flow when it
 * is loaded, and the runtime refuses any transition a step did not declare, so the map of a
 * flow (see `toMermaid`) cannot lie. The step ids and the data shape given to `defineFlow`
 * are kept in the types the author writes against: `c.goto('nope')` and `data.nmae` do not
 * compile.
 * @module
 */
import { BatonError, FlowDefinitionError, FlowRuntimeError } from '../errors.ts';
import { isObject } from '../providers/json.ts';
import type { MessageContent } from '../model/message.ts';
import type { ListSection, OutboundBody } from '../model/session.ts';
import { replyProblems } from './reply-check.ts';
import { closest } from '../spelling.ts';

/** Data a flow keeps per session. Plain JSON values only: it is persisted. */
export type FlowData = Readonly<Record<string, unknown>>;

/** A button or list row a choice step offers. Its `id` is unique within the step. */
export interface Choice {
  readonly id: string;
  readonly title: string;
  readonly description?: string;
}

/** A choice as a step declares it: the title (and description) may depend on data and language. */
export interface ChoiceSpec<D = FlowData, W extends string = string> {
  readonly id: string;
  readonly title: Words<D, W>;
  readonly description?: Words<D, W>;
}

/** One message: a string is a text (or, for the message carrying a step's choices, its body text). */
export type Reply = string | OutboundBody;
/** One message or several, sent in order. */
export type Replies = Reply | readonly Reply[];

/**
 * Looks a key up in the session's language catalog (see `FlowSpec.words`); `{name}` is replaced
 * from `vars`. `W`: the catalogs' keys, as `defineFlow` infers them from `words.catalogs`, so a
 * misspelt key fails to compile (outside test QA103-F6: it failed at a user's message).
 */
// Declared as a method, so a helper written for any key (`(t: Translate) => ...`) still takes a
// flow's `c.t` (method parameters are compared both ways).
export type Translate<W extends string = string> = {
  translate(key: W, vars?: Readonly<Record<string, string | number>>): string;
}['translate'];

/** What a prompt or a notice may depend on. */
export interface WordsContext<W extends string = string> {
  /**
   * Set when the prompt is sent again after invalid input (`count` 0: the start step's `first`
   * refused a new session's first message with `c.retry(message)`).
   */
  readonly retry?: { readonly count: number; readonly message?: string };
  /** Why the session is handed to an agent (hand-off notice only). */
  readonly reason?: string;
  readonly t: Translate<W>;
}

/** A text that may depend on the session's data, the retry and the language. */
export type Words<D, W extends string = string> =
  string | ((data: Readonly<D>, ctx: WordsContext<W>) => string);

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
export type Outcome<S extends string = string, D = FlowData> =
  | {
      readonly kind: 'goto';
      readonly step: S;
      readonly set?: Partial<D>;
      readonly clear?: boolean;
      /** Sent before the new step's prompt. */
      readonly say?: Replies;
    }
  | { readonly kind: 'retry'; readonly message?: string }
  | { readonly kind: 'handoff'; readonly reason: string }
  | { readonly kind: 'start_over' };

/**
 * Handed to every handler: the session's data and the outcome builders. Each outcome is typed by
 * where it goes (`c.goto('b')` is an `Outcome<'b'>`), so a helper that takes the context of a
 * step that goes only to `failed` is handed the context of any step that may go there too
 * (outside test QA97-F8).
 */
export interface StepContext<S extends string = string, D = FlowData, W extends string = string> {
  readonly data: Readonly<D>;
  readonly t: Translate<W>;
  /** Go to `step`, merging `set` into the data; `say` is sent before its prompt. */
  goto<T extends S>(step: T, set?: Partial<D>, say?: Replies): Outcome<T, D>;
  /** Go to `step` with the data cleared first, then `set` merged. */
  restart<T extends S>(step: T, set?: Partial<D>, say?: Replies): Outcome<T, D>;
  /** The input is not valid here: prompt again (with `message` as its text, if given), counting a retry. */
  retry(message?: string): Outcome<never, D>;
  /** Hand the session to a human: recorded `escalated`, the hand-off notice is sent, `needs_agent` set. */
  handoff(reason: string): Outcome<never, D>;
  /** Clear the data and treat this input as a new session's first message. */
  startOver(): Outcome<never, D>;
}

/**
 * Handed to an effect's `onResult` and `onFailure`: the outcomes a result may have, go to a step
 * or hand off. There is no input of the user's to refuse or to begin anew with, so no `retry` and
 * no `startOver` (outside test QA92-F3: `c.retry()` in `onResult` compiled and dead-lettered the
 * result at run time).
 */
export type ResultContext<S extends string = string, D = FlowData, W extends string = string> = Omit<
  StepContext<S, D, W>,
  'retry' | 'startOver'
>;

/**
 * Handed to an event's `on`: the session's data, the step it is at (null for a session the event
 * starts), and the outcomes an event may have: go to a step, or hand off. Returning nothing
 * leaves the session as it is (recorded `ignored`).
 */
export interface EventContext<
  S extends string = string,
  D = FlowData,
  To extends string = S,
  W extends string = string,
> {
  readonly data: Readonly<D>;
  readonly step: S | null;
  readonly t: Translate<W>;
  /** Go to `step` (one of the event's `to`), merging `set` into the data; `say` is sent before its prompt. */
  goto<T extends To>(step: T, set?: Partial<D>, say?: Replies): Outcome<T, D>;
  /** Go to `step` (one of the event's `to`) with the data cleared first, then `set` merged. */
  restart<T extends To>(step: T, set?: Partial<D>, say?: Replies): Outcome<T, D>;
  /** Hand the session to a human, as a step's handoff does. */
  handoff(reason: string): Outcome<never, D>;
}

/**
 * Something the bot's own systems tell a session (an order shipped, a payment cleared): posted
 * to `POST /admin/api/sessions/:waId/events`, applied in order with the user's messages, under
 * the session's baton.
 */
export interface EventSpec<
  S extends string = string,
  D = FlowData,
  P = unknown,
  To extends string = S,
  W extends string = string,
> {
  /** The steps the event may lead to (checked when the flow loads), the only ones its `on` may go to. */
  readonly to: readonly NoInfer<To>[];
  /** Checks the payload when it is posted: one the schema refuses is a `400`, never stored. */
  readonly payload?: DataSchema<P>;
  /**
   * What the event does at the session's current step. Not called while an agent has the
   * session (the event is `held`, like the user's messages).
   */
  // A method, so that a handler may name its payload's type (checked by `payload`, if given).
  on(payload: P, c: EventContext<S, D, To, W>): Outcome<To, D> | undefined;
}

/** Which inputs a step takes. A step with `choices` takes exactly those ids. */
export type Accepts = 'text' | 'choice' | 'any';

/** Handed to an effect function. */
export interface EffectContext {
  /** Stable across retries and crashes, never reused: send it as an idempotency key. */
  readonly effectId: string;
  /** Aborted on timeout and when the worker loses the session's lease (a stopping worker lets the attempt finish): pass it to `fetch`. */
  readonly signal: AbortSignal;
  /** The session's data when the effect started. */
  readonly data: FlowData;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/** Work outside Baton. Thrown errors are retried per the policy unless `EffectError` says not to. */
export interface EffectDef<I, R> {
  readonly run: (input: I, ctx: EffectContext) => Promise<R>;
  /** Attempts in all, default 3. */
  readonly attempts?: number;
  /** Wait before the second attempt, doubled each time; default 500 ms. */
  readonly backoffMs?: number;
  /** Each attempt is aborted after this long and counts as a retryable failure; default 5000 ms. */
  readonly timeoutMs?: number;
}

/**
 * A text as keywords are compared: trimmed, in lower case, each run of white space one space
 * ("Start  over" typed with two spaces is `start over`; outside test QA48), the next-line
 * character (U+0085, which JavaScript's `\s` leaves out) included (QA51-F5).
 */
export function keywordForm(text: string): string {
  return text
    .replace(/\u0085/g, ' ')
    .trim()
    .toLowerCase()
    .replace(/\s+/g, ' ');
}

/** Defines an effect, inferring its input and result types from `run`. */
export function effect<I, R>(def: EffectDef<I, R>): EffectDef<I, R> {
  return def;
}

/** Throw it from an effect to say whether trying again may help (default for other errors: yes). */
export class EffectError extends Error {
  readonly retryable: boolean;
  constructor(message: string, opts: { retryable: boolean; cause?: unknown }) {
    super(message, opts.cause === undefined ? {} : { cause: opts.cause });
    this.name = 'EffectError';
    this.retryable = opts.retryable;
  }

  /**
   * Whether `err` is an EffectError, by shape as well as by class: a flows module loaded from
   * source beside a compiled Baton has its own copy of the class.
   */
  static is(err: unknown): err is EffectError {
    return (
      err instanceof EffectError ||
      (err instanceof Error &&
        err.name === 'EffectError' &&
        typeof (err as { retryable?: unknown }).retryable === 'boolean')
    );
  }
}

/** Why an effect gave up, as its step's `onFailure` sees it. */
export interface EffectFailure {
  readonly error: string;
  readonly attempts: number;
}

// `never` input: any effect's `run` is assignable, whatever input it takes.
type AnyEffect = EffectDef<never, unknown>;
/** The effects a flow declares, by name. */
export type EffectMap = Readonly<Record<string, AnyEffect>>;
/** A flow that declares no effects: no step may use one. */
export type NoEffects = Readonly<Record<never, AnyEffect>>;
// An effect whose `run` names no input is inferred as taking `never` where `effects` is typed by
// its constraint (inside `defineFlow`): it takes anything.
type InputOf<X> = X extends { run: (input: infer I, ctx: EffectContext) => Promise<unknown> }
  ? [I] extends [never]
    ? unknown
    : I
  : never;
type ResultOf<X> = X extends { run: (input: never, ctx: EffectContext) => Promise<infer R> } ? R : never;

/** A function: JSON leaves it out of an object (and writes `null` for it in an array). */
type Fn = (...args: never[]) => unknown;
/** Flattens an intersection of object types into one, for readable hovers and errors. */
type Flat<T> = { [K in keyof T]: T[K] } & {};

/**
 * What a value becomes once stored as JSON and read back, as an effect's result reaches
 * `onResult` (it is kept in the session's mailbox): a `Date` is its ISO string, functions are
 * gone, and a field that may be `undefined` may be missing (JSON drops it: outside test QA86-F1,
 * `{ eta: string | undefined }` was typed with `eta` always a string), as an optional field.
 * In an array, `undefined` reads back as `null` (outside test B7: the result was typed as `run`
 * returned it).
 */
export type Jsonified<T> = unknown extends T
  ? T // unknown (an effect not typed) stays so
  : T extends string | number | boolean | null
    ? T
    : T extends { toJSON(): infer J }
      ? Jsonified<J>
      : T extends undefined | symbol | bigint | Fn
        ? never
        : T extends ReadonlySet<unknown> | ReadonlyMap<unknown, unknown>
          ? Record<string, never> // JSON writes a Set or a Map as {} (outside test QA101-F4)
          : T extends readonly (infer U)[]
            ? Array<Jsonified<Exclude<U, undefined>> | (undefined extends U ? null : never)>
            : T extends object
              ? Flat<
                  {
                    [K in keyof T as T[K] extends Fn ? never : undefined extends T[K] ? never : K]: Jsonified<
                      T[K]
                    >;
                  } & {
                    [
                      K in keyof T as T[K] extends Fn ? never : undefined extends T[K] ? K : never
                    ]?: Jsonified<Exclude<T[K], undefined>>;
                  }
                >
              : never;

/**
 * An effect's result as `onResult` gets it: {@link Jsonified}, and a `run` that returns nothing
 * (`Promise<void>`) or `undefined` gives `null` (outside test QA86-F2: it was typed `never`, so
 * a test could not resolve the effect without a cast).
 */
export type EffectResult<T> = unknown extends T
  ? T
  : Jsonified<Exclude<T, undefined | void>> | (undefined extends T ? null : never);

/**
 * Whether JSON keeps every value of `T` as it is: `false` (or `boolean`, for a union with such a
 * member) when a value holds a function, a method (a `Date`, a `Map`, a `Set`, a class instance),
 * a `bigint` or a `symbol`.
 */
type JsonKeeps<T> = unknown extends T
  ? true
  : T extends string | number | boolean | null | undefined
    ? true
    : T extends Fn | symbol | bigint
      ? false
      : T extends readonly (infer U)[]
        ? JsonKeeps<U>
        : T extends object
          ? false extends { [K in keyof T]-?: JsonKeeps<T[K]> }[keyof T]
            ? false
            : true
          : false;

/**
 * An effect's input as a step's `input` must give it: `I` when JSON keeps it, since the input is
 * stored in the session's mailbox and `run` gets it back from JSON; otherwise a type no value
 * has, whose key says why (outside test QA101-F8: `run` typed `(input: { at: Date })` compiled,
 * then got a string and failed every attempt).
 */
type StoredInput<I> =
  false extends JsonKeeps<I>
    ? { readonly 'an effect input goes through JSON: no Date, Map, Set, method or function': I }
    : I;

/**
 * A step's `input` for an effect that takes `I`: optional when the session's data is such an
 * input (the default), required otherwise (outside test QA92-F2: an effect whose `run` takes
 * `{ order: string }` was given the whole data, unchecked, when `input` was left out).
 */
type EffectInput<D, I> = [Readonly<D>] extends [I]
  ? {
      /** Its input, computed from the data when the step is entered (default: the data). */
      readonly input?: (data: Readonly<D>) => StoredInput<I>;
    }
  : {
      /** Its input, computed from the data when the step is entered (the data is no such input). */
      readonly input: (data: Readonly<D>) => StoredInput<I>;
    };

/** A step's use of one of the flow's effects: started on entering the step. */
export type StepEffect<S extends string, D, E extends EffectMap, W extends string = string> = {
  [N in keyof E & string]: EffectInput<D, InputOf<E[N]>> & {
    /** The effect's name in the flow's `effects`. */
    readonly use: N;
    /** Applied when the effect succeeds, under the session's lease like any input. */
    readonly onResult: (result: EffectResult<ResultOf<E[N]>>, c: ResultContext<S, D, W>) => Outcome<S, D>;
    /** Applied when every attempt failed. */
    readonly onFailure: (failure: EffectFailure, c: ResultContext<S, D, W>) => Outcome<S, D>;
  };
}[keyof E & string];

/**
 * One step. `S`: the flow's step ids; `To`: those this step may go to (its `to`), the only ones
 * its handlers' `c.goto` and `c.restart` take (outside test QA92-F1: a `c.goto` to a real step
 * missing from `to` compiled, then failed at a user's message); `Self`: its own id, which the
 * start step's `first` may go to as well.
 */
export interface StepSpec<
  S extends string = string,
  D = FlowData,
  // A step typed without effects fits a flow with or without them (outside test QA97-F4).
  E extends EffectMap = NoEffects,
  To extends string = S,
  Self extends string = S,
  W extends string = string,
> {
  /**
   * The prompt: sent on entering the step and on each retry. Several messages are sent in order.
   * Required on a step that waits for the user's answer (one with `on`); an effect's step may omit it.
   */
  readonly say?: Replies | ((data: Readonly<D>, ctx: WordsContext<W>) => Replies);
  /** For a choice step: the reply buttons (up to 3) or list rows (up to 10) it offers; may depend on data. */
  readonly choices?:
    readonly ChoiceSpec<D, W>[] | ((data: Readonly<D>, ctx: WordsContext<W>) => readonly Choice[]);
  /** Label of the list button when there are more than 3 choices (default `Choose`). */
  readonly listButton?: Words<D, W>;
  /** `text` or `any`; a step with `choices` accepts `choice`. */
  readonly accepts?: 'text' | 'any';
  /**
   * Whether consecutive texts of one batch are one input here, joined by one space (a name or an
   * address typed in pieces). Default: at a step that accepts `text`, yes; at one that accepts
   * `any`, no: each text is an input of its own, so "ORD-20003" + "thanks" is an order number and
   * then a thanks. On the start step it applies to a new session's first message too (`first`).
   * A step of choices takes each text on its own.
   */
  readonly joinTexts?: boolean;
  /** Every step this one may go to. */
  readonly to: readonly To[];
  /** Decides on valid input. Synchronous and pure: no I/O, no clock, no randomness (use an effect). */
  readonly on?: (input: StepInput, ctx: StepContext<To, D, W>) => Outcome<To, D>;
  /**
   * On the start step only: decides on a new session's first message (read its language, or an
   * answer typed before the question). Without it, a new session is sent the start step's prompt.
   */
  readonly first?: (input: StepInput, ctx: StepContext<To | Self, D, W>) => Outcome<To | Self, D>;
  /** Invalid inputs in a row before a hand-off (default: `BATON_MAX_RETRIES`). */
  readonly maxRetries?: number;
  /** Work started on entering the step; the step waits for its result (see `StepEffect`). */
  readonly effect?: StepEffect<To, D, E, W>;
  /**
   * Data keys the step relies on (its prompt quotes them, its handler reads them). An agent's
   * hand-back to the step is refused while one of them is unset, so the bot never asks a
   * question built on data it does not have.
   */
  readonly needs?: readonly NoInfer<keyof D & string>[];
  /**
   * Whether an agent may hand the session back at this step (default true). `false` for a step
   * whose entry does what only the user may ask for: entering the order-status example's
   * `cancelling` cancels the order at the shop.
   */
  readonly handback?: boolean;
}

/**
 * Per-language catalogs: `t(key)` looks the key up in the catalog named by `data[field]`. `W`:
 * their keys; every catalog has each of them (a key one language lacks would fail its users).
 */
export interface WordsSpec<D, W extends string = string> {
  /** The data key holding the session's language. */
  readonly field: keyof D & string;
  /** The language used when the field is unset or unknown. */
  readonly default: string;
  readonly catalogs: Readonly<Record<string, Readonly<Record<W, string>>>>;
}

/** A schema the stored data is checked against when a session is loaded (a zod schema fits). */
export interface DataSchema<D> {
  safeParse(value: unknown): { success: true; data: D } | { success: false; error: unknown };
}

/**
 * What a data schema's error says, on one line: a zod error's issues as `path: message`, any
 * other error's message.
 */
export function schemaIssues(error: unknown, root = '(data)'): string {
  const issues = (error as { issues?: unknown } | null)?.issues;
  if (Array.isArray(issues) && issues.length > 0) {
    return issues
      .slice(0, 5)
      .map((i: { path?: unknown; message?: unknown }) => {
        const path = Array.isArray(i.path) && i.path.length > 0 ? i.path.join('.') : root;
        return `${path}: ${String(i.message)}`;
      })
      .join('; ');
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Why the flow refuses an event posted to a session (no such event, or a payload its schema
 * refuses), as the events route answers it; undefined when it takes it. `testFlow` asks the same,
 * so a test refuses what the route refuses (outside test QA101-F2).
 */
export function eventRefusal(flow: Flow, name: string, payload: unknown): BatonError | undefined {
  const def = flow.events.get(name);
  if (def === undefined)
    return new BatonError('BATON_ERR_UNKNOWN_EVENT', `flow ${flow.id} has no event "${name}"`);
  const checked = def.payload?.safeParse(payload);
  if (checked === undefined || checked.success) return undefined;
  const what = payload == null ? 'needs a payload' : 'refuses that payload';
  return new BatonError(
    'BATON_ERR_BAD_REQUEST',
    `event "${name}" of flow ${flow.id} ${what}: ${schemaIssues(checked.error, '(payload)')}`,
  );
}

/**
 * The keys of `T` that are not lower case, each mapped to the rule they break: intersected with
 * a field's type, a camelCase effect or event name fails to compile, saying why, instead of at
 * load (outside test QA58-F6). Digits and underscores pass, as the load-time check lets them.
 */
export type LowerSnakeKeys<T> = {
  readonly [
    K in keyof T as K extends string
      ? string extends K
        ? never // a map not typed name by name
        : K extends Lowercase<K>
          ? never
          : K
      : never
  ]: 'names are lower_snake_case';
};

/** Each event's payload type, by event name (inferred from each event's `payload` schema). */
export type EventPayloads = Readonly<Record<string, unknown>>;

/**
 * A flow as `defineFlow` takes it. `S`: its step ids; `To`: by step, the steps each may go to (as
 * `defineFlow` infers it from each step's `to`; by default any step).
 */
export interface FlowSpec<
  S extends string,
  D = FlowData,
  E extends EffectMap = EffectMap,
  Ev extends EventPayloads = EventPayloads,
  To extends { readonly [K in S]: S } = { readonly [K in S]: S },
  EvTo extends { readonly [K in keyof EvTo]: S } = { readonly [K in keyof Ev]: S },
  W extends string = string,
> {
  readonly id: string;
  /** The author's version of the flow; stored with each session. */
  readonly version?: number;
  /** The data's shape, declared once; stored data that fails it restarts the session. */
  readonly data?: DataSchema<D>;
  /** Effects steps may use, by name. Declare them before `steps`. */
  readonly effects?: E & LowerSnakeKeys<E>;
  /**
   * Events the bot's own systems may post to a session, by name (lower_snake_case). Each `on`
   * gets its payload typed by the event's `payload` schema (`unknown` without one).
   */
  readonly events?: {
    readonly [K in keyof Ev]: EventSpec<
      NoInfer<S>,
      D,
      Ev[K],
      K extends keyof EvTo ? EvTo[K] : NoInfer<S>,
      NoInfer<W>
    >;
  } & { readonly [K in keyof EvTo]: { readonly to: readonly EvTo[K][] } } & LowerSnakeKeys<Ev>;
  readonly start: NoInfer<S>;
  readonly steps: { readonly [K in S]: StepSpec<S, D, E, To[K], K, NoInfer<W>> };
  /** Texts that restart the flow from any step (compared trimmed, case-insensitive). */
  readonly resetKeywords?: readonly string[];
  /**
   * Texts that hand the user to a person from any step of a conversation (compared trimmed,
   * case-insensitive; none by default): as `c.handoff`, with the reason `asked for a person
   * ("<text>")`. They work at steps of choices too, where a typed text never reaches `on`. A new
   * session's first message goes to the start step's `first` as any other.
   */
  readonly handoffKeywords?: readonly string[];
  /**
   * Data keys a user's reset keyword keeps (what belongs to the user rather than to one
   * conversation: their language, say). Everything else is cleared; an agent's reset and an
   * expired session clear everything.
   */
  readonly keepOnReset?: readonly NoInfer<keyof D & string>[];
  readonly notices?: {
    /** Sent for a tap on a button of another step or an earlier visit. */
    readonly stale?: Words<D, NoInfer<W>>;
    /** Sent when the session is handed to an agent. */
    readonly handoff?: Words<D, NoInfer<W>>;
    /**
     * Sent once when flow code fails on a batch and its messages are dead-lettered. A function
     * (`(d, c) => c.t('sorry')`) is the session's language; should it throw too, the default
     * English text is sent.
     */
    readonly error?: Words<D, NoInfer<W>>;
  };
  readonly words?: WordsSpec<D, W>;
  /**
   * Upgrades the data of a session stored by an earlier `version` of this flow, before its next
   * batch (then the data schema, if any, checks the result). It returns data as stored, not the
   * flow's type: the schema decides that type, so a `migrate` written as the docs write it does
   * not widen every handler's data to `unknown` (outside test QA65-F4).
   */
  readonly migrate?: (data: FlowData, fromVersion: number) => FlowData;
  /**
   * Steps this flow no longer has, and the step their sessions continue at (recorded as an
   * `advance` from the old step). A session at a removed step not listed here is held for an
   * agent (recorded `escalated`), never silently restarted.
   */
  readonly moved?: { readonly [removed: string]: NoInfer<S> };
}

/** The step ids and data shape of a flow, kept for the types only. */
declare const FLOW_TYPES: unique symbol;

/** A validated flow, ready for the runtime (ids and data are plain at run time). */
export interface Flow<S extends string = string> {
  readonly id: string;
  readonly version: number;
  readonly start: S;
  readonly steps: ReadonlyMap<string, StepDef>;
  /** Choice id -> the first step that offers it (statically). */
  readonly choiceOwner: ReadonlyMap<string, string>;
  /** Choice id -> every step that offers it (statically). */
  readonly choiceSteps: ReadonlyMap<string, readonly string[]>;
  readonly resetKeywords: ReadonlySet<string>;
  /** Texts that hand the user to a person (trimmed, lower case). */
  readonly handoffKeywords: ReadonlySet<string>;
  /** Data keys a reset keyword keeps. */
  readonly keepOnReset: readonly string[];
  readonly notices: {
    readonly stale: Words<FlowData>;
    readonly handoff: Words<FlowData>;
    readonly error: Words<FlowData>;
  };
  readonly effects: ReadonlyMap<string, EffectDef<unknown, unknown>>;
  readonly events: ReadonlyMap<string, EventSpec<string, FlowData, unknown>>;
  readonly data?: DataSchema<FlowData>;
  readonly words?: WordsSpec<FlowData>;
  readonly migrate?: (data: FlowData, fromVersion: number) => FlowData;
  /** Removed step -> the step its sessions continue at. */
  readonly moved: ReadonlyMap<string, string>;
}

/**
 * A flow as `defineFlow` returns it: the runtime shape, plus its step ids, data shape, effects
 * and event payloads for the types.
 */
export type TypedFlow<
  S extends string,
  D,
  E extends EffectMap = EffectMap,
  Ev extends EventPayloads = EventPayloads,
> = Flow<S> & {
  readonly [FLOW_TYPES]?: { readonly steps: S; readonly data: D; readonly effects: E; readonly events: Ev };
};
/** The step ids of a flow returned by `defineFlow`. */
export type StepIdOf<F> = F extends TypedFlow<infer S, unknown> ? S : string;
/** The data shape of a flow returned by `defineFlow`. */
export type DataOf<F> = F extends TypedFlow<string, infer D> ? D : FlowData;
/** Each effect's result type by effect name, of a flow returned by `defineFlow`. */
export type EffectResultsOf<F> =
  F extends TypedFlow<string, unknown, infer E>
    ? { readonly [K in keyof E & string]: EffectResult<ResultOf<E[K]>> }
    : Readonly<Record<string, unknown>>;
/** Each event's payload type by event name, of a flow returned by `defineFlow`. */
export type EventPayloadsOf<F> =
  F extends TypedFlow<string, unknown, EffectMap, infer Ev> ? Ev : EventPayloads;

// `S` is kept for code written against the earlier generic form; ids are plain strings at run time.
// eslint-disable-next-line @typescript-eslint/no-unused-vars
export interface StepDef<S extends string = string> {
  readonly id: string;
  readonly say?: StepSpec['say'];
  readonly listButton?: Words<FlowData>;
  readonly to: readonly string[];
  readonly on?: StepSpec['on'];
  readonly first?: StepSpec['first'];
  readonly maxRetries?: number;
  readonly accepts: Accepts;
  /** Whether consecutive texts of one batch are one input here (see `StepSpec.joinTexts`). */
  readonly joinTexts: boolean;
  /** Declared choices (ids known when the flow loads); empty when the step has none or computes them. */
  readonly choices: readonly ChoiceSpec[];
  readonly dynamicChoices?: (data: FlowData, ctx: WordsContext) => readonly Choice[];
  /** The flow's catalogs, so a step's prompt can be built from the step alone (`promptOf`). */
  readonly words?: WordsSpec<FlowData>;
  /** Data keys the step relies on (see `StepSpec.needs`); empty when it names none. */
  readonly needs: readonly string[];
  /** Whether an agent may hand a session back at this step (see `StepSpec.handback`). */
  readonly handback: boolean;
  readonly effect?: {
    readonly use: string;
    readonly input?: (data: FlowData) => unknown;
    readonly onResult: (result: unknown, c: StepContext) => Outcome;
    readonly onFailure: (failure: EffectFailure, c: StepContext) => Outcome;
  };
}

const DEFAULT_RESET_KEYWORDS = ['reset', 'start over', 'restart'];
const STEP_ID = /^[a-z][a-z0-9_]*$/;
/**
 * Longest flow or step id: both name every reply in `biz_opaque_callback_data`
 * (`baton:<flow>:<step>:<version>…`), which Meta caps at 512 characters (outside test QA35-F5:
 * long ids made every prompt's 585 and Graph refuses it).
 */
const MAX_ID = 64;
const idProblem = (id: string): string | undefined =>
  !STEP_ID.test(id)
    ? 'id must be lower_snake_case'
    : id.length > MAX_ID
      ? `id must be at most ${MAX_ID} characters (it names every reply sent, in biz_opaque_callback_data)`
      : undefined;
const EFFECT_NAME = /^[a-z][a-z0-9_]*$/;

/**
 * The fields of each part of a flow: any other is a misspelling. Written as records over the
 * types' keys, so the compiler says when a field is added to a type and not here (or the reverse).
 */
const fields = <T>(all: Record<keyof T, true>): readonly string[] => Object.keys(all);
const FLOW_FIELDS = fields<FlowSpec<string>>({
  id: true,
  version: true,
  data: true,
  effects: true,
  events: true,
  start: true,
  steps: true,
  resetKeywords: true,
  handoffKeywords: true,
  keepOnReset: true,
  notices: true,
  words: true,
  migrate: true,
  moved: true,
});
const STEP_FIELDS = fields<StepSpec>({
  say: true,
  choices: true,
  listButton: true,
  accepts: true,
  joinTexts: true,
  to: true,
  on: true,
  first: true,
  maxRetries: true,
  effect: true,
  needs: true,
  handback: true,
});
const NOTICE_FIELDS = fields<NonNullable<FlowSpec<string>['notices']>>({
  stale: true,
  handoff: true,
  error: true,
});
const WORDS_FIELDS = fields<WordsSpec<FlowData>>({ field: true, default: true, catalogs: true });
const EFFECT_FIELDS = fields<EffectDef<unknown, unknown>>({
  run: true,
  attempts: true,
  backoffMs: true,
  timeoutMs: true,
});
const EVENT_FIELDS = fields<EventSpec>({ to: true, payload: true, on: true });
const STEP_EFFECT_FIELDS = fields<StepEffect<string, FlowData, EffectMap>>({
  use: true,
  input: true,
  onResult: true,
  onFailure: true,
});

/**
 * ` (did you mean "ask_dob"?)` for a step id that is none of the flow's, if one is close: a
 * JavaScript author gets no compiler to say it (outside test QA138-F4).
 */
export function meantStep(id: string, ids: readonly string[]): string {
  const near = closest(String(id), ids);
  return near === undefined ? '' : ` (did you mean "${near}"?)`;
}

/** `unknown field "choises" (did you mean "choices"?)`: the closest known field, if one is close. */
function unknownField(field: string, known: readonly string[]): string {
  const near = closest(field, known);
  return `unknown field "${field}"${near ? ` (did you mean "${near}"?)` : ''}; known: ${known.join(', ')}`;
}

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
export function defineFlow<
  // Each step's id, with the steps its `to` names: a name in a `to` that is no step fails here,
  // and each step's handlers take only the steps its `to` names.
  const T extends { readonly [K in keyof T]: keyof T & string },
  D = FlowData,
  E extends EffectMap = NoEffects,
  Ev extends EventPayloads = EventPayloads,
  // Each event's name, with the steps its `to` names: its `on` may go to those only.
  const EvTo extends { readonly [K in keyof EvTo]: keyof T & string } = {
    readonly [K in keyof Ev]: keyof T & string;
  },
  // The catalogs' keys (`words`), the only ones `t` takes; any text without catalogs.
  W extends string = string,
>(spec: FlowSpec<keyof T & string, D, E, Ev, T, EvTo, W>): TypedFlow<keyof T & string, D, E, Ev> {
  type S = keyof T & string;
  const fail = (detail: string): never => {
    throw new FlowDefinitionError(`flow "${spec.id}": ${detail}`);
  };
  const flowIdProblem = idProblem(String(spec.id));
  if (flowIdProblem !== undefined) fail(flowIdProblem);
  // Plain JavaScript has no compiler to catch a misspelt field, which was then ignored (outside
  // test QA22-F3: `choises`, `maxRetry` and `handoffKeyword` loaded without a word).
  const unknown = (where: string, o: object | undefined, known: readonly string[]): void => {
    const extra =
      o === undefined
        ? undefined
        : Object.entries(o).find(([k, v]) => v !== undefined && !known.includes(k))?.[0];
    if (extra !== undefined) fail(`${where}${unknownField(extra, known)}`);
  };
  unknown('', spec, FLOW_FIELDS);
  unknown('notices: ', spec.notices, NOTICE_FIELDS);
  unknown('words: ', spec.words, WORDS_FIELDS);
  // Plain JavaScript again: no steps at all, or a step that is no object, said in words (outside
  // test QA51-F4: "Cannot convert undefined or null to object").
  if (!isObject(spec.steps)) fail('needs "steps", an object of step definitions by step id');
  const ids = Object.keys(spec.steps) as S[];
  if (ids.length === 0) fail('has no steps');
  for (const id of ids) {
    if (!isObject((spec.steps as Record<string, unknown>)[id]))
      fail(`step "${id}": a step is an object (say, on, to, ...)`);
  }
  if (!ids.includes(spec.start))
    fail(`start step "${spec.start}" is not defined${meantStep(spec.start, ids)}`);
  // Compared as numbers with what sessions store: a string ('10' < '9') or a fraction misread
  // which version is newer (outside test QA70-F6).
  if (spec.version !== undefined && (!Number.isInteger(spec.version) || spec.version < 1))
    fail(`version must be a whole number from 1, got ${JSON.stringify(spec.version)}`);
  const moved = new Map<string, string>();
  for (const [removed, to] of Object.entries(spec.moved ?? {}) as [string, S][]) {
    if (ids.includes(removed as S)) fail(`moved: "${removed}" is still a step of this flow`);
    if (!ids.includes(to)) fail(`moved: "${removed}" goes to unknown step "${to}"${meantStep(to, ids)}`);
    moved.set(removed, to);
  }

  const transformed = transformedKeys(spec.data);
  if (transformed.length > 0) {
    fail(
      `data ${transformed.map((k) => `"${k}"`).join(', ')}: a data schema describes the data as stored, and stored data is read by it again at every change, so a transform would run again on its own output; keep the data plain and transform where you use it`,
    );
  }

  // Stored as JSON, a Date comes back as its ISO text, a Map or Set as {}: the schema then refused
  // its own stored data and the session started over at the user's next message (outside test
  // QA101-F9: z.date() loaded, type-checked and passed testFlow).
  const unstorable = unstorableKeys(spec.data);
  if (unstorable.length > 0) {
    fail(
      `data ${unstorable.map(([k, t]) => `"${k}" (${t})`).join(', ')}: the data is stored as JSON, which has no ${[...new Set(unstorable.map(([, t]) => t))].join(' or ')}: it would be read back as something else, which the schema refuses; keep a date as an ISO string or a number of milliseconds`,
    );
  }

  // The data keys a flow names beside its steps' handlers: a key a closed data schema lacks is
  // never stored (the schema strips or refuses it), so a misspelling there kept nothing on a
  // reset, refused every hand-back, or read no language; TypeScript catches it, JavaScript did
  // not (outside test QA101-F7).
  const dataKeys = closedShapeKeys(spec.data);
  const checkKeys = (what: string, keys: unknown): void => {
    if (dataKeys === undefined || !Array.isArray(keys)) return;
    for (const key of keys) {
      if (typeof key !== 'string' || dataKeys.has(key)) continue;
      const near = closest(key, dataKeys);
      fail(
        `${what}: "${key}" is no key of the data schema${near === undefined ? '' : ` (did you mean "${near}"?)`}`,
      );
    }
  };
  checkKeys('keepOnReset', spec.keepOnReset);
  if (spec.words) checkKeys('words.field', [spec.words.field]);
  for (const [id, s] of Object.entries(spec.steps))
    if (isObject(s)) checkKeys(`step "${id}": needs`, s.needs);

  const effects = new Map<string, EffectDef<unknown, unknown>>();
  for (const [name, def] of Object.entries(spec.effects ?? {})) {
    if (!EFFECT_NAME.test(name)) fail(`effect "${name}": name must be lower_snake_case`);
    const d = def as EffectDef<unknown, unknown>;
    unknown(`effect "${name}": `, d, EFFECT_FIELDS);
    if (typeof d.run !== 'function') fail(`effect "${name}": run must be a function`);
    for (const k of ['attempts', 'backoffMs', 'timeoutMs'] as const) {
      const v = d[k];
      if (v !== undefined && (!Number.isInteger(v) || v < (k === 'attempts' ? 1 : 0)))
        fail(`effect "${name}": ${k} must be a ${k === 'attempts' ? 'positive' : 'non-negative'} integer`);
    }
    effects.set(name, d);
  }

  const events = new Map<string, EventSpec<string, FlowData, unknown>>();
  for (const [name, def] of Object.entries(spec.events ?? {})) {
    const at = `event "${name}"`;
    if (!EFFECT_NAME.test(name)) fail(`${at}: name must be lower_snake_case`);
    const e = def as unknown as EventSpec<string, FlowData, unknown>;
    unknown(`${at}: `, e, EVENT_FIELDS);
    if (typeof e.on !== 'function') fail(`${at}: on must be a function`);
    if (!Array.isArray(e.to)) fail(`${at}: needs "to", the steps it may lead to`);
    for (const target of e.to)
      if (!ids.includes(target as S))
        fail(`${at}: goes to unknown step "${target}"${meantStep(target, ids)}`);
    events.set(name, e);
  }

  if (spec.words) {
    const words = spec.words as WordsSpec<FlowData>;
    const base = words.catalogs[words.default];
    if (!base) fail(`words: no catalog for the default language "${words.default}"`);
    for (const [lang, cat] of Object.entries(words.catalogs)) {
      for (const k of Object.keys(base!)) {
        if (typeof cat[k] !== 'string') fail(`words: catalog "${lang}" has no "${k}"`);
        // One call fills every language's text: they must name the same values.
        const want = placeholders(base![k]!);
        const got = placeholders(cat[k]!);
        if (want !== got)
          fail(
            `words: "${lang}.${k}" has placeholders ${got || '(none)'}, "${words.default}.${k}" has ${want || '(none)'}`,
          );
      }
    }
  }

  const steps = new Map<string, StepDef>();
  const choiceSteps = new Map<string, string[]>();
  for (const id of ids) {
    const s = spec.steps[id] as StepSpec<string, FlowData, EffectMap>;
    const at = `step "${id}"`;
    const stepIdProblem = idProblem(id);
    if (stepIdProblem !== undefined) fail(`${at}: ${stepIdProblem}`);
    unknown(`${at}: `, s, STEP_FIELDS);
    unknown(`${at}: effect: `, s.effect, STEP_EFFECT_FIELDS);
    // Plain JavaScript has no compiler to say so (outside test QA4-L2: "s.to is not iterable").
    if (!Array.isArray(s.to)) fail(`${at}: needs "to", the steps it may go to ([] for none)`);
    for (const target of s.to) {
      if (!ids.includes(target as S))
        fail(`${at}: goes to unknown step "${target}"${meantStep(target, ids)}`);
    }
    if (s.first !== undefined && id !== spec.start) fail(`${at}: only the start step may have "first"`);
    if (s.maxRetries !== undefined && (!Number.isInteger(s.maxRetries) || s.maxRetries < 0))
      fail(`${at}: maxRetries must be a non-negative integer`);
    // Values, not only names, for plain JavaScript (outside test QA70-F6: `accepts: 'txt'` made
    // every answer a retry, `joinTexts: 'no'` joined the texts).
    if (s.accepts !== undefined && s.accepts !== 'text' && s.accepts !== 'any')
      fail(`${at}: accepts must be 'text' or 'any', got ${JSON.stringify(s.accepts)}`);
    if (s.joinTexts !== undefined && typeof s.joinTexts !== 'boolean')
      fail(`${at}: joinTexts must be true or false, got ${JSON.stringify(s.joinTexts)}`);
    const eff = s.effect as StepDef['effect'];
    if (eff !== undefined) {
      if (!effects.has(eff.use)) fail(`${at}: uses effect "${eff.use}", which the flow does not declare`);
      // Found only when the API first failed, as "eff.onFailure is not a function", the user handed
      // to an agent (outside test QA138-F9): a JavaScript author has no compiler to say it.
      const missing = (['onResult', 'onFailure'] as const).filter((h) => typeof eff[h] !== 'function');
      if (missing.length > 0) fail(`${at}: its effect needs ${missing.join(' and ')} (a function each)`);
      if (s.choices !== undefined || s.accepts !== undefined || s.on !== undefined)
        fail(`${at}: a step with an effect waits for its result; drop choices, accepts and on`);
    } else if (s.on === undefined) {
      fail(
        `${at}: needs "on" (or an effect): even a last step answers what the user writes after it, e.g. accepts: 'any', on: (_i, c) => c.startOver()`,
      );
    } else if (s.say === undefined || (Array.isArray(s.say) && s.say.length === 0)) {
      // A step that waits for the user's answer asks for it: without a prompt nothing was sent
      // on entry or on a retry, and a step of choices sent a bare "Choose" (outside test A3);
      // `say: []` failed at each visit (outside test QA103-F1).
      fail(`${at}: waits for the user's answer but has no prompt: give it "say"`);
    }
    const dynamic = typeof s.choices === 'function' ? s.choices : undefined;
    const choices: readonly ChoiceSpec[] = typeof s.choices === 'function' ? [] : (s.choices ?? []);
    if (s.choices !== undefined && s.accepts !== undefined) {
      fail(`${at}: a step with choices accepts them; drop "accepts"`);
    }
    if (Array.isArray(s.choices) && choices.length === 0) fail(`${at}: choices is empty`);
    const seen = new Set<string>();
    for (const c of choices) {
      if (seen.has(c.id)) fail(`${at}: duplicate choice id "${c.id}"`);
      seen.add(c.id);
      choiceSteps.set(c.id, [...(choiceSteps.get(c.id) ?? []), id]);
    }
    if (s.choices !== undefined && s.joinTexts === true)
      fail(`${at}: a step with choices takes each text as an input of its own; drop "joinTexts"`);
    const accepts: Accepts =
      s.choices !== undefined ? 'choice' : eff !== undefined ? 'any' : (s.accepts ?? 'text');
    const def: StepDef = {
      id,
      to: s.to,
      accepts,
      joinTexts: s.joinTexts ?? accepts === 'text',
      choices,
      needs: s.needs ?? [],
      handback: s.handback ?? true,
      ...(s.say !== undefined ? { say: s.say } : {}),
      ...(s.listButton !== undefined ? { listButton: s.listButton } : {}),
      ...(s.on !== undefined ? { on: s.on } : {}),
      ...(s.first !== undefined ? { first: s.first } : {}),
      ...(s.maxRetries !== undefined ? { maxRetries: s.maxRetries } : {}),
      ...(dynamic !== undefined ? { dynamicChoices: dynamic } : {}),
      ...(eff !== undefined ? { effect: eff } : {}),
      ...(spec.words !== undefined ? { words: spec.words } : {}),
    };
    // A `list()` prompt names its own button. A computed `say` is known when built (a `list()`
    // it returns names its button; a text gets "Choose", as computed choices do): refusing it
    // here refused `say: () => list(...)` with an error asking for what it had (outside test
    // QA58-F2).
    const said = typeof s.say === 'function' || s.say === undefined ? undefined : [s.say].flat().at(-1);
    const ownList = typeof said === 'object' && said.type === 'list';
    if (choices.length > 3 && s.listButton === undefined && !ownList && typeof s.say !== 'function')
      fail(`${at}: more than 3 choices need a listButton label (or a list() prompt naming its button)`);
    if (typeof s.say !== 'function')
      checkOwnButtons(at, s.say, choices, dynamic !== undefined, def.accepts, fail);
    // Static prompts are checked now against WhatsApp's limits; dynamic ones when built.
    const fixed = choices.every((c) => typeof c.title === 'string' && typeof c.description !== 'function');
    if (typeof s.say !== 'function' && dynamic === undefined && fixed) {
      const label = typeof s.listButton === 'string' ? s.listButton : 'Choose';
      for (const body of buildReplies(s.say, choices as readonly Choice[], label)) {
        const problems = replyProblems(body);
        if (problems.length > 0) fail(`${at}: ${problems.join('; ')}`);
      }
    }
    // Choices and list labels given as words (`t('yes')`): built in each catalog with empty data
    // and checked the same way, so a translation over a limit is said at load, not found by the
    // first user of that language (outside test QA103-F11: a title of 24 characters in Portuguese
    // dead-lettered every Portuguese user's prompt). Words that need data are left to run time.
    if (dynamic === undefined && choices.length > 0 && (!fixed || typeof s.listButton === 'function')) {
      const langs: readonly (string | undefined)[] = spec.words
        ? Object.keys(spec.words.catalogs)
        : [undefined];
      for (const lang of langs) {
        const problems = wordedChoiceProblems(spec, s, choices, lang);
        if (problems.length > 0)
          fail(`${at}${lang === undefined ? '' : `, in catalog "${lang}"`}: ${problems.join('; ')}`);
      }
    }
    steps.set(id, def);
  }

  // An event's steps are reached from wherever the session is.
  const eventSteps = [...events.values()].flatMap((e) => e.to);
  const reached = new Set<string>([spec.start, ...eventSteps]);
  const queue: string[] = [...reached];
  for (let cur = queue.shift(); cur !== undefined; cur = queue.shift()) {
    for (const next of steps.get(cur)!.to) {
      if (!reached.has(next)) {
        reached.add(next);
        queue.push(next);
      }
    }
  }
  for (const id of ids) if (!reached.has(id)) fail(`step "${id}" is unreachable from "${spec.start}"`);

  const keywords = (list: readonly string[], what: string): Set<string> => {
    const set = new Set(list.map((k) => (typeof k === 'string' ? keywordForm(k) : '')));
    if (set.has('')) fail(`${what}: a keyword must be a text that is not blank`);
    return set;
  };
  const resetKeywords = keywords(spec.resetKeywords ?? DEFAULT_RESET_KEYWORDS, 'resetKeywords');
  const handoffKeywords = keywords(spec.handoffKeywords ?? [], 'handoffKeywords');
  const both = [...handoffKeywords].filter((k) => resetKeywords.has(k));
  if (both.length > 0) fail(`"${both.join('", "')}" is both a reset and a hand-off keyword`);

  // A notice is a text like any reply: one over WhatsApp's limits loaded and was refused by the
  // Graph API, so the user never heard of the hand-off or the error (outside test QA138-F5).
  for (const [name, notice] of Object.entries(spec.notices ?? {})) {
    if (typeof notice !== 'string') continue;
    const problems = replyProblems({ type: 'text', text: notice });
    if (problems.length > 0) fail(`notices.${name}: ${problems.join('; ')}`);
  }

  const choiceOwner = new Map<string, string>();
  for (const [c, owners] of choiceSteps) choiceOwner.set(c, owners[0]!);
  const flow: Flow<S> = {
    id: spec.id,
    version: spec.version ?? 1,
    start: spec.start,
    steps,
    choiceOwner,
    choiceSteps,
    resetKeywords,
    handoffKeywords,
    keepOnReset: [...(spec.keepOnReset ?? [])],
    moved,
    ...(spec.migrate !== undefined ? { migrate: spec.migrate } : {}),
    notices: {
      stale: (spec.notices?.stale ??
        'That button belongs to an earlier question; this conversation has moved on.') as Words<FlowData>,
      handoff: (spec.notices?.handoff ??
        'Thanks for your patience: a member of our team will take it from here.') as Words<FlowData>,
      error: (spec.notices?.error ?? FLOW_ERROR_NOTICE) as Words<FlowData>,
    },
    effects,
    events,
    ...(spec.data !== undefined ? { data: spec.data as DataSchema<FlowData> } : {}),
    ...(spec.words !== undefined ? { words: spec.words } : {}),
  };
  return Object.freeze(flow);
}

/** A `{name}` in a catalog text: filled by `t(key, { name })`. */
const PLACEHOLDER = /\{(\w+)\}/g;

/** A text's placeholders, sorted and deduplicated, as one string (for comparing languages). */
function placeholders(text: string): string {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => `{${m[1]}}`))].sort().join(' ');
}

/** The error notice of a flow that sets none, and of one whose own notice fails too. */
export const FLOW_ERROR_NOTICE =
  'Sorry, something went wrong on our side and we could not handle your last message. Please try again in a moment.';

/**
 * The error notice for a session's data: a notice that is a function runs on the data the
 * session has (which may be what made the flow fail), so anything it throws falls back to
 * {@link FLOW_ERROR_NOTICE}.
 */
export function errorNotice(flow: Pick<Flow, 'id' | 'words' | 'notices'>, data: FlowData): string {
  try {
    const text = wordsOf(flow.notices.error, data, { t: translator(flow, data) });
    // One WhatsApp would refuse is no notice either (outside test QA138-F5).
    return typeof text === 'string' && replyProblems({ type: 'text', text }).length === 0
      ? text
      : FLOW_ERROR_NOTICE;
  } catch {
    return FLOW_ERROR_NOTICE;
  }
}

/** The `t` of a session: its language's catalog, then the default one. */
export function translator(flow: Pick<Flow, 'id' | 'words'>, data: FlowData): Translate {
  return (key, vars) => {
    const w = flow.words;
    let text: string | undefined;
    if (w) {
      const lang = data[w.field];
      text = (typeof lang === 'string' ? w.catalogs[lang]?.[key] : undefined) ?? w.catalogs[w.default]?.[key];
    }
    if (text === undefined) {
      throw new FlowRuntimeError('BATON_ERR_FLOW_HANDLER', flow.id, null, `t("${key}"): no such text`);
    }
    // A placeholder with no value would reach the user as "{name}" (a misspelt var, outside
    // test B9): an error, like a key with no text.
    return text.replace(PLACEHOLDER, (_m, k: string) => {
      const v = vars?.[k];
      if (v === undefined) {
        const given = Object.keys(vars ?? {});
        throw new FlowRuntimeError(
          'BATON_ERR_FLOW_HANDLER',
          flow.id,
          null,
          `t("${key}"): no value for {${k}} (given: ${given.length > 0 ? given.join(', ') : 'none'})`,
        );
      }
      return String(v);
    });
  };
}

/** Resolves a notice or label. */
export function wordsOf(words: Words<FlowData>, data: FlowData, ctx: WordsContext): string {
  return typeof words === 'function' ? words(data, ctx) : words;
}

/** The choices a step offers for the session's current data. */
export function choicesOf(step: StepDef, data: FlowData, ctx: WordsContext): readonly Choice[] {
  if (step.dynamicChoices) return step.dynamicChoices(data, ctx);
  return step.choices.map((c) => ({
    id: c.id,
    title: wordsOf(c.title, data, ctx),
    ...(c.description !== undefined ? { description: wordsOf(c.description, data, ctx) } : {}),
  }));
}

/**
 * What WhatsApp would refuse in a step's choices and list button as built in catalog `lang`
 * (none: no catalogs) with empty data; none when they need data to be built. A computed `say`
 * is left out (it may need data): the choices ride on a one-character text.
 */
function wordedChoiceProblems(
  spec: { readonly id: string; readonly words?: unknown },
  s: Pick<StepSpec, 'say' | 'listButton'>,
  choices: readonly ChoiceSpec[],
  lang: string | undefined,
): string[] {
  const words = spec.words as WordsSpec<FlowData> | undefined;
  const data: FlowData = words !== undefined && lang !== undefined ? { [words.field]: lang } : {};
  const ctx: WordsContext = { t: translator({ id: spec.id, ...(words ? { words } : {}) }, data) };
  let bodies: OutboundBody[];
  try {
    const built = choices.map((c) => ({
      id: c.id,
      title: wordsOf(c.title, data, ctx),
      ...(c.description !== undefined ? { description: wordsOf(c.description, data, ctx) } : {}),
    }));
    const label = s.listButton === undefined ? 'Choose' : wordsOf(s.listButton, data, ctx);
    bodies = buildReplies(typeof s.say === 'function' || s.say === undefined ? '.' : s.say, built, label);
  } catch {
    return [];
  }
  return bodies.flatMap((b) => replyProblems(b));
}

/**
 * A static prompt's own buttons or list rows: with no choices declared, a text step takes no tap
 * (each one a retry: a bot that is a dead end for every user), and with choices, the prompt
 * carries the choices instead, so its own ids must be those. Either way the author meant the
 * ids as the step's choices: said at load.
 */
function checkOwnButtons(
  at: string,
  said: Replies | undefined,
  choices: readonly ChoiceSpec[],
  dynamic: boolean,
  accepts: StepDef['accepts'],
  fail: (message: string) => never,
): void {
  const list = said === undefined ? [] : Array.isArray(said) ? (said as Reply[]) : [said as Reply];
  const last = list.at(-1);
  const quick = typeof last === 'string' ? null : quickRepliesProblem(last, choices);
  if (quick !== null) fail(`${at}: ${quick}`);
  for (const r of list) {
    if (typeof r === 'string' || (r.type !== 'buttons' && r.type !== 'list')) continue;
    const own =
      r.type === 'buttons'
        ? r.buttons.map((b) => b.id)
        : r.sections.flatMap((x) => x.rows.map((row) => row.id));
    if (own.length === 0) continue;
    if (choices.length === 0 && !dynamic && accepts === 'text') {
      fail(
        `${at}: its prompt has ${r.type === 'buttons' ? 'buttons' : 'list rows'} (${own.join(', ')}) but the step declares no choices, so every tap would be a retry: declare them as "choices"`,
      );
    }
    const declared = choices.map((c) => c.id);
    if (choices.length > 0 && !sameIds(own, choices)) {
      fail(
        `${at}: its prompt's own ${r.type === 'buttons' ? 'buttons' : 'rows'} (${own.join(', ')}) are not its choices (${declared.join(', ')}); the choices are what the prompt carries: give "${r.type}" an empty list, or the same ids`,
      );
    }
  }
}

/** The part of a zod schema's internals read to find transforms (zod 4: `_zod.def`). */
interface ZodDefLike {
  readonly _zod?: {
    readonly def?: {
      readonly type?: string;
      readonly innerType?: unknown;
      readonly shape?: unknown;
      readonly entries?: Readonly<Record<string, unknown>>;
      readonly values?: readonly unknown[];
    };
  };
}

/** The fields of a zod object schema, by key; undefined for any other schema. */
function zodShape(schema: unknown): Record<string, unknown> | undefined {
  const def = (schema as ZodDefLike | undefined)?._zod?.def;
  if (def?.type !== 'object' || typeof def.shape !== 'object' || def.shape === null) return undefined;
  return def.shape as Record<string, unknown>;
}

/**
 * The keys of a zod object data schema that keeps no other key (stripped or refused); undefined
 * for any other schema, and for one that passes other keys through.
 */
function closedShapeKeys(schema: unknown): Set<string> | undefined {
  const shape = zodShape(schema);
  if (shape === undefined) return undefined;
  const catchall = (schema as { _zod?: { def?: { catchall?: ZodDefLike } } })._zod?.def?.catchall;
  const rest = catchall?._zod?.def?.type;
  if (rest !== undefined && rest !== 'never') return undefined;
  return new Set(Object.keys(shape));
}

/** A field's schema and those it wraps (`optional`, `nullable`, `default`...), outermost first. */
function* zodDefs(field: unknown): Generator<NonNullable<NonNullable<ZodDefLike['_zod']>['def']>> {
  let d = (field as ZodDefLike | undefined)?._zod?.def;
  for (let depth = 0; d !== undefined && depth < 16; depth++) {
    yield d;
    d = (d.innerType as ZodDefLike | undefined)?._zod?.def;
  }
}

/** Wrappers a field's value type is read through. */
const ZOD_WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch']);

/**
 * The keys of a zod object data schema whose value is transformed (`.transform()`, a pipe),
 * under `optional`, `nullable`, `default` and the like. Other schemas: none known.
 */
function transformedKeys(schema: unknown): string[] {
  return Object.entries(zodShape(schema) ?? {})
    .filter(([, field]) => [...zodDefs(field)].some((d) => d.type === 'pipe' || d.type === 'transform'))
    .map(([key]) => key);
}

/** zod value types JSON does not keep. */
const NOT_JSON = new Set(['date', 'map', 'set', 'bigint', 'symbol', 'function', 'promise']);

/**
 * The keys of a zod object data schema whose value JSON cannot keep (a date, a map, a set...),
 * under `optional`, `nullable`, `default` and the like, with that type. Other schemas: none known.
 */
function unstorableKeys(schema: unknown): [string, string][] {
  return Object.entries(zodShape(schema) ?? {}).flatMap(([key, field]): [string, string][] => {
    const bad = [...zodDefs(field)].find((d) => d.type !== undefined && NOT_JSON.has(d.type));
    return bad === undefined ? [] : [[key, bad.type!]];
  });
}

/** How a data key's value can be typed in (the console's hand-back form). */
export type DataFieldKind =
  | { readonly type: 'string' | 'number' | 'boolean' }
  | { readonly type: 'enum'; readonly options: readonly string[] }
  /** An array, an object or anything else: not a value one field can hold. */
  | { readonly type: 'other' };

/**
 * What `key` of a flow's data holds, read from a zod object data schema (under `optional`,
 * `nullable`, `default` and the like); undefined when the schema cannot tell (not zod, or no
 * such key).
 */
export function dataFieldKind(flow: Pick<Flow, 'data'>, key: string): DataFieldKind | undefined {
  const field = zodShape(flow.data)?.[key];
  if (field === undefined) return undefined;
  for (const d of zodDefs(field)) {
    if (ZOD_WRAPPERS.has(d.type ?? '')) continue;
    switch (d.type) {
      case 'string':
      case 'number':
      case 'boolean':
        return { type: d.type };
      case 'enum':
        return { type: 'enum', options: Object.values(d.entries ?? {}).map(String) };
      case 'literal':
        return { type: 'enum', options: (d.values ?? []).map(String) };
      default:
        return { type: 'other' };
    }
  }
  return undefined;
}

/** Turns a step's `say` and choices into message bodies: the choices ride on the last one. */
function buildReplies(
  said: Replies | undefined,
  choices: readonly Choice[],
  listButton: string,
): OutboundBody[] {
  const list: Reply[] =
    said === undefined ? [] : Array.isArray(said) ? [...(said as Reply[])] : [said as Reply];
  const bodies: OutboundBody[] = list.map((r) => (typeof r === 'string' ? { type: 'text', text: r } : r));
  if (choices.length === 0) return bodies;
  const last = bodies.pop();
  if (last === undefined || last.type === 'text') {
    bodies.push(choiceBody(last?.text ?? listButton, choices, listButton));
    return bodies;
  }
  if (last.type === 'buttons' || last.type === 'list') {
    // The author shaped the interactive message (text, header, footer): it carries the step's
    // choices, as buttons or a list by their number. A list's header may only be text.
    const body = choiceBody(
      last.text,
      choices,
      last.type === 'list' ? last.button : listButton,
      last.type === 'list' ? last.sections : undefined,
    );
    const header = last.header?.type === 'text' || body.type === 'buttons' ? last.header : undefined;
    // A list cannot carry a media header: the picture goes just before it, as its own message.
    if (header === undefined && last.header !== undefined && last.header.type !== 'text') {
      bodies.push({ ...last.header });
    }
    bodies.push({
      ...body,
      ...(header === undefined ? {} : { header }),
      ...(last.footer === undefined ? {} : { footer: last.footer }),
    });
    return bodies;
  }
  // A template with quick replies carries the choices itself: its buttons send their ids back
  // (the only way to offer them more than 24 hours after the user last wrote, when WhatsApp
  // refuses any message but a template).
  if (last.type === 'template' && quickReplies(last).length > 0) {
    // Where templates cannot be sent (WASender sends `text`), the choices are numbered under it,
    // as buttons are there, so the number the user types picks one (outside test QA35-F7).
    const numbered = choices.map((c, i) => `${i + 1}. ${c.title}`).join('\n');
    bodies.push(last.text === undefined ? last : { ...last, text: `${last.text}\n\n${numbered}` });
    return bodies;
  }
  // Media, a location or a template without quick replies: sent as it is, and the choices follow
  // under the list button's label (an interactive message needs a text).
  bodies.push(last, choiceBody(listButton, choices, listButton));
  return bodies;
}

/** The payloads of a template's quick-reply buttons, in button order. */
export function quickReplies(body: OutboundBody): string[] {
  if (body.type !== 'template') return [];
  return (body.components ?? [])
    .filter((c) => c.type === 'button' && c.subType === 'quick_reply')
    .sort((a, b) => (a.type === 'button' && b.type === 'button' ? a.index - b.index : 0))
    .flatMap((c) => c.parameters.flatMap((p) => (p.type === 'payload' ? [p.payload] : [])));
}

/**
 * A template prompt's quick replies, when it has some, must be the step's choices (a tap sends
 * the payload back as the choice's id): what is wrong, or null.
 */
function quickRepliesProblem(
  body: OutboundBody | undefined,
  choices: readonly { id: string }[],
): string | null {
  if (body === undefined || choices.length === 0) return null;
  const quick = quickReplies(body);
  if (quick.length === 0) return null;
  if (sameIds(quick, choices)) return null;
  const ids = choices.map((c) => c.id);
  return `its template's quick replies (${quick.join(', ')}) are not its choices (${ids.join(', ')}); a tap sends its payload back as the choice's id: give the template the same ids`;
}

/**
 * The message that offers `choices`: up to three as buttons, more as a list, and a list whatever
 * their number when one has a description or the author's prompt is a list (`sections` given: a
 * `list()`, whose rows may have descriptions that buttons cannot show; outside test QA22-F1:
 * three specialities went out as buttons, their descriptions and the list's label dropped). The author's sections are kept as
 * they are when their rows are exactly the choices, each once (outside test QA4-M2: they were
 * flattened into one section); otherwise the choices go in one section.
 */
function choiceBody(
  text: string,
  choices: readonly Choice[],
  listButton: string,
  sections?: readonly ListSection[],
): OutboundBody {
  // A choice with a description goes in a list, whose rows show it: buttons have none (outside
  // test QA103-F13: a doctor's name given as each slot's description was dropped).
  if (choices.length <= 3 && sections === undefined && choices.every((c) => !c.description)) {
    return { type: 'buttons', text, buttons: choices.map((c) => ({ id: c.id, title: c.title })) };
  }
  if (
    sections !== undefined &&
    sameIds(
      sections.flatMap((s) => s.rows.map((r) => r.id)),
      choices,
    )
  ) {
    return { type: 'list', text, button: listButton, sections: sections.map((s) => ({ ...s })) };
  }
  return {
    type: 'list',
    text,
    button: listButton,
    // One section, without a title (WhatsApp needs one only when there are several): titled like
    // the list's button, the label showed twice, above the button and atop the rows (QA7-F9).
    sections: [{ rows: choices.map((c) => ({ ...c })) }],
  };
}

/** Whether `ids` name the choices: as many, each one of them (in any order). */
function sameIds(ids: readonly string[], choices: readonly { readonly id: string }[]): boolean {
  const want = new Set(choices.map((c) => c.id));
  return ids.length === choices.length && ids.every((id) => want.has(id));
}

/**
 * The messages a step sends on entering it (or on a retry), for the session's data. Runs the
 * author's `say`, `choices` and `listButton`, and checks every body against WhatsApp's limits.
 * @throws FlowRuntimeError naming the flow and step when a body breaks a limit.
 */
export function promptsOf(
  flow: Flow,
  step: StepDef,
  data: FlowData,
  retry?: WordsContext['retry'],
): OutboundBody[] {
  const ctx: WordsContext = { t: translator(flow, data), ...(retry ? { retry } : {}) };
  const said = typeof step.say === 'function' ? step.say(data, ctx) : step.say;
  if (step.on !== undefined && saysNothing(said)) {
    // A step that waits for the user asks something, on entry and on each retry: a `say` that
    // gives nothing (a catalog lookup that missed) left the user unanswered (outside test QA97-F3).
    throw new FlowRuntimeError(
      'BATON_ERR_FLOW_REPLY',
      flow.id,
      step.id,
      `its say returned ${Array.isArray(said) ? 'no message' : said === null ? 'null' : 'undefined'}: a step that waits for an answer must ask something`,
    );
  }
  const choices = choicesOf(step, data, ctx);
  if (step.accepts === 'choice' && choices.length === 0) {
    throw new FlowRuntimeError(
      'BATON_ERR_FLOW_REPLY',
      flow.id,
      step.id,
      'its choices came back empty: the prompt would offer nothing to tap; go to another step when there is nothing to choose',
    );
  }
  const label = step.listButton === undefined ? 'Choose' : wordsOf(step.listButton, data, ctx);
  let bodies = buildReplies(said, choices, label);
  const quick = quickRepliesProblem(bodies.at(-1), choices);
  if (quick !== null) throw new FlowRuntimeError('BATON_ERR_FLOW_REPLY', flow.id, step.id, quick);
  if (retry?.message !== undefined) {
    // The retry's own text replaces the prompt's: on the message carrying the choices, or alone.
    // A new user's first message refused by `first` (count 0) was asked nothing yet: the messages
    // before the question (a greeting, a logo) go too (outside test QA101-F6).
    const last = bodies[bodies.length - 1];
    const before = retry.count === 0 ? bodies.slice(0, -1) : [];
    bodies =
      last && (last.type === 'buttons' || last.type === 'list')
        ? [...before, { ...last, text: retry.message }]
        : [...before, { type: 'text', text: retry.message }];
  }
  for (const body of bodies) {
    const problems = replyProblems(body);
    if (problems.length > 0) {
      throw new FlowRuntimeError('BATON_ERR_FLOW_REPLY', flow.id, step.id, problems.join('; '));
    }
  }
  return bodies;
}

/** Whether a `say` function's answer is no message at all. */
function saysNothing(said: unknown): boolean {
  return said === undefined || said === null || (Array.isArray(said) && said.length === 0);
}

/** The prompt a step sends, for the session's current data (its last message: the one with the choices). */
export function promptOf(step: StepDef, data: FlowData): OutboundBody {
  const ctx: WordsContext = { t: translator({ id: '(flow)', words: step.words }, data) };
  const said = typeof step.say === 'function' ? step.say(data, ctx) : step.say;
  const choices = choicesOf(step, data, ctx);
  const label = step.listButton === undefined ? 'Choose' : wordsOf(step.listButton, data, ctx);
  const bodies = buildReplies(said, choices, label);
  return bodies[bodies.length - 1] ?? { type: 'text', text: '' };
}

/**
 * The flow's steps and the steps each may go to, as a Mermaid state diagram, without labels.
 * `flowMermaid` (src/graph) labels every edge with its input, as the admin API, the dashboard
 * and `baton flow graph` show it.
 */
export function toMermaid(flow: Flow): string {
  const lines = ['stateDiagram-v2', `  [*] --> ${flow.start}`];
  for (const step of flow.steps.values()) {
    for (const target of step.to) lines.push(`  ${step.id} --> ${target}`);
  }
  return lines.join('\n') + '\n';
}
