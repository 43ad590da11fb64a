/**
 * The outbox: sends a session's committed replies after the commit that made them, in order, one
 * at a time, each claimed in the store before its attempt (fenced, so a holder that lost the baton
 * sends nothing) and recorded before the next one goes. Retries on throttling and 5xx with a
 * growing backoff, gives back claims no attempt used, waits for an earlier holder's send to be
 * recorded rather than repeat it, and dead-letters a reply refused for good. SPEC 1.6: a crash
 * between a send and its record may repeat that one send, never more.
 *
 * It runs inside a turn of the engine (it holds the session's baton while it sends) and knows
 * the engine only through {@link OutboxOptions}: how a backoff is waited out is the engine's
 * (it frees the worker slot and runs the session's effects meanwhile).
 * @module
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import {
  heldBy,
  type Backend,
  type ClearedLease,
  type LeaseGrant,
  type OutboundUpdate,
} from '../backends/types.ts';
import { FencedError, SendError } from '../errors.ts';
import { linkedSignal } from '../linked-signal.ts';
import type { Metrics } from '../metrics.ts';
import {
  logSessionId,
  sessionId,
  sharedChatKind,
  type ProviderName,
  type SessionKey,
} from '../model/message.ts';
import { MAY_HAVE_REACHED, type OutboundRecord } from '../model/session.ts';
import { DEFAULT_SEND_TIMEOUT_MS } from '../providers/http.ts';
import type { SendOptions } from '../providers/types.ts';
import { sleep } from '../sleep.ts';
import { RECORD_GRACE_MS, UnrecordedSends } from './unrecorded-sends.ts';

/** Sends one outbound record through a gateway. Throws `SendError` on refusal. */
export interface OutboundSender {
  /**
   * `signal` abandons the send (a stopping worker): it then fails as retryable, outcome unknown.
   * `mayStart` is asked right before the request is written (see `SendOptions.mayStart`).
   */
  send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }>;
}

/**
 * How long a reply refused for a retryable reason (throttling, 5xx, the gateway unreachable) is
 * tried again before it is dead-lettered: WhatsApp's customer service window, after which a
 * free-form reply cannot be delivered anyway.
 */
const SEND_FOR_MS = 24 * 60 * 60 * 1000;
/** Time for a holder whose send has just ended to record it. */
const SEND_RECORD_MARGIN_MS = 1000;
/** How often a holder looks whether an earlier holder's send was recorded. */
const EARLIER_SEND_POLL_MS = 100;
/** How often that wait asks whether the earlier holder is still alive (its heartbeat). */
const HOLDER_CHECK_MS = 1000;
/** How long after its last renewal a holder that lost its baton still gives its claims back, ms. */
const STALE_GIVE_BACK_MS = 30_000;

/** What the outbox needs of a turn that holds a session's baton (the engine's run extends it). */
export interface OutboxTurn {
  readonly lease: LeaseGrant;
  readonly held: {
    /** Aborts when the baton is lost. */
    readonly signal: AbortSignal;
    /** Aborts when sending must stop (the baton lost, or the engine stopping). */
    readonly sending: AbortSignal;
    /** Whether the lease still covers a write, by the local clock. */
    readonly fresh: () => boolean;
    /** Milliseconds since the lease was last renewed. */
    readonly renewedAgo: () => number;
  };
  /**
   * Ids of the unsent replies this holder holds a claim to send that no attempt used yet: the ones
   * its own commits wrote (see {@link claimed}), and those it claimed since.
   */
  readonly claims: Set<string>;
  /** The session's unfinished effects, as the last look at its outbox found them. */
  effects: OutboundRecord[];
  /** A reply sent and not yet recorded as sent (see {@link Outbox.flush}). */
  sent?: OutboundUpdate;
  /** When a backoff cut short would have ended: the next send waits until then. */
  resumeSendAt?: number;
  /** When an agent last cleared this session's lease and from whom, once looked up (see Outbox.cleared). */
  cleared?: ClearedLease | null;
}

