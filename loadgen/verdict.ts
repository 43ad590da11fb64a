/**
 * The closing verdict of a load run: from what each user sent, what the sink received and what
 * Baton's admin API says (session and transition log), count the failures SPEC section 1 rules
 * out. Pure: no I/O.
 *
 * - **lost**: a message answered `200` that is in no transition record and no dead letter
 *   (guarantee 1), or a reply that was due and never came (the user was left waiting);
 * - **pending in Baton**: such messages while Baton's queue still holds at least as many
 *   (`pendingInBaton`, its admin API's `queue_depth`): stored, not yet processed, so not lost;
 *   the replies they owe are counted as waiting. The run is still not clean;
 * - **duplicated**: a message processed more than once (in two transition records; guarantee 2),
 *   or the very same reply (`biz_opaque_callback_data`) sent twice (guarantee 6);
 * - **out of order**: a user who got every reply but whose order does not say what they sent, in
 *   the order they sent it (guarantees 3 and 5);
 * - **duplicate prompts**: a step asked again under another version although the user gave no
 *   invalid input (guarantee 6: the seed's "duplicate questions");
 * - **version errors**: a log whose versions skip or fork (guarantee 4).
 *
 * With `crashes: true` (workers are killed during the run), one repeat of a reply, with the same
 * `biz_opaque_callback_data` and a second or more after the first (see {@link CRASH_RESEND_GAP_MS}),
 * is what guarantee 6 allows a crash between a send and its record:
 * it is counted apart (`crashResends`), not as a failure; a third copy still is one. So is a user
 * whose burst the outage split (`splitByOutage`): the generator's retries stored its parts
 * further apart than the buffer window, so they were two batches and the older part was
 * recorded `late`, as SPEC 1.5 says: the session does not say what the user sent, in order, and
 * Baton did what it must.
 *
 * With `bufferMs` (the target's `BATON_BUFFER_MS`) and the storage time of each of a user's
 * messages (`storedAt`, read only for users whose session is not what they sent or who miss a
 * reply), a burst Baton stored further apart than the window is `splitByIntake`, not out of
 * order, and a reply owed for an older part recorded `late` is not lost: SPEC 1.5 joins
 * messages stored within the window of a batch's first one, and a webhook that waited its turn
 * on a starved machine was stored after the window closed. A split where a later batch holds a
 * message stored within an earlier batch's window is still out of order.
 *
 * With `adminUnreachable` (the admin API stopped answering: the target died), only what the load
 * generator saw is judged (rejected webhooks, replies that never came); the transition log and
 * sessions are unknown, so nothing is called lost or out of order from them, and the run is not
 * clean.
 * @module
 */
import { isAgentMessage } from '../src/flow/agent.ts';
import { mayHaveReached } from '../src/model/session.ts';
import { STALE_NOTICE, type ExpectedEnd, type UserTrace } from './scenario.ts';
import type { CallbackData } from './sink.ts';

/** The fields of the session object (SPEC section 4) the verdict reads. */
export interface SessionEvidence {
  readonly current_step: string | null;
  readonly data: Readonly<Record<string, unknown>>;
  readonly metadata: { readonly version: number };
}

/** The fields of a transition record the verdict reads. */
export interface TransitionEvidence {
  readonly version: number;
  readonly kind: string;
  readonly message_ids: readonly string[];
  /** The step the record left the session at (absent from an older Baton's answers). */
  readonly to_step?: string | null;
  /** When the record was written (ISO 8601): the records of one batch share it. */
  readonly at?: string;
  readonly fencing_token?: number;
}

/** One reply the user received. */
export interface ReplyEvidence {
  readonly callbackData: string | undefined;
  readonly callback: CallbackData | null;
  /** When it came, ms (`performance.now()`); absent reads as 0. */
  readonly at?: number;
}

/**
 * How far apart two copies of a reply must come for `--crashes` to take the second for a crash's
 * resend (SPEC 1.6), ms: it comes from another holder, which takes the session over only once the
 * dead one's lease expired (`BATON_LOCK_TTL_MS`, 5 s by default) or its process was started again.
 */
export const CRASH_RESEND_GAP_MS = 1000;

