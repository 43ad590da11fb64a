/**
 * The effect runtime: runs one committed effect (an outbound record carrying `effect`) with its
 * flow's retry policy, and stores its result in the session's mailbox as an input. The effect id
 * is the record's, so every attempt, on any worker, before or after a crash, passes the same one.
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Backend } from '../backends/types.ts';
import { BatonError, thrownText } from '../errors.ts';
import { EffectError, type Flow } from '../flow/define.ts';
import { effectResultId } from '../flow/transition.ts';
import { logSessionId, type InboundMessage } from '../model/message.ts';
import type { OutboundRecord } from '../model/session.ts';
import { wellFormed, wellFormedDeep } from '../providers/screen.ts';
import { linkedSignal } from '../linked-signal.ts';

export interface EffectRunnerDeps {
  readonly backend: Backend;
  readonly flows: ReadonlyMap<string, Flow>;
  readonly logger: Logger;
  readonly now: () => number;
  /** Aborts when the baton is lost: the attempt in flight is cut, and left for the next holder. */
  readonly signal: AbortSignal;
  /**
   * Aborts when the worker stops: no new attempt starts and a backoff ends (the effect is left
   * for the next holder), but an attempt in flight runs to its end, within its timeout, and its
   * result is stored, so a deploy neither calls the API twice nor uses up an attempt for nothing.
   */
  readonly stopping?: AbortSignal;
  /** Counts each attempt's outcome. */
  readonly count?: (effect: string, outcome: 'ok' | 'retry' | 'failed') => void;
  /**
   * Whether an agent waits for the session's baton. Between attempts (never during one) the effect
   * then stops and leaves the session to the agent: its attempts are counted in the record, and a
   * later turn goes on with the next one, with the same effect id.
   */
  readonly wanted?: () => Promise<boolean>;
  /**
   * Whether the baton was renewed within its TTL, by this process's clock. A worker paused past
   * it (SIGSTOP, a stalled VM) wakes up before it learns that its lease is gone: no attempt starts
   * then, or it would be one more than the effect's attempts, after those a newer holder made.
   */
  readonly fresh?: () => boolean;
  /**
   * Aborts when the session has left the visit that started the effect (a reset, an agent's
   * take): no further attempt starts and a backoff ends; the attempt in flight runs to its end,
   * and an effect not yet tried is tried once (what the user asked for reaches the API once).
   * Its result is stored as usual: the session records it and does not apply it.
   */
  readonly abandoned?: AbortSignal;
  /**
   * Asks the store whether the baton is still held, before each attempt: a holder whose lease an
   * agent cleared learns it here, rather than start one more attempt beside the next holder's.
   */
  readonly confirm?: () => Promise<boolean>;
  /** Resolves when an earlier holder's attempt of this effect can no longer be in flight. */
  readonly earlierAttempt?: () => Promise<void>;
}

/** How often a backoff between attempts looks whether an agent waits. */
const WANTED_POLL_MS = 500;

export const DEFAULT_EFFECT_ATTEMPTS = 3;
export const DEFAULT_EFFECT_BACKOFF_MS = 500;
export const DEFAULT_EFFECT_TIMEOUT_MS = 5000;

/** What one attempt came to. */
type Attempt = { ok: true; value: unknown } | { ok: false; error: string; retryable: boolean };

/**
 * Runs the effect of `rec` until it succeeds, fails for good, or `signal` aborts (then nothing
 * is stored and the record stays unfinished). Attempts are counted in the record before each
 * one starts, so a worker's crash uses up the attempt it was making. `left`: it stopped
 * unfinished (the baton lost, the worker stopping between attempts, or an agent waiting).
 */
export async function runEffect(rec: OutboundRecord, deps: EffectRunnerDeps): Promise<'done' | 'left'> {
  const { signal } = deps;
  // What leaves the effect unfinished for a later holder: the baton lost, or the worker stopping.
  const leavingLink = linkedSignal([signal, deps.stopping]);
  const leaving = leavingLink.signal;
  // What ends a backoff: those, or the session leaving the visit that started the effect.
  const betweenLink = linkedSignal([signal, deps.stopping, deps.abandoned]);
  const between = betweenLink.signal;
  try {
    return await attemptAll(rec, deps, leaving, between);
  } finally {
    leavingLink.dispose();
    betweenLink.dispose();
  }
}