/** How one flush of a session's outbox goes (see {@link Outbox.flush}). */
export interface FlushOptions {
  /** Leave the last send's record in `run.sent` for the end of the turn. Default false. */
  readonly leaveLast?: boolean;
  /** Attempts per reply in this flush. Default: the outbox's `maxSendAttempts` (8). */
  readonly maxAttempts?: number;
  /** A retry that would wait longer than this is left to a later turn instead. Default: none. */
  readonly maxWaitMs?: number;
  /**
   * Whether the session's effects run beside a send backoff (see Engine.startEffects). Default
   * true; false for a session left for a worker that serves its flow (their code is that flow's).
   */
  readonly effects?: boolean;
}

/** What the outbox works with: the store, the gateways, and what it borrows of the engine. */
export interface OutboxOptions<T extends OutboxTurn> {
  readonly backend: Backend;
  readonly senders: Partial<Record<ProviderName, OutboundSender>>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  /** This process's worker id: the holder its claims name. */
  readonly workerId: string;
  /** Attempts per reply in one turn (8). */
  readonly maxSendAttempts?: number;
  /** First backoff after a refused send, doubling (250 ms). */
  readonly sendBackoffMs?: number;
  /** The senders' timeout: how long an earlier holder's send may still run (30 s). */
  readonly sendTimeoutMs?: number;
  /** How many of this process's turns of the session are in progress (the asking one included). */
  readonly turnsOf: (key: SessionKey) => number;
  /**
   * Waits out a send backoff of `ms` holding the baton; true when the wait was cut short (an agent
   * wants the session, the user wrote again, an effect's result came): the flush then stops.
   */
  readonly waitBackoff: (run: T, ms: number, signal: AbortSignal) => Promise<boolean>;
}

/** A session's replies, sent after their commit (see the module's comment). */
export class Outbox<T extends OutboxTurn> {
  private readonly now: () => number;
  /** Aborted once a stopping engine's grace for the sends in flight is over. */
  private readonly sendStop = new AbortController();
  /** Replies this process sent whose record the store refused: recorded in the background. */
  private readonly unrecorded: UnrecordedSends;

  constructor(private readonly h: OutboxOptions<T>) {
    this.now = h.now;
    this.unrecorded = new UnrecordedSends({
      record: (u) => h.backend.updateOutbound(u.id, u.patch),
      logger: h.logger,
      now: h.now,
    });
    // Every send in flight listens to this one signal (Node warned of a leak past 10 sends:
    // outside tests QA42-F8, QA44).
    setMaxListeners(0, this.sendStop.signal);
  }

  /** Abandons the sends in flight (their outcome unknown): a stopping engine's grace is over. */
  abandonSends(): void {
    this.sendStop.abort();
  }

  /** Records what the store refused so far, trying for up to `ms` (see UnrecordedSends.stop). */
  stop(ms?: number): Promise<void> {
    return this.unrecorded.stop(ms);
  }