/** Everything known about one user at the end of a run. */
export interface UserEvidence {
  readonly trace: UserTrace;
  readonly replies: readonly ReplyEvidence[];
  /** `null` when Baton has no session for the user. */
  readonly session: SessionEvidence | null;
  readonly transitions: readonly TransitionEvidence[];
  /**
   * When each of the user's messages reached Baton as its buffer window counts it (stored, less
   * how late it was read), epoch ms, by message id (if read).
   */
  readonly storedAt?: ReadonlyMap<string, number>;
  /**
   * Baton's count of the send attempts that may have reached the user (its outbound records'
   * `claims`), by callback data: read, with `crashes`, for a user who got a reply twice.
   */
  readonly claims?: ReadonlyMap<string, number>;
  /** The user's replies Baton gave up on (dead-lettered), by step: why. Read for missing replies. */
  readonly failedReplies?: ReadonlyMap<string, string>;
}

/** The verdict. `clean` is true when every failure count is zero. */
export interface Verdict {
  readonly clean: boolean;
  readonly users: number;
  /** Users who got every reply that was due. */
  readonly usersCompleted: number;
  readonly messages: {
    readonly planned: number;
    /** Distinct messages sent (duplicate deliveries not counted). */
    readonly sent: number;
    readonly acked: number;
    /** Deliveries whose final answer (after re-deliveries) was not 200. */
    readonly rejected: number;
  };
  readonly lost: number;
  readonly lostMessages: number;
  readonly lostReplies: number;
  /**
   * Due replies that never came to messages Baton never acknowledged (every delivery refused:
   * counted in `messages.rejected`), so not owed: not lost.
   */
  readonly unowedReplies: number;
  /** Acknowledged messages in no record yet that Baton still holds pending (not lost). */
  readonly pendingMessages: number;
  /** Due replies that never came to users whose messages are still pending in Baton. */
  readonly waitingReplies: number;
  /** Why the admin API could not be read (the verdict then rests on the generator alone). */
  readonly adminUnreachable: string | null;
  readonly duplicated: number;
  /** Messages found in more than one transition record (the extra records). */
  readonly reprocessed: number;
  /** Identical replies sent again (the extra sends). */
  readonly resent: number;
  /** With `crashes`: replies sent twice that guarantee 6 allows at a crash (not failures). */
  readonly crashResends: number;
  /** With `crashes`: users whose burst an outage split, its older part recorded `late` (not failures). */
  readonly splitByOutage: number;
  /**
   * With `bufferMs`: users whose burst was split because Baton stored its parts further apart
   * than the window (SPEC 1.5 allows it; not failures).
   */
  readonly splitByIntake: number;
  readonly outOfOrder: number;
  readonly duplicatePrompts: number;
  /** Replies of a scripted conversation that did not say what the script expects. */
  readonly wrongReplies: number;
  readonly versionErrors: number;
  /**
   * Replies naming a step and version the transition log does not have: sent before their state
   * was committed, or for a commit that was later lost (SPEC 1.6). A crash does not excuse them.
   */
  readonly uncommittedReplies: number;
  /**
   * Due replies that came after the user stopped waiting for them (`--timeout`): not lost, and
   * not failures, but the user did not go on (not completed).
   */
  readonly lateReplies: number;
  /**
   * Due replies that never came because Baton gave up on them: in its dead letters with the
   * reason, to be replayed by an agent. With `crashes`, those two attempts may have reached are
   * not failures (a kill between a reply's claim and its send, or two sends with no answer, may
   * leave one Baton will not risk a third time: SPEC 1.6); a reply the gateway refused is.
   */
  readonly deadLetteredReplies: number;
  /** The first of those the run allowed (`crashes`), one line each: who, the step, Baton's reason. */
  readonly givenUp: readonly string[];
  /** Informational: messages recorded `late`, stale-input notices received, dead letters. */
  readonly late: number;
  readonly staleNotices: number;
  readonly deadLettered: number;
  /** The first problems found, one line each. */
  readonly problems: readonly string[];
}