async function attemptAll(
  rec: OutboundRecord,
  deps: EffectRunnerDeps,
  leaving: AbortSignal,
  between: AbortSignal,
): Promise<'done' | 'left'> {
  const intent = rec.effect!;
  const { backend, logger, signal } = deps;
  const stopping = deps.stopping ?? signal;
  // A session that left the visit (a reset, an agent's take) makes no further attempt; but what
  // it started is tried once: SPEC 5b, the cancel reaches the shop once per `cancel_yes` applied,
  // and a reset before the first attempt dropped it.
  const abandoned = (made: number): boolean => deps.abandoned?.aborted === true && made > 0;
  const def = deps.flows.get(rec.flow)?.effects.get(intent.name);
  const session = logSessionId(rec);
  const allowed = def?.attempts ?? DEFAULT_EFFECT_ATTEMPTS;
  // An attempt begun and never ended (its worker killed, its baton lost during it, the store away
  // when the API answered: the record still says `sending`; a failed one says `pending`) is no
  // failure of the API's: when it was the last, it is made again (one cut short before the last
  // still counts), up to twice the effect's attempts in all, so that a worker that dies on every
  // attempt does not call the API for ever. Counted as failures, three
  // workers killed during a slow lookup that answered 200 each time told the user it had failed
  // (outside test QA17-F1: 4 lookups of 20 under SIGKILL chaos).
  const interrupted = rec.status === 'sending' && rec.attempts > 0;
  const attempts = interrupted ? Math.min(2 * allowed, Math.max(allowed, rec.attempts + 1)) : allowed;
  let outcome: Attempt = {
    ok: false,
    error: `flow "${rec.flow}" has no effect "${intent.name}"`,
    retryable: false,
  };
  let attempt = rec.attempts;
  if (def !== undefined) {
    outcome = {
      ok: false,
      error: `gave up after ${attempt} attempt${attempt === 1 ? '' : 's'}`,
      retryable: false,
    };
    while (attempt < attempts) {
      if (abandoned(attempt)) {
        outcome = abandonedAfter(outcome);
        break;
      }
      if (leaving.aborted || deps.fresh?.() === false) return 'left';
      // An agent waits for the baton: no attempt starts, in a backoff or at the start of a turn
      // (a worker that takes the session back for a message waiting must not go on either).
      if (deps.wanted && (await deps.wanted().catch(() => false)))
        return paused(logger, session, intent.name, attempt);
      if (attempt === rec.attempts && deps.earlierAttempt) await deps.earlierAttempt();
      if (deps.confirm && !(await deps.confirm())) return 'left';
      if (abandoned(attempt)) continue; // said at the top of the loop
      if (leaving.aborted) return 'left';
      attempt += 1;
      await backend.updateOutbound(rec.id, { status: 'sending', attempts: attempt });
      outcome = await attemptEffect(def, intent.input, {
        effectId: intent.id,
        data: intent.data,
        attempt,
        timeoutMs: def.timeoutMs ?? DEFAULT_EFFECT_TIMEOUT_MS,
        signal,
      });
      // The baton lost during the attempt cut it, unless the API had answered already: an answer
      // is stored below as any is (deduplicated by effect id), not asked for again.
      if (signal.aborted && !outcome.ok) return 'left';
      const last =
        outcome.ok || !outcome.retryable || attempt >= attempts || deps.abandoned?.aborted === true;
      deps.count?.(intent.name, outcome.ok ? 'ok' : last ? 'failed' : 'retry');
      if (outcome.ok || !outcome.retryable) break;
      // Ended: a later holder counts it as a failure, not as an attempt cut short (above).
      if (!last)
        await backend.updateOutbound(rec.id, {
          status: 'pending',
          attempts: attempt,
          lastError: outcome.error,
        });
      if (attempt < attempts) {
        if (abandoned(attempt)) continue; // said at the top of the loop
        if (stopping.aborted) return 'left';
        const wait = (def.backoffMs ?? DEFAULT_EFFECT_BACKOFF_MS) * 2 ** (attempt - 1);
        logger.warn(
          { session, effect: intent.name, effectId: intent.id, attempt, wait, err: outcome.error },
          'effect failed; retrying',
        );
        if (await waitUnlessWanted(wait, between, deps.wanted))
          return paused(logger, session, intent.name, attempt);
      }
    }
  }
  if (signal.aborted && !outcome.ok) return 'left';
  const result: InboundMessage = {
    id: effectResultId(intent.id),
    provider: rec.provider ?? 'cloud-api',
    channel: rec.channel,
    user: rec.user,
    timestamp: Math.floor(deps.now() / 1000),
    content: outcome.ok
      ? {
          type: 'effect_result',
          effectId: intent.id,
          name: intent.name,
          ok: true,
          value: outcome.value,
          attempts: attempt,
        }
      : {
          type: 'effect_result',
          effectId: intent.id,
          name: intent.name,
          ok: false,
          error: outcome.error,
          attempts: attempt,
        },
  };
  // Stored (deduplicated by effect id) before the record is marked done: a crash in between
  // runs the effect again with the same id, and its second result is recognised as a duplicate.
  const stored = await settle(deps, rec, () => backend.ingest({ messages: [result], statuses: [] }));
  // Not stored, a result of this effect's being there already (an attempt cut short stored it):
  // that one is what the session has, and what the record says.
  const final = stored.duplicates > 0 ? await earlierResult(deps, rec, result.id, outcome) : outcome;
  if (!final.ok) {
    logger.warn(
      { session, effect: intent.name, effectId: intent.id, attempt, err: final.error },
      'effect failed',
    );
  }
  // `sent`: its result reached the session; `failed`: its failure did (the flow's onFailure ran).
  // A failed effect read `sent` in /outbound, like one that got through (outside test QA7-F7).
  await settle(deps, rec, () =>
    backend.updateOutbound(rec.id, {
      status: final.ok ? 'sent' : 'failed',
      attempts: attempt,
      ...(final.ok ? {} : { lastError: final.error }),
    }),
  );
  return 'done';
}