  /**
   * Sends the session's unsent replies in order. Throttling and 5xx are retried with backoff
   * (honouring Retry-After) while the lease is held; a permanent refusal dead-letters that
   * reply and the next one is sent.
   *
   * SPEC 1.6, a reply reaches the user at most twice: every attempt that may reach the user is
   * covered by a claim counted in the store before it is made (`OutboundRecord.claims`), and a
   * claim that would be the third dead-letters the reply instead. The commit's claim covers the
   * committing holder's attempts at its first reply (`run.claims`: no write on the hot path); its
   * later replies are claimed each with the record of the one before (one round trip), and the
   * first is claimed in its turn too when older replies go before it (`claimInTurn`); a reply
   * this holder did not commit (left by an earlier holder, a throttled turn, or replayed) is
   * claimed before its first attempt; a send that got no answer used its claim, so a retry
   * claims anew; one refused (429, 5xx, 4xx) did not deliver, so its retry keeps the claim. A reply left unsent on purpose
   * gives back the claims no attempt used (see `leave`). A crash between a send and its record
   * leaves the claim counted: the next holder's is the second, and the last.
   *
   * Each send is recorded before the next one goes. With `leaveLast`, the last one's record is
   * left in `run.sent` for the caller, who records it with the end of the turn (one round trip
   * fewer); otherwise it is recorded here.
   */
  async flush(run: T, o: FlushOptions = {}): Promise<void> {
    const {
      leaveLast = false,
      maxAttempts = this.h.maxSendAttempts ?? 8,
      maxWaitMs = Number.POSITIVE_INFINITY,
      effects = true,
    } = o;
    const { backend, metrics, logger } = this.h;
    const signal = run.held.sending;
    await this.recordSent(run);
    const unsent = await backend.unsent(run.lease);
    // Effects are not sent: the session runs them (see Engine.awaitEffects) once its replies are out, or
    // beside a reply's backoff (see Engine.startEffects).
    run.effects = effects ? unsent.filter((r) => r.effect !== undefined) : [];
    await this.claimInTurn(run, unsent);
    // A backoff cut short to apply what the user wrote (or an effect's result) is waited out
    // before the gateway is asked again: a throttled number is not sent to before its
    // Retry-After (outside test QA14-F2). So is one that an earlier holder recorded with the
    // refusal (`notBefore`): its worker killed while it waited, the next holder sent at once
    // (outside test QA19-F1).
    const first = unsent.find((r) => r.effect === undefined);
    const recorded = first?.notBefore !== undefined ? Math.ceil(first.notBefore - this.now()) : 0;
    const rest = Math.max(this.resumeIn(run) ?? 0, recorded);
    run.resumeSendAt = undefined;
    // An agent's request waits out no more than `maxWaitMs` of it: longer, the replies stay
    // unsent and a worker takes them up (it waited out a failing gateway's whole backoff, up to
    // 37 s for a handback: outside test QA53-F1).
    if (
      rest > 0 &&
      first !== undefined &&
      (rest > maxWaitMs || (await this.h.waitBackoff(run, rest, signal)))
    ) {
      await this.leave(run);
      return;
    }
    sending: for (const rec of unsent) {
      if (rec.effect !== undefined) continue;
      // A shared chat's session answers nothing: a reply stored for one (an earlier Baton let an
      // agent hand a group's session back to the bot) is failed, never sent to every member of the
      // group (outside test QA132-F4).
      if (sharedChatKind(rec.user) !== undefined) {
        await this.failOutbound(
          run.lease,
          rec,
          rec.attempts,
          new SendError(`not sent: ${rec.user} is a shared chat, where Baton answers nothing`, {
            retryable: false,
            httpStatus: 0,
          }),
        );
        continue;
      }
      // Sent by this process, its record refused by the store until now: recorded, not sent again.
      if (this.unrecorded.has(rec.id) && (await this.unrecorded.settle(rec.id))) continue;
      // A later reply of a commit carries no claim (see `claimFirst` in records.ts): its claim goes with the
      // record of the reply before it, in the same round trip, and is used by the first attempt.
      let early =
        !run.claims.has(rec.id) && rec.claims === 0 && !signal.aborted
          ? backend.claimOutbound(run.lease, [rec.id], 1)
          : undefined;
      // (Awaited below, unless the record fails first: then nothing is attempted.)
      early?.catch(() => undefined);
      // The store refusing the record of the one before stops here: later replies must not
      // overtake it.
      await this.recordSent(run);
      if (!run.claims.has(rec.id) && (rec.claims ?? 1) > 0 && (await this.recordedByEarlierHolder(run, rec)))
        continue;
      // The record's claim count as this holder knows it: 1 with its own commit's claim.
      let count = run.claims.has(rec.id) ? 1 : 0;
      // `attempt` counts every attempt at this reply (recorded: refused ones too), which the
      // backoff is about; `inTurn` this turn's, which the limit is about.
      for (let attempt = rec.attempts + 1, inTurn = 1; ; attempt += 1, inTurn += 1) {
        // A stopping process whose grace for sends is over starts none: one it "abandoned" before
        // it began used a claim, and the next holder dead-lettered a reply tried once (outside
        // test QA136-F4).
        if (signal.aborted || this.sendStop.signal.aborted) {
          // A claim made for this attempt goes back with the others (nothing was tried).
          if (early !== undefined) {
            const [made] = await early.catch(() => [null]);
            if (made !== null && made !== undefined) run.claims.add(rec.id);
          }
          await this.leave(run);
          break sending;
        }
        // A reply another holder claimed and left is held back before this holder claims it too,
        // while the state that made it is not in the durable store (the check may wait for a copy
        // there): a holder frozen between its claim and the claim's give-back leaves a claim no
        // attempt used, and two such holders in a row made a reply nobody had sent read as sent
        // twice, dead-lettered (outside test QA93-F2: a Redis pause, then a SIGSTOP in that wait).
        const heldBack =
          !run.claims.has(rec.id) &&
          early === undefined &&
          (rec.claims ?? 0) > 0 &&
          !(await this.sendable(run));
        if (!run.claims.has(rec.id) && !heldBack) {
          // Claimed in the store before the attempt (fenced: a holder that lost the baton stops).
          const [claims] = await (early ?? backend.claimOutbound(run.lease, [rec.id], 1));
          early = undefined;
          if (claims === null || claims === undefined) break; // sent or failed meanwhile: next one
          if (claims > 2) {
            // Two attempts may have reached the user already (a crash after one, or a holder's
            // unanswered ones): this holder makes none.
            metrics.outbound.inc({ outcome: 'failed' });
            logger.error(
              { session: logSessionId(rec), outbound: rec.seq, attempt, claims },
              'send may have reached the user twice; dead-lettered',
            );
            await this.failOutbound(
              run.lease,
              rec,
              attempt,
              new SendError(
                `no outcome recorded for two earlier attempts (no answer, or their holder stopped or the store lost the record before it was written); ${MAY_HAVE_REACHED}`,
                { retryable: false, httpStatus: 0 },
              ),
            );
            break;
          }
          count = claims;
          run.claims.add(rec.id);
        }
        // The last moment before the send leaves: a process paused since its commit (SIGSTOP, a
        // stalled VM) must not wake up and send a reply its lease no longer covers, after the
        // replies a newer holder has sent meanwhile.
        if (!run.held.fresh() || this.sendStop.signal.aborted) {
          await this.leave(run);
          break sending;
        }
        let providerMessageId: string;
        try {
          // The state that made it must outlive a restart of the fast store first (QA33-F1).
          if (heldBack || !(await this.sendable(run)))
            throw new SendError(
              'held back: the state change that made it is not in PostgreSQL yet (PostgreSQL is away, and Redis keeps nothing across a restart)',
              { retryable: true, httpStatus: 0 },
            );
          // Asked again when the request is about to be written: finding or opening a connection
          // may take seconds, and a lease lapsed meanwhile (outside test QA57-F1).
          ({ providerMessageId } = await this.sendOne(rec, () => run.held.fresh()));
        } catch (err) {
          const e =
            err instanceof SendError ? err : new SendError(String(err), { retryable: true, httpStatus: 0 });
          // Not sent, and the lease is gone: the claim goes back with the others, for the next holder.
          if (!e.unknownOutcome && !run.held.fresh()) {
            logger.info(
              { session: logSessionId(rec), outbound: rec.seq, err: e.message },
              'send held back: the lease lapsed before it left; the next holder sends it',
            );
            await this.leave(run);
            break sending;
          }
          // No answer: it may have reached the user, so its claim is used. Its second such (a
          // claim count of 2) is the last: a third claim would be refused.
          if (e.unknownOutcome) run.claims.delete(rec.id);
          // Abandoned by a stopping worker (its grace for sends in flight over): not a refusal,
          // and not retried here; the next holder sends it again, the one repeat a claim allows
          // (it said "send refused; retrying": outside test QA89-F2).
          if (e.unknownOutcome && this.sendStop.signal.aborted) {
            logger.warn(
              { session: logSessionId(rec), outbound: rec.seq, attempt },
              'send abandoned: this process is stopping and the gateway had not answered; it may have reached the user, and the next holder sends it again',
            );
            await this.noteRefused(rec, attempt, e, 0);
            await this.leave(run);
            break sending;
          }
          const ambiguous = e.unknownOutcome === true && count >= 2;
          // The backoff grows with every attempt the reply has had, not with this turn's alone: a
          // session that comes back in a later turn, or goes on after a backoff cut short for what
          // the user wrote, does not start again from the shortest (outside test QA15: released
          // sessions came back every 250 ms; and a user writing every 1.5 s during an outage
          // brought the gateway 24 tries in 12 s instead of 7: test/e2e/gateway-down-overflow).
          const backoff = this.sendBackoff(attempt);
          const wait = e.retryAfterMs !== undefined ? Math.min(60_000, e.retryAfterMs) : backoff;
          if (
            e.retryable &&
            !ambiguous &&
            (inTurn >= maxAttempts || wait > maxWaitMs) &&
            this.now() - rec.createdAt < SEND_FOR_MS
          ) {
            // Throttled (or the gateway down) for longer than this turn's attempts: the reply stays
            // unsent, and so do the ones after it (order); the release brings the session back
            // shortly and a later turn tries again, until the reply is a day old.
            metrics.outbound.inc({ outcome: 'retry' });
            logger.warn(
              {
                session: logSessionId(rec),
                outbound: rec.seq,
                attempt,
                code: e.providerCode,
                status: e.httpStatus,
              },
              'send still refused; trying again later',
            );
            await this.noteRefused(rec, attempt, e, wait);
            await this.leave(run);
            break sending;
          }
          if (e.retryable && !ambiguous && inTurn < maxAttempts) {
            metrics.outbound.inc({ outcome: 'retry' });
            logger.warn(
              {
                session: logSessionId(rec),
                outbound: rec.seq,
                attempt,
                wait,
                code: e.providerCode,
                status: e.httpStatus,
                // Why: a throttle, a 5xx, or no connection at all (status 0: DNS, refused).
                err: e.message,
              },
              'send refused; retrying',
            );
            await this.noteRefused(rec, attempt, e, wait);
            // Refused, so not delivered: the claim goes back before the wait (a crash while
            // waiting out a throttled gateway's Retry-After must not count as a send) and is
            // taken again before the next attempt. Only on this slow path: two writes per retry.
            if (!e.unknownOutcome && run.claims.has(rec.id)) await this.giveBack(run, [rec.id]);
            // A session that cannot wait in place comes back in a later turn (see Engine.waitBackoff).
            if (await this.h.waitBackoff(run, wait, signal)) {
              await this.leave(run);
              break sending;
            }
            continue;
          }
          metrics.outbound.inc({ outcome: 'failed' });
          logger.error(
            {
              session: logSessionId(rec),
              outbound: rec.seq,
              attempt,
              code: e.providerCode,
              status: e.httpStatus,
            },
            'send failed; dead-lettered',
          );
          run.claims.delete(rec.id);
          await this.failOutbound(
            run.lease,
            rec,
            attempt,
            ambiguous
              ? new SendError(`${e.message}; ${MAY_HAVE_REACHED}`, {
                  retryable: false,
                  httpStatus: e.httpStatus,
                })
              : e,
          );
          break;
        }
        metrics.outbound.inc({ outcome: 'sent' });
        // The send happened: never send it again because recording it failed. If the store
        // refuses the record, the next holder of the baton may repeat this one send, as SPEC 1.6
        // allows, and no other.
        run.claims.delete(rec.id);
        run.sent = { id: rec.id, patch: { status: 'sent', attempts: attempt, providerMessageId } };
        break;
      }
    }
    if (!leaveLast) await this.recordSent(run);
  }