export interface JudgeOptions {
  /** Workers are killed during the run: one repeat of a reply is allowed. */
  readonly crashes?: boolean;
  /** Messages Baton still holds pending when the evidence was read (`queue_depth`). */
  readonly pendingInBaton?: number;
  /** The admin API could not be read, and why: no session or log is known. */
  readonly adminUnreachable?: string;
  /** The target's `BATON_BUFFER_MS`: with `storedAt` evidence, judges whether a split was allowed. */
  readonly bufferMs?: number;
}

/** Kinds that keep the version unchanged (SPEC section 4). */
/** Whether the user got some reply more than once (same callback data). */
export function gotAReplyTwice(u: Pick<UserEvidence, 'replies'>): boolean {
  const seen = new Set<string>();
  for (const r of u.replies) {
    if (r.callbackData === undefined) continue;
    if (seen.has(r.callbackData)) return true;
    seen.add(r.callbackData);
  }
  return false;
}

/**
 * Whether the reply for `step`, which the user stopped waiting for (`--timeout`), came after all:
 * it is then late, not lost.
 */
export function cameLate(trace: UserTrace, replies: readonly ReplyEvidence[], step: string): boolean {
  if (trace.missingFrom === undefined) return false;
  if (trace.missingNext === true) {
    // A script's: any reply after the wait began that repeats none before it (outside test
    // QA137-F2: counted lost).
    const before = new Set(replies.slice(0, trace.missingFrom).map((r) => r.callbackData));
    return replies
      .slice(trace.missingFrom)
      .some((r) => r.callbackData === undefined || !before.has(r.callbackData));
  }
  // A stale tap's notice names the message it answers, not a step to wait for (outside test
  // QA127-F2: one that came after the wait was counted lost).
  const notice = step === STALE_NOTICE;
  return replies
    .slice(trace.missingFrom)
    .some(
      (r) =>
        r.callback !== null &&
        (notice
          ? r.callback.inReplyTo !== undefined
          : r.callback.inReplyTo === undefined && r.callback.step === step),
    );
}

const VERSIONLESS = new Set(['stale_input', 'late', 'held', 'ignored']);
const MAX_PROBLEMS = 25;

/**
 * Whether a user's burst may have been split where SPEC 1.5 allows it, so that their messages'
 * storage times are worth reading (`UserEvidence.storedAt`) before judging: their session is not
 * what they sent, or a reply never came and a message was recorded `late`.
 */
export function mayBeSplit(u: UserEvidence): boolean {
  const endedOutOfOrder =
    u.trace.completed &&
    u.trace.expected !== null &&
    u.session !== null &&
    !sameOrder(u.trace.expected, u.session);
  return (
    endedOutOfOrder ||
    (u.trace.missingReplies.length > 0 && u.transitions.some((t) => t.kind === 'late')) ||
    promptedTwice(u.replies) ||
    wrongAfterBurst(u.trace)
  );
}

/**
 * Whether a script's reply did not say what it expects after the user sent a burst: a split
 * burst answers its first part on its own (outside test QA137-F2: counted a wrong reply).
 */
function wrongAfterBurst(trace: UserTrace): boolean {
  return (trace.wrongReplies ?? []).some((w) => splitMayExplain(trace, w));
}

/**
 * Whether a burst split may explain this wrong reply of a script: the user sent a burst, and the
 * wrong is Baton's reply, not a script line the load generator could not send.
 */
function splitMayExplain(trace: UserTrace, wrong: string): boolean {
  return (trace.bursts?.length ?? 0) > 0 && !/^step \d+: cannot send /.test(wrong);
}

/**
 * Whether one step was prompted under two versions (a split burst's second part may owe its
 * prompt again: QA77-F1), counted a duplicate prompt unless the split is shown allowed (outside
 * test QA83-F2: a user who also timed out had no storage times read, so it never was).
 */
function promptedTwice(replies: readonly ReplyEvidence[]): boolean {
  const versions = new Map<string, number>();
  for (const { callback: c } of replies) {
    if (c === null || c.inReplyTo !== undefined) continue;
    const seen = versions.get(c.step);
    if (seen !== undefined && seen !== c.version) return true;
    versions.set(c.step, c.version);
  }
  return false;
}