/**
 * The outcome of the result stored for an effect by an attempt cut short before its record said
 * so (its worker killed just after the API answered), read from the session's newest messages;
 * `outcome` when it is not among them. The session applied that result, and left the visit: the
 * record said `failed`, "not tried again", of a lookup that had answered 200 (outside test
 * QA135-F1).
 */
async function earlierResult(
  deps: EffectRunnerDeps,
  rec: OutboundRecord,
  resultId: string,
  outcome: Attempt,
): Promise<Attempt> {
  const messages = await deps.backend.inbound(rec, EARLIER_RESULT_DEPTH).catch(() => []);
  const earlier = messages.find((m) => m.id === resultId)?.content;
  if (earlier?.type !== 'effect_result') return outcome;
  return earlier.ok
    ? { ok: true, value: earlier.value }
    : { ok: false, error: earlier.error ?? 'failed', retryable: false };
}

/** How many of the session's newest messages {@link earlierResult} looks through. */
const EARLIER_RESULT_DEPTH = 64;

/** How many times {@link settle} writes before it gives up: about a minute. */
const SETTLE_TRIES = 36;

/**
 * Writes what an attempt came to, again while the store is away (at 0.1 s, doubling to 2 s, for
 * about a minute): the API answered, and a failed write ended the turn, so the next one asked it
 * again and used up an attempt for an answer it had. With Redis killed during each call, three
 * 200s from the shop ended as a failed cancel (outside test QA17-F1).
 */
async function settle<R>(deps: EffectRunnerDeps, rec: OutboundRecord, write: () => Promise<R>): Promise<R> {
  for (let tried = 1, wait = 100; ; tried += 1, wait = Math.min(2_000, wait * 2)) {
    try {
      return await write();
    } catch (err) {
      if ((err instanceof BatonError && !err.retryable) || tried >= SETTLE_TRIES) throw err;
      if (tried === 1)
        deps.logger.warn(
          { session: logSessionId(rec), effectId: rec.effect?.id, err },
          'effect result not stored: the store is away; trying again',
        );
      await delay(wait);
    }
  }
}

/** An effect stops between attempts for an agent that waits for the baton; a later turn goes on. */
function paused(logger: Logger, session: string, effect: string, attempt: number): 'left' {
  logger.info({ session, effect, attempt }, 'effect paused: an agent takes the session');
  return 'left';
}