  /** Whether the state change behind the session's replies may be sent from (see Backend.sendable). */
  private async sendable(run: T): Promise<boolean> {
    return this.h.backend.sendable === undefined || this.h.backend.sendable(run.lease);
  }

  /**
   * Records the status of the reply sent last, if the turn has not yet (see flush). Should
   * the store refuse it, it is kept and recorded in the background (and not sent again by this
   * process meanwhile), and the error goes on: the turn stops, later replies wait.
   */
  async recordSent(run: T): Promise<void> {
    const sent = run.sent;
    if (sent === undefined) return;
    run.sent = undefined;
    try {
      await this.h.backend.updateOutbound(sent.id, sent.patch);
    } catch (err) {
      this.unrecorded.keep(sent, err);
      throw err;
    }
  }

  /** How long the rest of a backoff cut short has to run (see Engine.waitBackoff), if any, ms. */
  resumeIn(run: T): number | undefined {
    const rest = (run.resumeSendAt ?? 0) - this.now();
    return rest > 0 ? Math.ceil(rest) : undefined;
  }

  /**
   * The backoff before the next send after the `n`th refused attempt, ms: doubling, at most 30 s,
   * and up to a quarter more at random, so that the sessions a gateway's outage refused at the
   * same moment do not all come back to it at the same moments.
   */
  private sendBackoff(n: number): number {
    const base = Math.min(30_000, (this.h.sendBackoffMs ?? 250) * 2 ** Math.min(n - 1, 16));
    return Math.round(base * (1 + Math.random() / 4));
  }