/**
 * Whether a burst the user sent was split over batches, and every split between the user's
 * batches is one SPEC 1.5 allows: no message of a later batch was stored within `bufferMs` of an
 * earlier batch's first message. Batches are told apart by their records' write time and fencing
 * token (the records of one batch share both); a split that cannot be shown allowed (a storage
 * time unknown, a batch not told apart, no burst split) is not.
 */
function splitsAllowed(
  bursts: readonly (readonly string[])[],
  transitions: readonly TransitionEvidence[],
  storedAt: ReadonlyMap<string, number>,
  bufferMs: number,
): boolean {
  const batches: string[][] = [];
  let last: string | null = null;
  for (const t of transitions) {
    if (t.message_ids.length === 0) continue;
    if (t.at === undefined) return false;
    const id = `${t.at}|${t.fencing_token ?? ''}`;
    if (id !== last) batches.push([]);
    last = id;
    batches.at(-1)!.push(...t.message_ids);
  }
  if (batches.length < 2) return false;
  const batchOf = new Map(batches.flatMap((b, i) => b.map((id) => [id, i] as const)));
  if (!bursts.some((ids) => new Set(ids.map((id) => batchOf.get(id))).size > 1)) return false;
  const times = batches.map((b) => b.map((id) => storedAt.get(id)));
  if (times.some((b) => b.some((t) => t === undefined))) return false;
  for (let i = 0; i < times.length - 1; i++) {
    const closes = Math.min(...(times[i] as number[])) + bufferMs;
    for (const later of times.slice(i + 1)) if ((later as number[]).some((t) => t <= closes)) return false;
  }
  return true;
}

function sameOrder(expected: ExpectedEnd, session: SessionEvidence): boolean {
  if (session.current_step !== expected.step) return false;
  const want = expected.data;
  if (want === undefined) return true;
  const keys = Object.keys(expected.partial === true ? want : session.data);
  if (keys.length !== Object.keys(want).length) return false;
  return keys.every((k) => JSON.stringify(session.data[k]) === JSON.stringify(want[k]));
}

/**
 * Judges a run.
 *
 * @example
 * ```ts
 * const verdict = judge(evidence, new Set(deadLetterRefs));
 * if (!verdict.clean) console.error(verdict.problems.join('\n'));
 * ```
 */