/** The outcome of an effect that stops, after an attempt, because the session left its visit. */
function abandonedAfter(last: Attempt): Attempt {
  // Left by a reset or a new step, or taken by an agent, who holds the session at that step still
  // (outside test QA80-F7: "left the step" read wrong there).
  const error = 'not tried again: the session left the visit that started it, or an agent took it';
  return { ok: false, error: last.ok ? error : `${last.error}; ${error}`, retryable: false };
}

/**
 * Waits `ms` (or until `signal` aborts), looking every {@link WANTED_POLL_MS} whether an agent
 * waits for the baton; true when one does (the wait is cut short).
 */
export async function waitUnlessWanted(
  ms: number,
  signal: AbortSignal,
  wanted: (() => Promise<boolean>) | undefined,
): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (wanted && (await wanted().catch(() => false))) return true;
    const left = until - Date.now();
    if (left <= 0 || signal.aborted) return false;
    await sleep(Math.min(wanted ? WANTED_POLL_MS : left, left), signal);
  }
}

/** Longest an effect's result may be, as JSON: 256 KiB of ASCII. */
export const MAX_RESULT_CHARS = 256 * 1024;

/**
 * What `run` returned, as the session's mailbox keeps it: JSON (what the result handler sees is
 * what survives that), storable everywhere (a NUL or a lone surrogate from a far API becomes
 * U+FFFD); or a failure, not retried, for a value JSON cannot hold or one over
 * {@link MAX_RESULT_CHARS}. `testFlow`'s `resolve` takes a value the same way (outside test
 * QA103-F2: a result the engine fails reached `onResult` in a test).
 */
export function storedResult(value: unknown): Attempt {
  let json: string;
  try {
    json = value === undefined ? 'null' : JSON.stringify(value);
  } catch (err) {
    // A BigInt, a circular object: the same at every attempt, so not retried (outside test
    // QA103-F10: the API was called again for each attempt).
    const why = err instanceof Error ? err.message : String(err);
    return { ok: false, error: wellFormed(`the result is not JSON: ${why}`), retryable: false };
  }
  if (json.length > MAX_RESULT_CHARS) {
    // It would be stored with the session and read with every batch after (an outside test's
    // 20 MB answer slowed every user of the process): a failure, not retried.
    return {
      ok: false,
      error: `the result is ${json.length} characters of JSON, over the ${MAX_RESULT_CHARS} a result may hold`,
      retryable: false,
    };
  }
  return { ok: true, value: wellFormedDeep(JSON.parse(json) as unknown) };
}

/**
 * One attempt of an effect, as the engine makes it (and `testFlow` with `effects: 'auto'`): cut
 * at `timeoutMs` (a retryable failure), its result checked for size and made JSON.
 */
export async function attemptEffect(
  def: NonNullable<ReturnType<Flow['effects']['get']>>,
  input: unknown,
  o: {
    effectId: string;
    data: Readonly<Record<string, unknown>>;
    attempt: number;
    timeoutMs: number;
    signal: AbortSignal;
  },
): Promise<Attempt> {
  const ac = new AbortController();
  const onAbort = (): void => ac.abort(o.signal.reason);
  o.signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<Attempt>((resolve) => {
    // Fired, it lets one poll phase read the sockets first: a process that woke from a stall
    // past the timeout must not give up on an answer already in its socket (see postJson).
    timer = setTimeout(() => {
      setImmediate(() => {
        ac.abort(new Error(`timed out after ${o.timeoutMs} ms`));
        resolve({ ok: false, error: `timed out after ${o.timeoutMs} ms`, retryable: true });
      });
    }, o.timeoutMs);
  });
  const ran = (async (): Promise<Attempt> => {
    try {
      const value = await def.run(input, {
        effectId: o.effectId,
        signal: ac.signal,
        data: o.data,
        attempt: o.attempt,
      });
      return storedResult(value);
    } catch (err) {
      const retryable = !EffectError.is(err) || err.retryable;
      return {
        ok: false,
        error: wellFormed(err instanceof Error ? err.message : thrownText(err)),
        retryable,
      };
    }
  })();
  try {
    return await Promise.race([ran, timedOut]);
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', onAbort);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