  /**
   * The commit claimed its first reply for an attempt right after it. When replies left unsent
   * before the commit (by an earlier holder, or a throttled turn) go first, that attempt may wait
   * for seconds behind their sends (a slow gateway), and a crash meanwhile would leave a claim no
   * attempt used: the claim goes back, and the reply is claimed in its turn, as the commit's later
   * replies are. One round trip, only when older replies are unsent.
   */
  private async claimInTurn(run: T, unsent: readonly OutboundRecord[]): Promise<void> {
    const replies = unsent.filter((r) => r.effect === undefined);
    if (replies.length === 0 || run.claims.has(replies[0]!.id)) return;
    const mine = replies.filter((r) => run.claims.has(r.id));
    if (mine.length === 0) return;
    await this.giveBack(
      run,
      mine.map((r) => r.id),
    );
    for (const r of mine) r.claims = Math.max(0, (r.claims ?? 1) - 1);
  }

  /**
   * An agent cleared an earlier holder's lease (`DELETE .../lock`) while that holder may still be
   * sending `rec`: its claim is counted and no answer is recorded. If the holder is alive, rather
   * than send the reply a second time now, this holder waits for that send to be recorded, at
   * most as long as a send may take from the clear. True when it was recorded (sent, or failed)
   * meanwhile: nothing to send. Only after a clear, and only while the earlier holder's process
   * is alive (see `holderGone`): a crashed holder's reply is sent at once (SPEC 1.6 allows that
   * one repeat).
   */
  private async recordedByEarlierHolder(run: T, rec: OutboundRecord): Promise<boolean> {
    const cleared = await this.cleared(run);
    if (cleared === null) return this.recordedByLiveClaimer(run, rec);
    const until = cleared.at + (this.h.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS) + SEND_RECORD_MARGIN_MS;
    // Claim given back: the earlier holder is not sending it.
    const now = await this.watchRecord(
      run,
      rec,
      until,
      (o) => (o.claims ?? 1) === 0,
      run.held.sending,
      this.holderGone(cleared, run.lease, rec.claimedBy),
    );
    return now === undefined;
  }