export function judge(
  users: readonly UserEvidence[],
  deadLetterRefs: ReadonlySet<string>,
  options: JudgeOptions = {},
): Verdict {
  const problems: string[] = [];
  const problem = (line: string): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(line);
  };
  let planned = 0;
  let sent = 0;
  let acked = 0;
  let rejected = 0;
  let lostReplies = 0;
  let unowedReplies = 0;
  let reprocessed = 0;
  let resent = 0;
  let crashResends = 0;
  let outOfOrder = 0;
  let splitByOutage = 0;
  let splitByIntake = 0;
  let duplicatePrompts = 0;
  let wrongReplies = 0;
  let versionErrors = 0;
  let uncommittedReplies = 0;
  let lateReplies = 0;
  let deadLetteredReplies = 0;
  let refusedReplies = 0;
  const givenUp: string[] = [];
  let late = 0;
  let staleNotices = 0;
  let deadLettered = 0;
  let usersCompleted = 0;
  let waitingReplies = 0;
  const unreachable = options.adminUnreachable ?? null;
  if (unreachable !== null) {
    problem(
      `the admin API is unreachable (${unreachable}): acknowledged messages, sessions and transition logs were not checked`,
    );
  }

  // Acknowledged, then in no record or dead letter. Baton may still hold them: as many as its
  // queue does are pending, not lost (which ones cannot be told when it holds fewer).
  const seenBy = users.map((u) => seenIds(u.transitions));
  const unaccounted = users.map((u, i) =>
    unreachable !== null
      ? []
      : [...u.trace.ackedIds].filter((id) => !deadLetterRefs.has(id) && !seenBy[i]!.has(id)),
  );
  const missing = unaccounted.reduce((n, ids) => n + ids.length, 0);
  const pendingMessages = Math.min(missing, options.pendingInBaton ?? 0);
  const allPending = missing > 0 && pendingMessages === missing;
  if (missing > pendingMessages && pendingMessages > 0) {
    problem(
      `${missing} acknowledged messages are in no transition record; Baton still holds ${pendingMessages} pending, so ${missing - pendingMessages} are lost`,
    );
  }

  for (const [i, u] of users.entries()) {
    const { trace } = u;
    const who = trace.waId;
    planned += trace.plannedMessages;
    sent += trace.sentIds.length;
    acked += trace.ackedIds.size;
    rejected += trace.rejected.length;
    for (const r of trace.rejected.slice(0, 2)) {
      problem(`${who}: ${r.id} answered ${r.status || 'nothing'} ${r.detail}`.trim());
    }
    if (trace.completed) usersCompleted += 1;

    // Lost: acknowledged, then nowhere to be found (unless Baton still holds it).
    const seen = seenBy[i]!;
    for (const t of u.transitions) if (t.kind === 'late') late += t.message_ids.length;
    for (const id of trace.ackedIds) if (deadLetterRefs.has(id)) deadLettered += 1;
    const waiting = allPending && unaccounted[i]!.length > 0;
    // An outage split this user's burst (its older part recorded late, SPEC 1.5), which may leave
    // the reply the user waits for owed by nobody: the first message stored after the outage
    // began the conversation, and the rest of the burst came too late to move it on (outside test
    // QA66-F6: "Sato" started a session, "hi" and "Farah75" were late, the product prompt never
    // came). Counted apart with --crashes, as an outage-split order is.
    const outageSplit = options.crashes === true && u.transitions.some((t) => t.kind === 'late');
    // Whether the user's bursts were split only where SPEC 1.5 allows (read once, if asked).
    let split: boolean | undefined;
    const splitOk = (): boolean =>
      (split ??=
        options.bufferMs !== undefined &&
        u.storedAt !== undefined &&
        splitsAllowed(trace.bursts ?? [], u.transitions, u.storedAt, options.bufferMs));
    // The same for a split SPEC 1.5 allows: a later part holding an older message records it
    // `late`, and the reply its step owed never comes (outside test QA78-F3: `--shuffle
    // --buffer-ms 5` counted those as lost).
    const lateSplit = (): boolean => u.transitions.some((t) => t.kind === 'late') && splitOk();
    let splitHere = false;
    let splitAllowed = false;
    for (const id of unaccounted[i]!) {
      problem(
        allPending
          ? `${who}: ${id} was acknowledged and is still pending in Baton (in no transition record yet)`
          : `${who}: ${id} was acknowledged but is in no transition record or dead letter`,
      );
    }
    for (const step of trace.missingReplies) {
      // It came, after the user stopped waiting (`--timeout`): slow, not lost (outside test
      // QA83-F2: 9,058 replies reported lost that Baton had all sent, late on a starved machine).
      if (cameLate(trace, u.replies, step)) {
        lateReplies += 1;
        continue;
      }
      // None of the messages it answers was acknowledged (every delivery refused: the only
      // ingress restarting, say): Baton owes no reply, and the refusals are counted as such
      // (outside test QA130-F5: counted lost too, blaming Baton for what it never took).
      if (trace.missingFor?.every((id) => !trace.ackedIds.has(id)) === true) {
        unowedReplies += 1;
        problem(`${who}: no reply for step "${step}": none of the messages it answers was acknowledged`);
        continue;
      }
      const gaveUp = u.failedReplies?.get(step);
      if (gaveUp !== undefined) {
        deadLetteredReplies += 1;
        const said = `${who}: the reply for step "${step}" was dead-lettered: ${gaveUp.slice(0, 200)}`;
        // Excused at a crash only when two attempts may have reached the user: a gateway that
        // refused it (a 400 for an invalid parameter) is a failure whatever happened (outside
        // test QA127-F1).
        if (options.crashes === true && mayHaveReached('failed', gaveUp)) {
          if (givenUp.length < MAX_PROBLEMS) givenUp.push(said);
        } else {
          refusedReplies += 1;
          problem(said);
        }
        continue;
      }
      if (!waiting && outageSplit) {
        splitHere = true;
        continue;
      }
      if (!waiting && lateSplit()) {
        splitAllowed = true;
        continue;
      }
      if (waiting) waitingReplies += 1;
      else lostReplies += 1;
      problem(
        waiting
          ? `${who}: the reply for step "${step}" has not come: the user's messages are still pending in Baton`
          : `${who}: the reply for step "${step}" never came`,
      );
    }

    // Duplicated: processed twice, or the same reply sent twice.
    for (const [id, n] of seen) {
      if (n > 1) {
        reprocessed += n - 1;
        problem(`${who}: ${id} is in ${n} transition records`);
      }
    }
    // Each reply's arrival times, by its callback data (unique per reply: a second is a repeat).
    const byCallback = new Map<string, number[]>();
    const versionsByStep = new Map<string, Set<number>>();
    for (const r of u.replies) {
      const copies = r.callbackData === undefined ? undefined : byCallback.get(r.callbackData);
      if (copies !== undefined) copies.push(r.at ?? 0);
      else if (r.callbackData !== undefined) byCallback.set(r.callbackData, [r.at ?? 0]);
      if (r.callback === null) continue;
      if (r.callback.inReplyTo !== undefined) {
        // A notice resent is one notice (outside test QA84-F6).
        if (copies === undefined) staleNotices += 1;
        continue;
      }
      let versions = versionsByStep.get(r.callback.step);
      if (versions === undefined) versionsByStep.set(r.callback.step, (versions = new Set()));
      versions.add(r.callback.version);
    }
    // Committed first (SPEC 1.6): every reply names a step and version the log has. A reply sent
    // before its commit repeats like one a crash resent, which `--crashes` excuses; this tells
    // them apart (outside test QA79-F3).
    if (unreachable === null && u.transitions.length > 0) {
      for (const r of u.replies) {
        const c = r.callback;
        if (c === null) continue;
        // An agent's message after a reset names the flow's start, the session at no step
        // (outside test QA133-F2: each counted as an uncommitted send): its version is judged.
        const atNoStep = (t: TransitionEvidence): boolean =>
          t.to_step === null && isAgentMessage(r.callbackData ?? '');
        const committed = u.transitions.some(
          (t) => t.version === c.version && (t.to_step === undefined || t.to_step === c.step || atNoStep(t)),
        );
        if (committed) continue;
        uncommittedReplies += 1;
        problem(
          `${who}: reply ${r.callbackData ?? ''} names step "${c.step}" at version ${c.version}, which the transition log does not have (sent before its state was committed, or for a commit that was lost)`,
        );
      }
    }
    let excused = 0;
    for (const [cb, times] of byCallback) {
      const n = times.length;
      if (n <= 1) continue;
      // A crash's repeat comes from the holder that took the session over, once the dead one's
      // lease expired or its process was started again: never within a second of the first copy
      // (outside test QA84-F1: a relay doubling every 40th reply at once passed as 21 crash resends).
      const apart = Math.max(...times) - Math.min(...times) >= CRASH_RESEND_GAP_MS;
      // And Baton must have made the second attempt: it claims each one that may reach the user
      // before making it. A copy it did not make (a gateway or relay that delivered one reply
      // twice, a second or more apart) is no crash's (outside test QA88-F1: 113 of 124 such
      // copies passed as crash resends).
      const claimed = u.claims === undefined || (u.claims.get(cb) ?? 0) >= 2;
      const allowed = options.crashes === true && apart && claimed ? 1 : 0;
      excused += allowed;
      if (n - 1 > allowed) {
        resent += n - 1 - allowed;
        problem(
          options.crashes === true && apart && !claimed
            ? `${who}: reply ${cb} came ${n} times, and Baton made ${u.claims?.get(cb) ?? 0} send attempt(s) of it`
            : `${who}: reply ${cb} was sent ${n} times`,
        );
      }
    }
    crashResends += excused;
    for (const w of trace.wrongReplies ?? []) {
      // A burst split where SPEC 1.5 allows (or by an outage, with --crashes) answers its first
      // part on its own: the script's next reply is not what it expects (outside test QA137-F2).
      if (splitMayExplain(trace, w)) {
        if (outageSplit) {
          splitHere = true;
          continue;
        }
        if (splitOk()) {
          splitAllowed = true;
          continue;
        }
      }
      wrongReplies += 1;
      problem(`${who}: ${w}`);
    }
    // Duplicate prompts: a script says how many replies come in all; the order scenario visits
    // each step once and never gives invalid input, but for the second part of a burst split
    // where SPEC 1.5 allows it: applied at the step the first part led to, it is a retry there,
    // and its prompt is owed (SPEC 1.6: once per retry, each retry a new version; outside test
    // QA77-F1).
    if (trace.expectedReplies !== undefined) {
      const extra = u.replies.length - excused - trace.expectedReplies;
      if (trace.completed && extra > 0) {
        duplicatePrompts += extra;
        problem(`${who}: ${extra} reply(ies) more than the script expects (${trace.expectedReplies})`);
      }
    } else {
      for (const [step, versions] of versionsByStep) {
        const retries = (v: number): boolean =>
          u.transitions.some((t) => t.version === v && t.kind === 'retry');
        const owed = versions.size > 1 && splitOk() ? [...versions].filter(retries).length : 0;
        if (versions.size - owed > 1) {
          duplicatePrompts += versions.size - owed - 1;
          problem(
            `${who}: step "${step}" was prompted ${versions.size} times (versions ${[...versions].join(', ')})`,
          );
        }
      }
    }

    // Out of order: every reply came, yet the order is not what the user sent.
    if (unreachable === null && trace.completed && trace.expected !== null) {
      if (u.session === null) {
        outOfOrder += 1;
        problem(`${who}: every reply came but Baton has no session`);
      } else if (!sameOrder(trace.expected, u.session)) {
        if (outageSplit) splitHere = true;
        else if (splitOk()) splitAllowed = true;
        else {
          outOfOrder += 1;
          problem(
            `${who}: ended at ${u.session.current_step ?? 'null'} with ${JSON.stringify(u.session.data)}, ` +
              `expected ${trace.expected.step}${trace.expected.data ? ` with ${JSON.stringify(trace.expected.data)}` : ''}`,
          );
        }
      }
    }

    if (splitHere) splitByOutage += 1;
    else if (splitAllowed) splitByIntake += 1;

    // Versions: +1 per state change, unchanged by versionless records, no gaps or forks.
    let v = 0;
    let broken = false;
    for (const t of u.transitions) {
      const want = VERSIONLESS.has(t.kind) ? v : v + 1;
      if (t.version !== want) broken = true;
      v = Math.max(v, t.version);
    }
    if (u.session !== null && u.transitions.length > 0 && u.session.metadata.version !== v) broken = true;
    if (broken && unreachable === null) {
      versionErrors += 1;
      problem(
        `${who}: versions in the log are ${u.transitions.map((t) => `${t.version}:${t.kind}`).join(' ')}` +
          (u.session === null ? '' : ` (session at ${u.session.metadata.version})`),
      );
    }
  }

  const lostMessages = missing - pendingMessages;
  const lost = lostMessages + lostReplies;
  const duplicated = reprocessed + resent;
  const failures =
    lost +
    duplicated +
    outOfOrder +
    duplicatePrompts +
    wrongReplies +
    versionErrors +
    uncommittedReplies +
    rejected +
    refusedReplies;
  return {
    clean: failures + pendingMessages + waitingReplies === 0 && unreachable === null,
    users: users.length,
    usersCompleted,
    messages: { planned, sent, acked, rejected },
    lost,
    lostMessages,
    lostReplies,
    unowedReplies,
    pendingMessages,
    waitingReplies,
    adminUnreachable: unreachable,
    duplicated,
    reprocessed,
    resent,
    crashResends,
    splitByOutage,
    splitByIntake,
    outOfOrder,
    duplicatePrompts,
    wrongReplies,
    versionErrors,
    uncommittedReplies,
    lateReplies,
    deadLetteredReplies,
    givenUp,
    late,
    staleNotices,
    deadLettered,
    problems,
  };
}

/**
 * How many transition records name each message. An expiry record names the message that
 * restarts the session: it does not count.
 */
function seenIds(transitions: readonly TransitionEvidence[]): Map<string, number> {
  const seen = new Map<string, number>();
  for (const t of transitions) {
    if (t.kind === 'expired') continue;
    for (const id of t.message_ids) seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  return seen;
}