  /**
   * Waits until the replies another holder may still be sending (claimed, no answer recorded:
   * its lease cleared, or run out, mid-send) are recorded, as a send of them would before
   * repeating one (see {@link recordedByEarlierHolder}), up to the first that is not: a holder
   * sends a session's replies one at a time, in order. An agent's reset cancels what is still
   * unsent only after them: it cancelled the reply on its way, and the new conversation's first
   * prompt reached the user before it (outside test QA133-F3).
   */
  async earlierSendsRecorded(run: T): Promise<void> {
    for (const rec of await this.h.backend.unsent(run.lease)) {
      if (rec.effect !== undefined || run.claims.has(rec.id) || (rec.claims ?? 1) === 0) continue;
      if (!(await this.recordedByEarlierHolder(run, rec))) return;
    }
  }

  /**
   * `rec` was claimed by a holder in another process whose lease ran out (no clear) and no answer
   * is recorded. If that process is alive, the send may have gone out and the store refused its
   * record for a moment (Redis away, a connection cut): it keeps recording it (UnrecordedSends), so
   * this holder waits up to {@link RECORD_GRACE_MS} for the record before sending the reply again.
   * True when it was recorded meanwhile. A claimer that is gone (its heartbeat lapsed) or that gave
   * its claim back is not waited for; one frozen for longer than the grace (SIGSTOP) looks crashed,
   * and its reply is sent again, the one repeat SPEC 1.6 allows.
   */
  private async recordedByLiveClaimer(run: T, rec: OutboundRecord): Promise<boolean> {
    const h = rec.claimedBy;
    if (h === undefined || heldBy(h, this.h.workerId)) return false;
    // The same liveness check a clear's wait uses: a claimer gone (or going) is not waited for.
    const now = await this.watchRecord(
      run,
      rec,
      this.now() + RECORD_GRACE_MS,
      (o) => (o.claims ?? 1) === 0,
      run.held.sending,
      this.holderGone({ at: 0, holder: null }, run.lease, h),
    );
    return now === undefined;
  }

  /**
   * An agent cleared an earlier holder's lease while that holder may be making an attempt of
   * effect `rec` (its record says `sending`): it learns of the clear only at its next renewal, up
   * to a third of the TTL later, and its attempt runs until then. Rather than make a second
   * attempt at the same time, with the same idempotency key, this holder waits until the earlier
   * one could no longer be in it (the attempt's timeout after the clear), or its record says it
   * ended (sent: the result is in). Only after a clear: a crashed holder's attempt is over.
   * `timeoutMs` is the effect's attempt timeout.
   */
  async earlierAttempt(run: T, rec: OutboundRecord, timeoutMs: number): Promise<void> {
    if (rec.status !== 'sending') return;
    const cleared = await this.cleared(run);
    if (cleared === null) return;
    const until = cleared.at + timeoutMs + SEND_RECORD_MARGIN_MS;
    await this.watchRecord(
      run,
      rec,
      until,
      (o) => o.status !== 'sending',
      run.held.signal,
      this.holderGone(cleared, run.lease),
    );
  }

  /** When an agent last cleared this session's lease (null: not lately), looked up once a turn. */
  private async cleared(run: T): Promise<ClearedLease | null> {
    // `??=` would ask again after a null answer, for every record.
    if (run.cleared === undefined)
      run.cleared = await this.h.backend.leaseCleared(run.lease).catch(() => null);
    return run.cleared;
  }

  /**
   * Whether the holder a clear took the lease from has stopped (its heartbeat lapsed): a clear is
   * how an agent frees a session whose worker died, and waiting out a send's whole timeout for a
   * dead holder held the user's replies for half a minute per clear (an outside test). Asked at
   * most once every {@link HOLDER_CHECK_MS}; a holder not known is taken as alive.
   */
  private holderGone(cleared: ClearedLease, key: SessionKey, claimedBy?: string): () => Promise<boolean> {
    // The holder that claimed the record alone may be sending it; the one the clear took the
    // lease from stands in when the store does not say. A lock-clear storm left marks naming a
    // live worker that never claimed a reply a killed one had, and the reply waited 30 s.
    const h = claimedBy ?? cleared.holder;
    if (h !== null && heldBy(h, this.h.workerId)) {
      // Claimed by this very process (or, not known, taken from it by a clear of one of its own
      // turns, lately, while it is alive): its send of the record can be in flight only while
      // another of its turns of the session runs. A lock-clear storm made a live worker wait out
      // the whole send timeout (31 s) for a reply a killed worker had claimed (an outside soak).
      return async () => this.h.turnsOf(key) <= 1;
    }
    let next = 0;
    return async () => {
      if (h === null || this.now() < next) return false;
      next = this.now() + HOLDER_CHECK_MS;
      return !(await this.h.backend.holderAlive(h).catch(() => true));
    };
  }

  /**
   * Looks at `rec` in the session's outbox every {@link EARLIER_SEND_POLL_MS} until it is gone
   * (undefined: recorded as done), `over` says so, `until` passes or `signal` aborts; the record
   * as last seen.
   */
  private async watchRecord(
    run: T,
    rec: OutboundRecord,
    until: number,
    over: (now: OutboundRecord) => boolean,
    signal: AbortSignal,
    holderGone: () => Promise<boolean>,
  ): Promise<OutboundRecord | undefined> {
    for (;;) {
      const now = (await this.h.backend.unsent(run.lease)).find((o) => o.id === rec.id);
      // Nor past a stopping process's grace: an ingress's stop waited out a worker's hung send
      // (31 s) for an agent's message or reset (outside tests QA136-F3, F4).
      const stopping = this.sendStop.signal.aborted;
      if (now === undefined || over(now) || this.now() >= until || signal.aborted || stopping) return now;
      if (await holderGone()) return now;
      await sleep(Math.min(EARLIER_SEND_POLL_MS, until - this.now()), signal);
    }
  }

  /**
   * Replies are left unsent on purpose (throttled past this turn's attempts, an agent waiting, the
   * engine stopping): the claims this holder holds and no attempt used are given back, so that the
   * next holder's claim is its first and throttling never ends as a false "may have reached the
   * user twice". Best effort: a claim not given back (the lease lost, the store down, a crash) is
   * only counted once too often.
   */
  leave(run: T): Promise<void> {
    return this.giveBack(run, [...run.claims]);
  }

  /**
   * Gives back this holder's claims to `ids` (no attempt of its own may have reached the user).
   * A claim not given back stays counted: at worst one too many (conservative), never one too few.
   */
  private async giveBack(run: T, ids: readonly string[]): Promise<void> {
    for (const id of ids) run.claims.delete(id);
    if (ids.length === 0) return;
    // A lost baton gives its unused claims back too (the store takes a give-back from any
    // holder): a starved holder's claim left counted made the next holder's the third, and two
    // starved holders in a row dead-lettered a reply nobody had sent (outside test QA20-F1). Not
    // after a long pause (SIGSTOP, a stalled VM): by then an agent may have replayed the reply,
    // its count started afresh, and this claim is no longer in it.
    if (run.held.signal.aborted && run.held.renewedAgo() > STALE_GIVE_BACK_MS) return;
    await this.h.backend
      .claimOutbound(run.lease, ids, -1)
      .catch((err: unknown) =>
        this.h.logger.warn({ err, session: logSessionId(run.lease) }, 'could not give back send claims'),
      );
  }

  /**
   * A refused attempt, on the record: support sees a reply Graph keeps throttling as tried, with
   * Graph's error, not as one never tried. On the slow path only; a failed write is logged.
   */
  private async noteRefused(
    rec: OutboundRecord,
    attempt: number,
    e: SendError,
    waitMs: number,
  ): Promise<void> {
    const notBefore = this.now() + waitMs;
    await this.h.backend
      .updateOutbound(rec.id, { status: 'pending', attempts: attempt, lastError: e.message, notBefore })
      .catch((err: unknown) =>
        this.h.logger.warn({ err, session: logSessionId(rec) }, 'could not record a refused send'),
      );
  }

  /**
   * A reply refused for good: its dead letter is committed under the baton (fenced, atomic with
   * nothing else, durable before the record is marked failed), then the record is marked failed.
   * If the store refuses either write, the record stays unsent and the next holder tries it again:
   * a failure is never lost, at worst one more attempt is made.
   */
  private async failOutbound(
    lease: LeaseGrant,
    rec: OutboundRecord,
    attempt: number,
    e: SendError,
  ): Promise<void> {
    const { backend } = this.h;
    const snapshot = await backend.load(lease);
    if (snapshot === null) throw new FencedError(sessionId(lease), lease.fence);
    const now = this.now();
    await backend.commit(lease, {
      expectedVersion: snapshot.version,
      snapshot,
      records: [],
      outbound: [],
      consumed: [],
      deadLetters: [
        {
          // Unique per failure: a replayed reply refused again (at the same attempt, attempts
          // start over) is a new letter, not one the store already has.
          id: `out:${rec.id}:${attempt}:${now.toString(36)}`,
          kind: 'outbound',
          channel: rec.channel,
          user: rec.user,
          ref: rec.id,
          reason: `${e.code}: ${e.message}`,
          payload: rec,
          createdAt: now,
        },
      ],
    });
    await backend.updateOutbound(rec.id, { status: 'failed', attempts: attempt, lastError: e.message });
  }

  /**
   * Sends `rec` through its provider's sender. `mayStart` is asked at the last moment before the
   * request is written (see `SendOptions.mayStart`).
   */
  private sendOne(rec: OutboundRecord, mayStart?: () => boolean): Promise<{ providerMessageId: string }> {
    const provider = rec.provider ?? 'cloud-api';
    const sender = this.h.senders[provider];
    if (!sender) {
      return Promise.reject(
        new SendError(`no sender for provider ${provider}`, { retryable: false, httpStatus: 0 }),
      );
    }
    const stopping = linkedSignal([this.sendStop.signal]);
    return sender
      .send(rec, { signal: stopping.signal, ...(mayStart !== undefined ? { mayStart } : {}) })
      .finally(() => stopping.dispose());
  }
}
