/**
 * The engine: claims due sessions, holds each one's baton (a fenced lease, renewed while the
 * batch runs), runs the batch through its flow, commits state + records + replies atomically,
 * then sends the replies in order. It knows no HTTP and no storage technology: only `Backend`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Backend, ClearedLease, LeaseGrant, OutboundUpdate } from '../backends/types.ts';
import { BatonError, FencedError, FlowRuntimeError, SendError, VersionConflictError } from '../errors.ts';
import { errorNotice, type Flow, type FlowData } from '../flow/define.ts';
import type { FlowRouter } from '../flow/router.ts';
import {
  callbackNumbering,
  freshSnapshot,
  isEffectResult,
  isResetKeyword,
  notServedBy,
  orderBatch,
  transition,
  waiting,
  type Effect,
  type EffectStart,
  type ResolvedMessage,
  type TransitionResult,
} from '../flow/transition.ts';
import type { Metrics } from '../metrics.ts';
import type { SendOptions } from '../providers/types.ts';
import type { IntakeGate } from './intake-gate.ts';
import { LeaseLostError, LeaseManager } from './lease-manager.ts';
import { linkedSignal } from './linked-signal.ts';
import { LoopLag } from './loop-lag.ts';
import { RECORD_GRACE_MS, UnrecordedSends } from './unrecorded-sends.ts';
import {
  isExpiryEvent,
  logSessionId,
  sessionId,
  trustedTimestamp,
  type ProviderName,
  type SessionKey,
  type StoredMessage,
} from '../model/message.ts';
import {
  checkSnapshotFormat,
  type DeadLetter,
  type OutboundRecord,
  type SessionSnapshot,
  type TransitionRecord,
} from '../model/session.ts';
import { changeRecord } from '../flow/agent.ts';
import { LogLimiter } from '../log-limit.ts';
import * as agentOps from './agent.ts';
import { DEFAULT_EFFECT_TIMEOUT_MS, runEffect, waitUnlessWanted } from './effects.ts';

/** Sends one outbound record through a gateway. Throws `SendError` on refusal. */
export interface OutboundSender {
  /**
   * `signal` abandons the send (a stopping worker): it then fails as retryable, outcome unknown.
   * `mayStart` is asked right before the request is written (see `SendOptions.mayStart`).
   */
  send(msg: OutboundRecord, options?: SendOptions): Promise<{ providerMessageId: string }>;
}

export interface EngineOptions {
  readonly backend: Backend;
  /** Flows by id; new sessions use `defaultFlow`, unless `router` picks another. */
  readonly flows: ReadonlyMap<string, Flow>;
  readonly defaultFlow: string;
  /** Picks the flow of a new session from its first message. */
  readonly router?: FlowRouter;
  readonly senders: Partial<Record<ProviderName, OutboundSender>>;
  readonly bufferMs: number;
  readonly lockTtlMs: number;
  readonly sessionTtlSec: number;
  readonly maxRetries: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => number;
  /** Worker id recorded in transition records. */
  readonly workerId?: string;
  /**
   * Webhooks received and not stored yet (this process's, or any ingress process's when the
   * backend is shared): batches wait for those of their window.
   */
  readonly intake?: IntakeGate;
  /** Send attempts per reply before it is dead-lettered (retryable failures only). */
  readonly maxSendAttempts?: number;
  /** First backoff between send attempts, milliseconds (doubles each time, 30 s cap). */
  readonly sendBackoffMs?: number;
  /**
   * The longest one send may take (the sender's timeout), ms; default 30 s. After an agent clears
   * a lease, the next holder waits this long from the clear for the earlier holder's send.
   */
  readonly sendTimeoutMs?: number;
  /**
   * How long a stopping engine keeps trying to record replies it sent whose record the store
   * refused (default 10 s): once it gives up, the next holder may send them again.
   */
  readonly recordOnStopMs?: number;
  /**
   * How long a stopping engine lets the sends in flight finish before it abandons them (default
   * 5 s): an abandoned reply stays unsent and the next holder sends it, so it may reach the user
   * twice, as after a crash. A gateway that hangs kept a worker's SIGTERM waiting for the 30 s
   * send timeout, past Docker's 10 s before SIGKILL (outside test QA37-F8).
   */
  readonly stopSendGraceMs?: number;
  /** BATON_DEDUPE_TTL: messages older than this at storage are recorded `late`. */
  readonly dedupeTtlSec?: number;
  /**
   * How late this process's event loop runs lately, ms (default: measured, see loop-lag.ts); a
   * batch's window stretches by it, up to `bufferMs` more. For tests.
   */
  readonly loopLagMs?: () => number;
  /**
   * Distributed mode: how long this process leaves a session it cannot serve (written by a newer
   * version of its flow, or of a flow it does not serve) for another worker before it hands the
   * session to an agent as it stands (default 30 s). For tests.
   */
  readonly unservedWaitMs?: number;
}

/**
 * A worker beats as often as it renews a lease (a third of the lock TTL, at least this often) and
 * is not counted once not heard from for the lock TTL and a second: a holder that finds a reply
 * claimed by a crashed worker then stops waiting for its record at about the time that worker's
 * lease expires. With 15 s, every session a killed worker held waited 3 s more (an outside test).
 */
const HEARTBEAT_MIN_EVERY_MS = 250;

/** Longest a batch waits for webhooks of its window still being stored. */
const INTAKE_WAIT_MS = 1000;

/** Most messages one batch takes from a mailbox: as many as Meta sends in one webhook (1,000 updates). */
const MAX_BATCH = 1000;

/**
 * Most messages read to find an effect's result stored behind a full batch of messages that
 * wait for it (see `resultFirst`).
 */
const DEEP_READ = 100_000;

/** How long a stopping engine lets sends in flight finish by default, ms (see `stopSendGraceMs`). */
const STOP_SEND_GRACE_MS = 5000;

/** Times flow code is run on a batch before the batch is dead-lettered (retryable failures). */
const BATCH_ATTEMPTS = 3;
/** First wait between those attempts (x4 each time). */
const BATCH_BACKOFF_MS = 100;
/**
 * How long a reply refused for a retryable reason (throttling, 5xx, the gateway unreachable) is
 * tried again before it is dead-lettered: WhatsApp's customer service window, after which a
 * free-form reply cannot be delivered anyway.
 */
const SEND_FOR_MS = 24 * 60 * 60 * 1000;
/** A send's timeout when the engine is not told its sender's (`sendTimeoutMs`). */
const DEFAULT_SEND_TIMEOUT_MS = 30_000;
/** Time for a holder whose send has just ended to record it. */
const SEND_RECORD_MARGIN_MS = 1000;
/** How often a holder looks whether an earlier holder's send was recorded. */
const EARLIER_SEND_POLL_MS = 100;
/** How often that wait asks whether the earlier holder is still alive (its heartbeat). */
const HOLDER_CHECK_MS = 1000;
/**
 * How long a session a turn yielded to an agent is left alone (an agent's change asks for the
 * baton every 50 ms, and its own release makes the session due again at once).
 */
const YIELD_TO_AGENT_MS = 1000;
/** Why a reply that may have reached the user twice is dead-lettered instead of sent again. */
/** How long after its last renewal a holder that lost its baton still gives its claims back, ms. */
const STALE_GIVE_BACK_MS = 30_000;
const AMBIGUOUS = 'no answer twice, so not sent again (the user may have it already): replay it if not';
/** The longest backoff an agent's request waits out before it leaves the send to a worker. */
const AGENT_SEND_WAIT_MS = 1000;
/**
 * Sessions waiting out a send backoff free their worker slot (see Engine.park), up to this many
 * per slot: past that a session does not wait in place but leaves the reply unsent and its baton
 * free until the backoff is over (see Engine.waitBackoff), rather than piling up leases.
 */
const PARKED_PER_SLOT = 32;

/**
 * Any error thrown while flow code ran, as a `FlowRuntimeError` naming flow and step. Errors
 * the flow core raised on purpose (a handler that threw, an undeclared transition) are final;
 * anything else (a bug, a thrown non-Error) may be passing, so it is retryable.
 */
function asFlowFailure(err: unknown, flow: string, step: string | null): FlowRuntimeError {
  if (err instanceof FlowRuntimeError) return err;
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : `threw ${String(err)}`;
  return new FlowRuntimeError('BATON_ERR_FLOW_HANDLER', flow, step, detail, err, true);
}

/**
 * Times flow code may run longer than the lease on one batch, here, before the batch is
 * dead-lettered unrun: its commit is refused each time (the lease ran out while it ran), and
 * without a limit the batch was taken again forever, each run blocking the process (an outside
 * test: 28 runs in 35 s, other users' webhooks answered after 5-7 s).
 */
const OVERRUNS = 2;
/** Most batches whose overruns are remembered at once (oldest forgotten first). */
const OVERRUNS_HELD = 1000;

/**
 * How long a distributed worker leaves a session it cannot serve for another worker (see
 * `leaveUnserved`), by default, and how soon the session is due again each time it is left: during
 * a rolling deploy, some worker of the newer version takes it within a few of these rounds.
 */
const UNSERVED_WAIT_MS = 30_000;
const UNSERVED_RETRY_MS = 200;
/** Most sessions whose leaving is remembered at once (oldest forgotten first). */
const UNSERVED_HELD = 10_000;

/** A batch, for counting its overruns: its session and first message. */
function overrunId(key: SessionKey, batch: readonly StoredMessage[]): string {
  return `${sessionId(key)}\u0000${batch[0]?.id ?? ''}`;
}

/** Times a session whose turn failed is tried again here (after 1, 2, 4, 8 lease TTLs). */
const TURN_RETRIES = 4;
/** Most sessions waiting to be tried again at once (beyond: the reaper finds them). */
const TURN_RETRIES_HELD = 10_000;

export class Engine {
  readonly workerId: string;

  /** The ids of the flows served, the one new sessions start in first. */
  get flowIds(): string[] {
    return [this.o.defaultFlow, ...[...this.o.flows.keys()].filter((id) => id !== this.o.defaultFlow)];
  }
  private readonly now: () => number;
  private readonly abort = new AbortController();
  /** Aborted once a stopping engine's grace for the sends in flight is over. */
  private readonly sendStop = new AbortController();
  private loops: Promise<void>[] = [];
  /** Sessions whose baton is held while an effect runs: they freed their worker loop's slot. */
  private readonly waiting = new Set<Promise<void>>();
  /** Agent changes, one at a time per session in the order asked (engine/agent.ts). */
  private readonly agentQueue = new agentOps.AgentQueue();
  /**
   * This process's turns (a worker's, or an agent change it runs) per session id, from the grant
   * until the turn's sends are recorded: while only the asking turn runs, no send of this process
   * is in flight for the session (see holderGone).
   */
  private readonly turns = new Map<string, number>();
  /**
   * Sessions whose turn failed (a store away mid-turn): tried again by this process once the
   * lease the turn may have left has run out, instead of waiting for the reaper's walk.
   */
  private readonly retries = new Map<string, NodeJS.Timeout>();
  /** Worker loops started (`start`), and how many sessions waiting out a send backoff freed theirs. */
  private slots = 0;
  private parked = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  /** Renews every baton this engine holds, on one timer. */
  readonly leases: LeaseManager;
  /** Repeated lines (a store away) at most once per 5 s per kind, with how many were skipped. */
  private readonly logLimiter: LogLimiter;
  /** Measured while the worker loops run (see loop-lag.ts). */
  private readonly loopLag = new LoopLag();
  /** Batches (session and first message) whose flow code ran longer than the lease, and how often. */
  private readonly overruns = new Map<string, { times: number; ms: number }>();
  /** Sessions this process left for a worker that serves them, and since when (see leaveUnserved). */
  private readonly unserved = new Map<string, { since: number; version: number }>();
  /** Replies this process sent whose record the store refused: recorded in the background. */
  private readonly unrecorded: UnrecordedSends;

  constructor(private readonly o: EngineOptions) {
    this.now = o.now ?? Date.now;
    this.logLimiter = new LogLimiter(5000, this.now);
    this.workerId = o.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.unrecorded = new UnrecordedSends({
      record: (u) => o.backend.updateOutbound(u.id, u.patch),
      logger: o.logger,
      now: this.now,
    });
    this.leases = new LeaseManager({
      backend: o.backend,
      ttlMs: o.lockTtlMs,
      now: this.now,
      onRenewError: (err, lease) =>
        this.logLimiter.run('renew', () =>
          o.logger.warn(
            { err, session: logSessionId(lease) },
            'lease renewal failed; retrying within the TTL',
          ),
        ),
    });
    this.leases.on('lost', (err) =>
      o.logger.warn({ code: err.code, session: err.session, fence: err.fence }, err.message),
    );
    // Every worker loop and every session in hand listens to this one signal, and every send in
    // flight to the other (Node warned of a leak past 10 sends: outside tests QA42-F8, QA44).
    setMaxListeners(0, this.abort.signal, this.sendStop.signal);
  }

  /** Starts `concurrency` worker loops, and a heartbeat that `stats().workers` counts. */
  start(concurrency = 4): void {
    const every = Math.max(HEARTBEAT_MIN_EVERY_MS, this.o.lockTtlMs / 3);
    const ttl = Math.max(this.o.lockTtlMs + 1000, 3 * every);
    const beat = (): void => {
      this.o.backend
        .heartbeat(this.workerId, ttl)
        .catch((err: unknown) => this.o.logger.warn({ err }, 'worker heartbeat failed'));
    };
    beat();
    this.heartbeat = setInterval(beat, every);
    this.heartbeat.unref();
    this.slots += concurrency;
    if (this.o.bufferMs > 0 && this.o.loopLagMs === undefined) this.loopLag.start();
    for (let i = 0; i < concurrency; i += 1) this.loops.push(this.loop());
  }

  /**
   * Stops claiming sessions, lets the batches in hand finish (and the effect attempts in flight,
   * within their timeouts: their results are stored for the next holder), and returns when they
   * have.
   */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
    const grace = setTimeout(() => this.sendStop.abort(), this.o.stopSendGraceMs ?? STOP_SEND_GRACE_MS);
    try {
      await Promise.all(this.loops);
      this.loops = [];
      await Promise.all([...this.waiting]);
    } finally {
      clearTimeout(grace);
    }
    this.leases.close();
    this.loopLag.stop();
    await this.unrecorded.stop(this.o.recordOnStopMs);
    if (this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
      await this.o.backend.removeWorker(this.workerId).catch(() => undefined);
    }
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let key: SessionKey | null;
      try {
        key = await this.o.backend.nextReady(signal);
      } catch (err) {
        this.logLimiter.run('claim', (suppressed) =>
          this.o.logger.error({ err, suppressed }, 'could not claim a ready session; retrying in 1 s'),
        );
        await sleep(1000, signal);
        continue;
      }
      if (key === null) break;
      // The slot is freed when the session is done, or when it starts waiting for an effect.
      await new Promise<void>((slot) => {
        const run: Promise<void> = this.runSession(key, slot).finally(() => {
          this.waiting.delete(run);
          slot();
        });
        this.waiting.add(run);
      });
    }
  }

  /**
   * Holds the session's baton and drains its due messages, then flushes its outbox.
   * Returns without doing anything when another worker holds the baton: that holder
   * reschedules the session when it releases it.
   */
  async runSession(key: SessionKey, detach?: () => void, attempt = 0): Promise<void> {
    const { backend, logger } = this.o;
    const waitStart = this.now();
    let lease: LeaseGrant | null;
    try {
      lease = await backend.acquireLease(key, this.workerId, this.o.lockTtlMs);
    } catch (err) {
      logger.error({ err, session: logSessionId(key) }, 'lease acquire failed');
      this.retryLater(key, attempt + 1);
      return;
    }
    if (lease === null) return;
    this.o.metrics.lockWait.observe((this.now() - waitStart) / 1000);
    this.turnBegan(lease);
    const held = this.hold(lease);
    const run: SessionRun = {
      lease,
      held,
      effects: [],
      running: new Map(),
      claims: new Set(),
      ...(detach ? { detach } : {}),
    };
    let released = false;
    /** This round follows a send backoff cut short by messages (see flushOutbox). */
    let resumed = false;
    try {
      for (;;) {
        let flushed = false;
        // Messages already read for the next batch (by `releaseOrTake`).
        let next: StoredMessage[] | undefined;
        for (let round = 0; round < 20 && !held.signal.aborted && !ending(run); round += 1) {
          if (!(await this.runBatch(run, next))) break;
          next = undefined;
          flushed = true;
          // Even when this batch drained the mailbox, look once more: the user often answers the
          // reply just sent before the baton is released, and taking it now spares a round
          // through the ready queue (measured: reply p50 20 ms instead of 220 ms at saturation).
          // A backend that can release-or-take does the look and the release in one step.
          if (
            backend.releaseOrTake &&
            round < 19 &&
            !effectsOpen(run) &&
            !ending(run) &&
            // A backoff cut short goes on in this turn (its rest is waited out before the next
            // send): a release would bring the session back sooner (outside test QA15).
            run.resumeSendAt === undefined &&
            run.messagesWaiting !== true &&
            !held.signal.aborted &&
            !this.abort.signal.aborted
          ) {
            // The last reply's status goes with it (one round trip where the backend can).
            const sent = run.sent;
            run.sent = undefined;
            // No renewal may reach the store after the release (it would be refused, and read as
            // a lost lease).
            await held.pause();
            const taken = await backend.releaseOrTake(lease, MAX_BATCH, sent).catch((err: unknown) => {
              run.sent = sent; // not known to be recorded: the end of the turn tries once more
              throw err;
            });
            if (taken === null) {
              released = true;
              break;
            }
            held.resume();
            next = taken;
          }
        }
        if (released) break;
        // A backoff cut short for messages that no batch then applied is not cut again.
        if (resumed) run.cutInVain = !flushed;
        resumed = false;
        await this.recordSent(run);
        // Replies left unsent by an earlier holder (or a replayed dead letter). Not those of a
        // session left for a worker that serves it: its effects are that worker's flow's.
        if (!flushed && !run.leftUnserved && !(await this.leftWithoutBatch(run))) await this.flushOutbox(run);
        if (run.messagesWaiting && !held.signal.aborted && !this.abort.signal.aborted) {
          // Their backoff was cut short by new messages: apply them, then send again, in order.
          run.messagesWaiting = false;
          resumed = true;
          continue;
        }
        // An effect started beside a send backoff that paused for an agent: the agent takes over.
        if (!held.sending.aborted && effectLeft(run)) run.yielded = true;
        if (!effectsOpen(run) || held.sending.aborted || ending(run)) break;
        // Effects committed and not finished (just started, or left by a holder that died): run
        // them now, holding the baton, and free the worker loop for other sessions meanwhile.
        detach?.();
        await this.awaitEffects(run);
        // A stopping worker let its effects finish their attempts; the next holder goes on.
        if (run.yielded || this.abort.signal.aborted) break;
      }
    } catch (err) {
      if (err instanceof FencedError || err instanceof VersionConflictError) {
        logger.warn(
          { session: logSessionId(key), fence: lease.fence, code: err.code },
          'batch refused; lease lost',
        );
      } else {
        if (!(err instanceof LeaseLostError)) {
          this.logLimiter.run('batch', (suppressed) =>
            logger.error({ err, session: logSessionId(key), suppressed }, 'batch failed; it will be retried'),
          );
        }
        this.retryLater(key, attempt + 1);
      }
    } finally {
      if (run.parked) this.parked -= 1;
      // Effects started beside a send backoff end their attempts holding the baton (a lost baton
      // cuts them at once), so that no later holder's attempt runs beside one of them.
      if (effectsRunning(run)) await Promise.allSettled([...run.running!.values()].map((r) => r.done));
      held.stop();
      // A reply that went out is recorded whatever happened since, lease or not (in the
      // background, should the store refuse it now).
      await this.recordSent(run).catch(() => undefined);
      // Yielded to an agent: the session is not taken up again before the agent can take it (the
      // messages still waiting made it due at once, and a worker took the baton back each time).
      if (!released)
        await backend
          .releaseLease(lease, run.yielded ? YIELD_TO_AGENT_MS : (run.releaseAfterMs ?? this.resumeIn(run)))
          .catch((err: unknown) => logger.error({ err }, 'lease release failed'));
      this.turnEnded(lease);
    }
  }

  /**
   * Tries a session whose turn failed again once the lease it may have left has run out (its
   * release may have failed too, with the store away): 1, 2, 4 then 8 lease TTLs later. Trying
   * is always safe (the baton decides who works); one that finds the session held by another
   * worker leaves it to them.
   */
  private retryLater(key: SessionKey, attempt: number): void {
    const id = sessionId(key);
    if (this.abort.signal.aborted || attempt > TURN_RETRIES || this.retries.has(id)) return;
    if (this.retries.size >= TURN_RETRIES_HELD) return;
    const timer = setTimeout(
      () => {
        this.retries.delete(id);
        if (this.abort.signal.aborted) return;
        const run: Promise<void> = this.runSession(key, undefined, attempt).finally(() =>
          this.waiting.delete(run),
        );
        this.waiting.add(run);
      },
      this.o.lockTtlMs * 2 ** (attempt - 1) + 100,
    );
    timer.unref();
    this.retries.set(id, timer);
  }

  private turnBegan(key: SessionKey): void {
    const id = sessionId(key);
    this.turns.set(id, (this.turns.get(id) ?? 0) + 1);
  }

  private turnEnded(key: SessionKey): void {
    const id = sessionId(key);
    const n = (this.turns.get(id) ?? 1) - 1;
    if (n > 0) this.turns.set(id, n);
    else this.turns.delete(id);
  }

  /** How late the event loop runs lately, ms (see loop-lag.ts). */
  private lagMs(): number {
    return this.o.loopLagMs?.() ?? this.loopLag.recentMs();
  }

  /**
   * Frees the worker slot of a session about to wait out a send backoff: a gateway that throttles
   * or fails one user's replies (or all of them, for a while) must not keep the other users' turns
   * waiting behind its backoffs. The session keeps its baton and goes on when the wait is over.
   */
  private park(run: SessionRun): boolean {
    if (run.detach === undefined || run.parked) return true;
    if (this.parked >= this.slots * PARKED_PER_SLOT) return false;
    run.parked = true;
    this.parked += 1;
    run.detach();
    return true;
  }

  /**
   * Keeps the lease through the lease manager. `signal` aborts when it is lost; `sending` aborts
   * then too, and when the engine stops, so replies stop waiting out backoffs (the next holder
   * sends what is left).
   */
  private hold(lease: LeaseGrant): SessionRun['held'] {
    const held = this.leases.hold(lease);
    const sending = new AbortController();
    const abortSending = (): void => sending.abort();
    held.signal.addEventListener('abort', abortSending, { once: true });
    const stopping = this.abort.signal;
    if (stopping.aborted) abortSending();
    else stopping.addEventListener('abort', abortSending, { once: true });
    return {
      signal: held.signal,
      sending: sending.signal,
      fresh: () => held.fresh(),
      confirm: () => held.confirm(),
      renewedAgo: () => held.renewedAgo(),
      pause: () => held.pause(),
      resume: () => held.resume(),
      stop: () => {
        held.stop();
        held.signal.removeEventListener('abort', abortSending);
        stopping.removeEventListener('abort', abortSending);
      },
    };
  }

  /**
   * A full mailbox read without an effect's result, for a session that waits for one: the
   * result may be stored behind the messages that wait for it (a user who sent more than a
   * batch while the effect ran), where no read of the oldest would ever reach it, and the
   * session would wait for good. The result (with any beside it) comes first, then as many of
   * the oldest messages as the batch has room for: they wait for it, so it is applied first
   * whatever their order. The rest follow in later batches.
   */
  private async resultFirst(lease: LeaseGrant, head: StoredMessage[]): Promise<StoredMessage[]> {
    const { backend } = this.o;
    if ((await backend.load(lease))?.awaiting === undefined) return head;
    const results = (await backend.pending(lease, DEEP_READ)).filter(isEffectResult).slice(0, MAX_BATCH);
    if (results.length === 0) return head;
    return [...results, ...head.slice(0, MAX_BATCH - results.length)];
  }

  /**
   * Runs one batch and sends its replies. Returns false when nothing was due, or when every due
   * message waits for an effect's result.
   */
  private async runBatch(run: SessionRun, read?: StoredMessage[]): Promise<boolean> {
    const { backend, metrics } = this.o;
    const { lease, held } = run;
    await this.recordSent(run);
    let pending = read ?? (await backend.pending(lease, MAX_BATCH));
    if (pending.length >= MAX_BATCH && !pending.some(isEffectResult)) {
      pending = await this.resultFirst(lease, pending);
    }
    const first = pending[0];
    if (first === undefined) return false;
    let batch: StoredMessage[];
    if (pending.some(isEffectResult)) {
      // An effect's result is due at once: the messages that waited for it come with it.
      batch = pending.map(trustedTimestamp);
    } else {
      let windowEnd = first.storedAt + this.o.bufferMs;
      if (windowEnd > this.now()) return false; // not due yet: release reschedules it
      // A busy process reads webhooks late, so their arrival times trail the user's sends by up
      // to its event loop's delay: the window stretches by that delay (at most doubled), so a
      // burst the machine's load spread out stays one batch (an outside test with CPU hogs saw
      // 500 ms bursts stored over 0.5-1.2 s).
      const stretch = this.o.bufferMs > 0 ? Math.min(this.o.bufferMs, this.lagMs()) : 0;
      // The mailbox is read again (once) when this batch waited for more of it.
      let readAgain = false;
      if (stretch > 0) {
        windowEnd += stretch;
        const wait = windowEnd - this.now();
        if (wait > 0) {
          await sleep(wait, held.signal);
          if (held.signal.aborted) return false;
          readAgain = true;
        }
      }
      // Webhooks this process received within the window may still be on their way into the
      // store (a busy machine): wait for them, so a burst is never split by a slow intake.
      const intake = this.o.intake;
      if (intake && this.o.bufferMs > 0) {
        // Timers run before I/O in an event-loop turn: let sockets that are already readable be
        // read first, so webhooks that arrived before the window closed are counted.
        await new Promise((r) => setImmediate(r));
        if (await intake.drained(windowEnd, INTAKE_WAIT_MS, held.signal, lease)) readAgain = true;
      }
      if (readAgain) pending = await backend.pending(lease, MAX_BATCH);
      batch = withStragglers(pending.map(trustedTimestamp), windowEnd);
    }
    const started = this.now();
    const prev = await backend.load(lease);
    run.loaded = prev ?? null;
    run.awaiting = awaitedBy(prev);
    if (prev?.awaiting !== undefined && !pending.some(isEffectResult)) {
      // The session waits for an effect's result, so the messages at the head of its mailbox
      // wait too, and a batch anchored at the oldest of them would never reach a reset sent
      // later: take every message whose own window has closed. SPEC 5b: a reset never waits;
      // the messages before it are applied at the effect's step, then the reset.
      const now = this.now();
      batch = pending.filter((m) => m.storedAt + this.o.bufferMs <= now).map(trustedTimestamp);
    }
    const resolved = await this.resolveContext(lease, batch);
    if (held.signal.aborted) return false;

    const base = prev ?? null;
    const flow = this.flowFor(base, batch);
    // A purge's expiry runs no flow code (flow/transition.ts `expireIdle`): no flow to wait for.
    if (!batch.every(isExpiryEvent) && this.leaveUnserved(run, base, flow)) return false;
    const provider = batch.find((m) => !isEffectResult(m))?.provider ?? first.provider;
    // Flow code runs here. A batch it fails on is tried again (in hand, with backoff) and then
    // dead-lettered with its error, so a poison message can neither spin a worker nor block
    // the session: the next messages are handled normally.
    let computed: { result: TransitionResult; snapshot: SessionSnapshot; outbound: OutboundRecord[] };
    // (Nothing built per batch unless some flow code has overrun its lease lately.)
    const overran = this.overruns.size === 0 ? undefined : this.overruns.get(overrunId(lease, batch));
    if (overran !== undefined && overran.times >= OVERRUNS) {
      this.overruns.delete(overrunId(lease, batch));
      const failure = new FlowRuntimeError(
        'BATON_ERR_FLOW_SLOW',
        flow.id,
        base?.step ?? null,
        `flow code ran for ${overran.ms} ms on this batch, so long that the lease (BATON_LOCK_TTL_MS=${this.o.lockTtlMs}) lapsed, ${overran.times} times: its commits were refused`,
      );
      claimed(run, await this.deadLetterBatch(lease, base, batch, failure, overran.times));
      await this.flushOutbox(run);
      return true;
    }
    for (let attempt = 1; ; attempt += 1) {
      try {
        if (base !== null) checkSnapshotFormat(base);
        const ranFrom = this.now();
        const cpuFrom = process.cpuUsage();
        const result = transition(flow, base, resolved, this.env(lease));
        this.noteOverrun(run, batch, this.now() - ranFrom, cpuFrom, flow.id);
        if (base?.step != null && !base.needsAgent && result.snapshot.needsAgent) {
          const unserved = notServedBy(flow, base);
          if (unserved === 'other_flow')
            this.o.logger.warn(
              { session: logSessionId(lease), flow: base.flow, step: base.step },
              `a session of flow ${base.flow}, which this process does not serve, was handed to an agent: add the flow to BATON_FLOWS (every worker's)`,
            );
          else if (unserved === 'newer_version')
            this.o.logger.warn(
              {
                session: logSessionId(lease),
                flow: flow.id,
                step: base.step,
                stored: base.flowVersion,
                version: flow.version,
              },
              `a session written by version ${base.flowVersion} of flow ${flow.id}, newer than this process's version ${flow.version}, was handed to an agent: run the newest flow (in distributed mode, on every worker)`,
            );
          else if (!flow.steps.has(base.step))
            this.o.logger.warn(
              { session: logSessionId(lease), flow: flow.id, step: base.step, version: flow.version },
              `a session at step "${base.step}", which flow ${flow.id} no longer has, was handed to an agent: give the flow "moved" to say where such sessions go on`,
            );
        }
        computed = {
          result,
          ...this.toOutbound(
            { ...result.snapshot, ...(result.snapshot.provider ? {} : { provider }) },
            result.effects,
            result.started,
          ),
        };
        break;
      } catch (err) {
        const failure =
          err instanceof BatonError && !(err instanceof FlowRuntimeError) && !err.retryable
            ? err
            : asFlowFailure(err, flow.id, base?.step ?? null);
        if (failure.retryable && attempt < BATCH_ATTEMPTS) {
          this.o.logger.warn(
            { err: failure, session: logSessionId(lease), attempt },
            'flow code failed on a batch; trying it again',
          );
          await sleep(BATCH_BACKOFF_MS * 4 ** (attempt - 1), held.signal);
          if (held.signal.aborted) return false;
          continue;
        }
        claimed(run, await this.deadLetterBatch(lease, base, batch, failure, attempt));
        await this.flushOutbox(run);
        return true;
      }
    }
    const { result, snapshot, outbound } = computed;
    if (result.consumed.length === 0 && result.records.length === 0) return false; // all wait
    // A stored session the flow's data schema no longer takes (after a deploy) restarts: a
    // `reset` no message asked for. Said, so a bad deploy shows before it restarts everyone.
    const unfit = result.records.find((r) => r.kind === 'reset' && r.message_ids.length === 0);
    if (unfit !== undefined && base !== null) {
      this.o.logger.warn(
        { session: logSessionId(lease), flow: flow.id, step: unfit.from_step, version: unfit.version },
        "session restarted: its stored data no longer fits the flow's data schema",
      );
    }
    // A lost baton writes nothing (the store would refuse the fence anyway).
    if (held.signal.aborted) throw held.signal.reason;
    await backend.commit(lease, {
      expectedVersion: prev?.version ?? 0,
      snapshot,
      records: result.records,
      outbound,
      consumed: result.consumed,
      deadLetters: [],
    });
    claimed(run, outbound);
    run.awaiting = awaitedBy(snapshot);
    // An effect running for a visit this batch left (a reset) makes no further attempt.
    abandonLeft(run);
    metrics.batch.observe((this.now() - started) / 1000);
    // The hot path's one log line, built only when debug is on.
    if (this.o.logger.isLevelEnabled('debug'))
      this.o.logger.debug(
        { session: logSessionId(lease), version: snapshot.version, messages: result.consumed.length },
        'batch committed',
      );
    for (const r of result.records) {
      metrics.messages.inc({ outcome: r.kind }, r.message_ids.length);
      if (r.kind === 'late') metrics.late.inc(r.message_ids.length);
      if (r.kind === 'stale_input') metrics.stale.inc();
    }
    // The last reply's status is left for the end of the turn to record (see runSession).
    await this.flushOutbox(run, { leaveLast: true });
    return true;
  }

  /**
   * Flow code runs synchronously: one that ran for more than half the lease while the lease ran
   * out (no renewal could run meanwhile) has made a batch whose commit will be refused. Counted
   * per batch, so that the batch is dead-lettered after {@link OVERRUNS} such runs instead of
   * being taken again forever; said at once, since it also held up everything else the process
   * does. Only when the flow code used that time, though: a process the machine starved (CPU
   * hogs, a stalled VM) ran it for long on the clock and briefly on the CPU, and its batch is
   * simply taken again (an outside test with CPU hogs saw whole batches of the reference bot
   * dead-lettered as slow flow code, QA30-F1).
   */
  private noteOverrun(
    run: SessionRun,
    batch: readonly StoredMessage[],
    ms: number,
    cpuFrom: NodeJS.CpuUsage,
    flow: string,
  ): void {
    if (ms < this.o.lockTtlMs / 2 || run.held.fresh()) return;
    const cpu = process.cpuUsage(cpuFrom);
    const cpuMs = Math.round((cpu.user + cpu.system) / 1000);
    const session = logSessionId(run.lease);
    if (cpuMs < this.o.lockTtlMs / 2) {
      this.o.logger.warn(
        { session, flow, ms: Math.round(ms), cpuMs, lockTtlMs: this.o.lockTtlMs },
        'the lease lapsed while flow code ran, the process starved of CPU (the flow code itself was quick): the batch will be taken again',
      );
      return;
    }
    const batchId = overrunId(run.lease, batch);
    const prev = this.overruns.get(batchId);
    this.overruns.delete(batchId); // (re-inserted: the map's order is by last overrun)
    if (this.overruns.size >= OVERRUNS_HELD) this.overruns.delete(this.overruns.keys().next().value!);
    const times = (prev?.times ?? 0) + 1;
    this.overruns.set(batchId, { times, ms: Math.round(ms) });
    this.o.logger.error(
      { session, flow, ms: Math.round(ms), cpuMs, lockTtlMs: this.o.lockTtlMs, times },
      'flow code ran so long that the lease lapsed: the batch cannot be committed (dead-lettered after 2 such runs)',
    );
  }

  /**
   * Whether the session has a message a batch would apply now, to cut a send backoff short (see
   * flushOutbox): its buffer window closed, the session awaiting no effect (then its messages
   * wait, but for the result). Not after a cut that applied nothing: a batch that cannot run
   * must not turn the backoff into a loop of attempts against a refusing gateway.
   */
  private async messagesDue(run: SessionRun): Promise<boolean> {
    if (run.cutInVain === true) return false;
    const { backend } = this.o;
    const [head] = await backend.pending(run.lease, 1);
    if (head === undefined) return false;
    if (isEffectResult(head)) return true;
    const due = (m: StoredMessage): boolean => m.storedAt + this.o.bufferMs <= this.now();
    if ((run.awaiting ?? null) === null) return due(head);
    // Awaiting an effect's result, the user's messages wait for it; a reset keyword never waits
    // (SPEC 5b), not for the result and not for a gateway's backoff (outside test QA14-F1).
    const pending = await backend.pending(run.lease, MAX_BATCH);
    if (pending.some(isEffectResult)) return true;
    const flow = this.flowFor(await backend.load(run.lease));
    return pending.some((m) => due(m) && isResetKeyword(flow, m));
  }

  /**
   * Waits out a send backoff of `ms` holding the baton, with the worker slot freed (see park) and
   * the session's effects running meanwhile (a lookup the user asked for does not wait for the
   * gateway; its result cuts the wait short: outside test QA13-F1). True when the wait was cut
   * short: an agent waits for the session (`run.yielded`: the baton goes to the agent, and a later
   * turn tries again), or the user wrote again, or an effect's result came (`run.messagesWaiting`:
   * the turn applies them, their replies queuing behind the unsent one, and waits out the rest,
   * `run.resumeSendAt`). A gateway refusing for minutes held every message behind 30 s of backoff
   * per turn: the queue grew and a user's fourth invalid answer escalated after two minutes
   * (outside test QA11-F1).
   */
  private async waitBackoff(run: SessionRun, ms: number, signal: AbortSignal): Promise<boolean> {
    if (!this.park(run)) {
      // As many sessions wait out backoffs as this process parks (a gateway down for a big
      // bot): this one does not wait in its worker slot, where it held every other user's turn
      // back for its backoff (outside test QA14-F3). With effects to run, it waits as a session
      // awaiting its effects does, its slot freed (see runSession), so that they run now
      // (outside test QA15: lookups starved until the gateway came back). Otherwise the reply
      // stays unsent, the baton goes, and the session comes back after `ms` (or when the user
      // writes again).
      if (run.yielded === true || !effectsOpen(run)) {
        run.releaseAfterMs = ms;
        return true;
      }
      run.detach?.();
    }
    if (!run.yielded) await this.startEffects(run);
    const until = this.now() + ms;
    let cause: 'agent' | 'messages' | undefined;
    const interrupt = async (): Promise<boolean> => {
      if (await this.wanted(run)()) cause = 'agent';
      else if (run.resultReady === true || (await this.messagesDue(run))) cause = 'messages';
      run.resultReady = false;
      return cause !== undefined;
    };
    if (!(await waitUnlessWanted(ms, signal, interrupt))) return false;
    if (cause === 'agent') run.yielded = true;
    else {
      run.messagesWaiting = true;
      run.resumeSendAt = until;
    }
    return true;
  }

  /**
   * The backoff before the next send after the `n`th refused attempt, ms: doubling, at most 30 s,
   * and up to a quarter more at random, so that the sessions a gateway's outage refused at the
   * same moment do not all come back to it at the same moments.
   */
  private sendBackoff(n: number): number {
    const base = Math.min(30_000, (this.o.sendBackoffMs ?? 250) * 2 ** Math.min(n - 1, 16));
    return Math.round(base * (1 + Math.random() / 4));
  }

  /** How long the rest of a backoff cut short has to run (see waitBackoff), if any, ms. */
  private resumeIn(run: SessionRun): number | undefined {
    const rest = (run.resumeSendAt ?? 0) - this.now();
    return rest > 0 ? Math.ceil(rest) : undefined;
  }

  /** Whether an agent waits for this session's baton (Backend.wantLease). */
  private wanted(run: SessionRun): () => Promise<boolean> {
    return () => this.o.backend.leaseWanted(run.lease);
  }

  /**
   * Records the status of the reply sent last, if the turn has not yet (see flushOutbox). Should
   * the store refuse it, it is kept and recorded in the background (and not sent again by this
   * process meanwhile), and the error goes on: the turn stops, later replies wait.
   */
  private async recordSent(run: SessionRun): Promise<void> {
    const sent = run.sent;
    if (sent === undefined) return;
    run.sent = undefined;
    try {
      await this.o.backend.updateOutbound(sent.id, sent.patch);
    } catch (err) {
      this.unrecorded.keep(sent, err);
      throw err;
    }
  }

  /**
   * Runs the session's committed effects while holding its baton. Meanwhile the mailbox is looked
   * at every few milliseconds: a reset keyword is applied at once (messages before it as retries),
   * other messages wait. Each result is stored in the mailbox (deduplicated by effect id) before
   * its record is marked done, so a crash in between re-runs the effect with the same id. Effects
   * a send backoff started already (see startEffects) are awaited, not started again.
   */
  private async awaitEffects(run: SessionRun): Promise<void> {
    const { held } = run;
    const running = (run.running ??= new Map<string, RunningEffect>());
    await this.startEffects(run);
    // How soon a reset sent during an effect is seen (the other messages wait anyway).
    const pollMs = Math.max(20, Math.min(250, this.o.bufferMs));
    while (effectsRunning(run) && !held.sending.aborted) {
      const all = Promise.all([...running.values()].map((r) => r.done));
      await Promise.race([all, sleep(pollMs, held.sending)]);
      if (!effectsRunning(run) || held.sending.aborted) break;
      while (await this.runBatch(run)) {
        if (held.signal.aborted) break;
      }
      abandonLeft(run);
      if (!held.signal.aborted && !run.yielded) await this.startEffects(run);
    }
    await Promise.all([...running.values()].map((r) => r.done));
    // An effect paused for an agent: the baton goes to the agent, and a later turn goes on.
    if (effectLeft(run) && !held.sending.aborted) run.yielded = true;
    running.clear();
    run.resultReady = false;
    // What the last batch found unfinished is looked at again by the next turn.
    run.effects = [];
  }

  /**
   * Starts the session's committed effects that are not running yet: each runs once per holding
   * (one the session started meanwhile, the user asking again after a reset, starts at once, not
   * after the effects before it have used their attempts). By awaitEffects, and by a send backoff
   * (see flushOutbox), so that a gateway refusing replies does not hold back the user's lookup:
   * its result's replies queue behind the unsent ones. Not for an agent's flush (no `running`).
   */
  private async startEffects(run: SessionRun): Promise<void> {
    const { running, held } = run;
    if (running === undefined || run.effects.length === 0) return;
    if (run.awaiting === undefined) run.awaiting = awaitedBy(await this.o.backend.load(run.lease));
    for (const rec of run.effects) {
      if (running.has(rec.id)) continue;
      const left = new AbortController();
      if (rec.effect!.id !== run.awaiting) left.abort(); // left before it ran (see abandonLeft)
      const entry: RunningEffect = {
        effectId: rec.effect!.id,
        left,
        done: runEffect(rec, {
          backend: this.o.backend,
          flows: this.o.flows,
          logger: this.o.logger,
          now: this.now,
          signal: held.signal,
          stopping: this.abort.signal,
          count: (effect, outcome) => this.o.metrics.effects.inc({ effect, outcome }),
          wanted: this.wanted(run),
          fresh: held.fresh,
          confirm: held.confirm,
          earlierAttempt: () => this.earlierAttempt(run, rec),
          abandoned: left.signal,
        })
          .then((outcome) => {
            entry.outcome = outcome;
            // Its result waits in the mailbox: a send backoff is cut short to apply it.
            if (outcome === 'done') run.resultReady = true;
            return outcome;
          })
          .finally(() => {
            entry.settled = true;
          }),
      };
      running.set(rec.id, entry);
    }
    run.effects = [];
  }

  /**
   * Whether this turn leaves the session for another worker: in distributed mode, a session at a
   * step of a flow this process does not serve, or written by a newer version of its flow, is
   * someone else's during a rolling deploy (a worker of the newer version wrote it, or serves the
   * flow). Run here, it would be handed to an agent (see transition's upgrade), and a deploy that
   * kept old and new workers side by side handed users to agents for nothing (outside test
   * QA65-F2's remainder). So it is left untouched, due again shortly, until nobody has served it
   * for `unservedWaitMs` (its version unchanged since this process first left it); after that
   * (every worker is of the older version: a rollback, or BATON_FLOWS left out the flow) it is
   * run, and handed over.
   * A session already held for an agent is not left: no flow code reads it.
   */
  private leaveUnserved(run: SessionRun, base: SessionSnapshot | null, flow: Flow): boolean {
    if (this.o.backend.kind !== 'distributed' || base === null || base.needsAgent) return false;
    const unserved = notServedBy(flow, base);
    if (unserved === null) return false;
    const foreign = unserved === 'other_flow';
    const id = sessionId(run.lease);
    const now = this.now();
    const waitMs = this.o.unservedWaitMs ?? UNSERVED_WAIT_MS;
    const left = this.unserved.get(id);
    // The wait goes on only while nobody has served the session since this process first left it
    // (its version unchanged): a worker of the newer version that did is there, and the session
    // waits anew. Counted from the first leaving alone, a user who wrote every second was handed
    // over 30 s into a rolling deploy, between the newer worker's commits (outside test QA68-F1:
    // 57 of 80 users).
    const since = left !== undefined && left.version === base.version ? left.since : now;
    if (now - since >= waitMs) {
      this.unserved.delete(id);
      return false;
    }
    this.unserved.delete(id); // (re-inserted last: the oldest are forgotten first)
    if (this.unserved.size >= UNSERVED_HELD) this.unserved.delete(this.unserved.keys().next().value!);
    this.unserved.set(id, { since, version: base.version });
    if (left === undefined)
      this.logLimiter.run('unserved', (suppressed) =>
        this.o.logger.warn(
          {
            session: logSessionId(run.lease),
            flow: base.flow,
            step: base.step,
            stored: base.flowVersion,
            ...(foreign ? {} : { version: flow.version }),
            suppressed,
          },
          foreign
            ? `a session of flow ${base.flow}, which this process does not serve, is left for a worker that serves it; if none takes it within ${waitMs / 1000} s, it is handed to an agent`
            : `a session written by version ${base.flowVersion} of flow ${flow.id} (this process serves version ${flow.version}) is left for a worker of that version; if none takes it within ${waitMs / 1000} s, it is handed to an agent`,
        ),
      );
    run.releaseAfterMs = UNSERVED_RETRY_MS;
    run.leftUnserved = true;
    return true;
  }

  /**
   * `leaveUnserved` for a turn that ran no batch (only replies or effects an earlier holder left):
   * a newer flow's effects are not run by this process's flow.
   */
  private async leftWithoutBatch(run: SessionRun): Promise<boolean> {
    if (this.o.backend.kind !== 'distributed') return false;
    // What a batch of this turn read, else the read the lease grant made (no round trip).
    const base = run.loaded !== undefined ? run.loaded : ((await this.o.backend.load(run.lease)) ?? null);
    return this.leaveUnserved(run, base, this.flowFor(base));
  }

  /**
   * The session's flow; for a new session (or one reset by an agent), the router's pick for its
   * first message, else the default flow.
   */
  private flowFor(s: SessionSnapshot | null, batch: readonly StoredMessage[] = []): Flow {
    const fallback = this.o.flows.get(this.o.defaultFlow)!;
    if ((s === null || s.step === null) && this.o.router) {
      const first = orderBatch(batch.filter((m) => !isEffectResult(m)))[0];
      const flow = first === undefined ? undefined : this.routed(first);
      if (flow) return flow;
      if (s === null) return fallback;
    }
    return this.o.flows.get(s?.flow ?? this.o.defaultFlow) ?? fallback;
  }

  /**
   * The flow that will run `m` for session `s` (null: none stored): the session's, or a new
   * session's by the router's pick for it (the admin API's events route checks the event's name
   * and payload against it).
   */
  flowForMessage(s: SessionSnapshot | null, m: StoredMessage): Flow {
    return this.flowFor(s, [m]);
  }

  /** The flow the router picks for a new session's first message `m`, if it picks a served one. */
  private routed(m: StoredMessage): Flow | undefined {
    const picked = this.o.router?.(m);
    const flow = picked === undefined ? undefined : this.o.flows.get(picked);
    if (picked !== undefined && flow === undefined)
      this.o.logger.warn({ flow: picked }, 'the router picked a flow that is not served; using the default');
    return flow;
  }

  private env(lease: LeaseGrant): Parameters<typeof transition>[3] {
    return {
      key: { channel: lease.channel, user: lease.user },
      nowMs: this.now(),
      worker: this.workerId,
      fence: lease.fence,
      sessionTtlSec: this.o.sessionTtlSec,
      maxRetries: this.o.maxRetries,
      ...(this.o.dedupeTtlSec !== undefined ? { dedupeTtlSec: this.o.dedupeTtlSec } : {}),
      // An expired session is a new one: the router picks its flow (SPEC 5).
      ...(this.o.router
        ? { route: (m: StoredMessage) => this.routed(m) ?? this.o.flows.get(this.o.defaultFlow) }
        : {}),
    };
  }

  /** Looks up the prompts named by tapped buttons' `context.id`. */
  private async resolveContext(key: SessionKey, batch: StoredMessage[]): Promise<ResolvedMessage[]> {
    const ids = batch.filter((m) => m.content.type === 'choice' && m.contextId).map((m) => m.contextId!);
    if (ids.length === 0) return batch;
    const prompts = await this.o.backend.resolvePrompts(key, ids);
    return batch.map((m) =>
      m.content.type === 'choice' && m.contextId
        ? { ...m, contextPrompt: prompts.get(m.contextId) ?? null }
        : m,
    );
  }

  /**
   * Turns replies into outbound records, numbered after the session's last one, then the effects
   * started (records the outbox runs instead of sending). The second and later messages of one
   * state change carry `#<n>` after the version in their callback data.
   */
  private toOutbound(
    s: SessionSnapshot,
    effects: Effect[],
    started: readonly EffectStart[] = [],
  ): { snapshot: SessionSnapshot; outbound: OutboundRecord[] } {
    let seq = s.outboundSeq;
    const createdAt = this.now();
    const callbackData = callbackNumbering(s.flow);
    const to = s.waId ?? s.userId ?? s.user;
    const outbound = effects.map((e): OutboundRecord => {
      seq += 1;
      return {
        id: `${s.channel}:${s.user}:${seq}`,
        channel: s.channel,
        user: s.user,
        seq,
        flow: s.flow,
        step: e.step,
        version: e.version,
        ...(e.inReplyTo !== undefined ? { inReplyTo: e.inReplyTo } : {}),
        ...(s.provider !== undefined ? { provider: s.provider } : {}),
        to,
        body: e.body,
        callbackData: callbackData(e),
        isPrompt: e.isPrompt,
        status: 'pending',
        attempts: 0,
        createdAt,
      };
    });
    for (const f of started) {
      seq += 1;
      outbound.push({
        id: `${s.channel}:${s.user}:${seq}`,
        channel: s.channel,
        user: s.user,
        seq,
        flow: s.flow,
        step: f.step,
        version: f.version,
        ...(s.provider !== undefined ? { provider: s.provider } : {}),
        to,
        body: { type: 'text', text: `(effect ${f.name} ${f.id}: not a message)` },
        callbackData: `baton:${s.flow}:${f.step}:${f.version}:effect`,
        isPrompt: false,
        status: 'pending',
        attempts: 0,
        createdAt,
        effect: { id: f.id, name: f.name, input: f.input, data: f.data },
      });
    }
    return { snapshot: { ...s, outboundSeq: seq }, outbound: claimFirst(outbound, this.workerId) };
  }

  /**
   * Flow code failed on this batch for good: its messages go to the dead letters with the error
   * and the attempt count, state unchanged, and the user gets one error notice, all in one
   * fenced commit. The messages leave the mailbox, so no restart runs the batch again. A message
   * replayed from the dead letters that fails again gets no second notice (the user had one, and
   * a second would carry the same `biz_opaque_callback_data`).
   */
  private async deadLetterBatch(
    lease: LeaseGrant,
    prev: SessionSnapshot | null,
    batch: StoredMessage[],
    err: BatonError,
    attempts: number,
  ): Promise<OutboundRecord[]> {
    this.o.logger.error(
      { err, session: logSessionId(lease), attempts },
      'flow code failed; batch dead-lettered',
    );
    const flow = this.flowFor(prev);
    const fresh = prev ?? freshSnapshot(flow, lease, this.now(), batch[0]);
    // The flow failed on the result of the effect the session awaits: that result will never be
    // applied, and every later message would wait for it, silently, for good. The session stops
    // awaiting it and goes to an agent instead (recorded `escalated`; it is in the inbox).
    const awaited = fresh.awaiting;
    const stuck =
      awaited !== undefined &&
      batch.some((m) => m.content.type === 'effect_result' && m.content.effectId === awaited.id);
    const records: TransitionRecord[] = [];
    let base = fresh;
    if (stuck) {
      const env = this.env(lease);
      const { awaiting: _over, ...rest } = fresh;
      base = waiting(
        {
          ...rest,
          version: fresh.version + 1,
          needsAgent: true,
          retryCount: 0,
          handoffReason: `the flow failed on the result of effect ${awaited.name}: ${err.code}`,
        },
        'escalated',
        env.nowMs,
      );
      records.push(changeRecord(base, 'escalated', fresh.step, env));
    }
    const first = batch[0]!;
    // The notice answers the user's message when the state stays as it was (SPEC 3: the wamid
    // appended); after an escalation it is tagged with the new version alone, and an effect's
    // result, no message of the user's, is never named as the one answered (outside test QA53-F2).
    const answered = batch.find((m) => m.replayed !== true && (stuck || m.content.type !== 'effect_result'));
    const { snapshot, outbound } = this.toOutbound(
      { ...base, ...(base.provider ? {} : { provider: first.provider }) },
      answered === undefined
        ? []
        : [
            {
              body: { type: 'text', text: errorNotice(flow, base.data) },
              step: base.step ?? flow.start,
              version: base.version,
              isPrompt: false,
              ...(stuck ? {} : { inReplyTo: answered.id }),
            },
          ],
    );
    const letters: DeadLetter[] = batch.map((m) => ({
      id: `in:${m.id}`,
      kind: 'inbound',
      channel: m.channel,
      user: m.user,
      ref: m.id,
      reason: `${err.code} after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${err.message}`,
      payload: m,
      createdAt: this.now(),
    }));
    await this.o.backend.commit(lease, {
      expectedVersion: prev?.version ?? 0,
      snapshot,
      records,
      outbound,
      consumed: batch.map((m) => m.id),
      deadLetters: letters,
    });
    this.o.metrics.messages.inc({ outcome: 'dead_letter' }, batch.length);
    return outbound;
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
  private async flushOutbox(run: SessionRun, o: FlushOptions = {}): Promise<void> {
    const {
      leaveLast = false,
      maxAttempts = this.o.maxSendAttempts ?? 8,
      maxWaitMs = Number.POSITIVE_INFINITY,
    } = o;
    const { backend, metrics, logger } = this.o;
    const signal = run.held.sending;
    await this.recordSent(run);
    const unsent = await backend.unsent(run.lease);
    // Effects are not sent: the session runs them (see awaitEffects) once its replies are out, or
    // beside a reply's backoff (see startEffects).
    run.effects = unsent.filter((r) => r.effect !== undefined);
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
      (rest > maxWaitMs || (await this.waitBackoff(run, rest, signal)))
    ) {
      await this.leave(run);
      return;
    }
    sending: for (const rec of unsent) {
      if (rec.effect !== undefined) continue;
      // Sent by this process, its record refused by the store until now: recorded, not sent again.
      if (this.unrecorded.has(rec.id) && (await this.unrecorded.settle(rec.id))) continue;
      // A later reply of a commit carries no claim (see `claimFirst`): its claim goes with the
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
        if (signal.aborted) {
          // A claim made for this attempt goes back with the others (nothing was tried).
          if (early !== undefined) {
            const [made] = await early.catch(() => [null]);
            if (made !== null && made !== undefined) run.claims.add(rec.id);
          }
          await this.leave(run);
          break sending;
        }
        if (!run.claims.has(rec.id)) {
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
              new SendError(`earlier sends got no answer; ${AMBIGUOUS}`, { retryable: false, httpStatus: 0 }),
            );
            break;
          }
          count = claims;
          run.claims.add(rec.id);
        }
        // The last moment before the send leaves: a process paused since its commit (SIGSTOP, a
        // stalled VM) must not wake up and send a reply its lease no longer covers, after the
        // replies a newer holder has sent meanwhile.
        if (!run.held.fresh()) {
          await this.leave(run);
          break sending;
        }
        let providerMessageId: string;
        try {
          // The state that made it must outlive a restart of the fast store first (QA33-F1).
          if (this.o.backend.sendable !== undefined && !(await this.o.backend.sendable(run.lease)))
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
            // A session that cannot wait in place comes back in a later turn (see waitBackoff).
            if (await this.waitBackoff(run, wait, signal)) {
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
              ? new SendError(`${e.message}; ${AMBIGUOUS}`, { retryable: false, httpStatus: e.httpStatus })
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

  /**
   * The commit claimed its first reply for an attempt right after it. When replies left unsent
   * before the commit (by an earlier holder, or a throttled turn) go first, that attempt may wait
   * for seconds behind their sends (a slow gateway), and a crash meanwhile would leave a claim no
   * attempt used: the claim goes back, and the reply is claimed in its turn, as the commit's later
   * replies are. One round trip, only when older replies are unsent.
   */
  private async claimInTurn(run: SessionRun, unsent: readonly OutboundRecord[]): Promise<void> {
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
  private async recordedByEarlierHolder(run: SessionRun, rec: OutboundRecord): Promise<boolean> {
    const cleared = await this.cleared(run);
    if (cleared === null) return this.recordedByLiveClaimer(run, rec);
    const until = cleared.at + (this.o.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS) + SEND_RECORD_MARGIN_MS;
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
   * `rec` was claimed by a holder in another process whose lease ran out (no clear) and no answer
   * is recorded. If that process is alive, the send may have gone out and the store refused its
   * record for a moment (Redis away, a connection cut): it keeps recording it (UnrecordedSends), so
   * this holder waits up to {@link RECORD_GRACE_MS} for the record before sending the reply again.
   * True when it was recorded meanwhile. A claimer that is gone (its heartbeat lapsed) or that gave
   * its claim back is not waited for; one frozen for longer than the grace (SIGSTOP) looks crashed,
   * and its reply is sent again, the one repeat SPEC 1.6 allows.
   */
  private async recordedByLiveClaimer(run: SessionRun, rec: OutboundRecord): Promise<boolean> {
    const h = rec.claimedBy;
    if (h === undefined || h === this.workerId || h.startsWith(`${this.workerId}:`)) return false;
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
   */
  private async earlierAttempt(run: SessionRun, rec: OutboundRecord): Promise<void> {
    if (rec.status !== 'sending') return;
    const cleared = await this.cleared(run);
    if (cleared === null) return;
    const def = this.o.flows.get(rec.flow)?.effects.get(rec.effect!.name);
    const until = cleared.at + (def?.timeoutMs ?? DEFAULT_EFFECT_TIMEOUT_MS) + SEND_RECORD_MARGIN_MS;
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
  private async cleared(run: SessionRun): Promise<ClearedLease | null> {
    // `??=` would ask again after a null answer, for every record.
    if (run.cleared === undefined)
      run.cleared = await this.o.backend.leaseCleared(run.lease).catch(() => null);
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
    if (h !== null && (h === this.workerId || h.startsWith(`${this.workerId}:`))) {
      // Claimed by this very process (or, not known, taken from it by a clear of one of its own
      // turns, lately, while it is alive): its send of the record can be in flight only while
      // another of its turns of the session runs. A lock-clear storm made a live worker wait out
      // the whole send timeout (31 s) for a reply a killed worker had claimed (an outside soak).
      return async () => (this.turns.get(sessionId(key)) ?? 0) <= 1;
    }
    let next = 0;
    return async () => {
      if (h === null || this.now() < next) return false;
      next = this.now() + HOLDER_CHECK_MS;
      return !(await this.o.backend.holderAlive(h).catch(() => true));
    };
  }

  /**
   * Looks at `rec` in the session's outbox every {@link EARLIER_SEND_POLL_MS} until it is gone
   * (undefined: recorded as done), `over` says so, `until` passes or `signal` aborts; the record
   * as last seen.
   */
  private async watchRecord(
    run: SessionRun,
    rec: OutboundRecord,
    until: number,
    over: (now: OutboundRecord) => boolean,
    signal: AbortSignal,
    holderGone: () => Promise<boolean>,
  ): Promise<OutboundRecord | undefined> {
    for (;;) {
      const now = (await this.o.backend.unsent(run.lease)).find((o) => o.id === rec.id);
      if (now === undefined || over(now) || this.now() >= until || signal.aborted) return now;
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
  private leave(run: SessionRun): Promise<void> {
    return this.giveBack(run, [...run.claims]);
  }

  /**
   * Gives back this holder's claims to `ids` (no attempt of its own may have reached the user).
   * A claim not given back stays counted: at worst one too many (conservative), never one too few.
   */
  private async giveBack(run: SessionRun, ids: readonly string[]): Promise<void> {
    for (const id of ids) run.claims.delete(id);
    if (ids.length === 0) return;
    // A lost baton gives its unused claims back too (the store takes a give-back from any
    // holder): a starved holder's claim left counted made the next holder's the third, and two
    // starved holders in a row dead-lettered a reply nobody had sent (outside test QA20-F1). Not
    // after a long pause (SIGSTOP, a stalled VM): by then an agent may have replayed the reply,
    // its count started afresh, and this claim is no longer in it.
    if (run.held.signal.aborted && run.held.renewedAgo() > STALE_GIVE_BACK_MS) return;
    await this.o.backend
      .claimOutbound(run.lease, ids, -1)
      .catch((err: unknown) =>
        this.o.logger.warn({ err, session: logSessionId(run.lease) }, 'could not give back send claims'),
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
    await this.o.backend
      .updateOutbound(rec.id, { status: 'pending', attempts: attempt, lastError: e.message, notBefore })
      .catch((err: unknown) =>
        this.o.logger.warn({ err, session: logSessionId(rec) }, 'could not record a refused send'),
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
    const { backend } = this.o;
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
    const sender = this.o.senders[provider];
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

  /** An agent takes the session from the inbox (`engine/agent.ts`). */
  takeSession(
    key: SessionKey,
    agent: string,
    takeOver = false,
    seenVersion?: number,
    seenAgent?: string | null,
  ): Promise<SessionSnapshot | null> {
    return agentOps.takeSession(this.agentHost(), key, agent, takeOver, seenVersion, seenAgent);
  }

  /** An agent writes to the user through the outbox (`engine/agent.ts`). */
  agentMessage(
    key: SessionKey,
    text: string,
    agent?: string,
    anyway?: boolean,
  ): Promise<agentOps.AgentSend | null> {
    return agentOps.agentMessage(this.agentHost(), key, text, agent, anyway);
  }

  /** An agent hands the session back to the bot at `step` (`engine/agent.ts`). */
  handback(
    key: SessionKey,
    step: string,
    agent?: string,
    data?: FlowData,
    anyway?: boolean,
  ): Promise<SessionSnapshot | null> {
    return agentOps.handback(this.agentHost(), key, step, agent, data, anyway);
  }

  private agentHost(): agentOps.AgentHost {
    return {
      backend: this.o.backend,
      workerId: this.workerId,
      lockTtlMs: this.o.lockTtlMs,
      now: this.now,
      env: (lease) => this.env(lease),
      flowFor: (s) => this.flowFor(s),
      hold: (lease) => {
        this.turnBegan(lease);
        const held = this.hold(lease);
        // An agent change records its sends before it stops holding.
        return {
          ...held,
          stop: () => {
            held.stop();
            this.turnEnded(lease);
          },
        };
      },
      toOutbound: (s, replies, started) => this.toOutbound(s, replies, started),
      queue: this.agentQueue,
      settleHeld: (lease, prev) => this.settleHeld(lease, prev),
      // While the agent's request waits: quick retries only. A send that would wait longer (a
      // throttled gateway's Retry-After, a long backoff) stays unsent and a worker takes it up
      // (the release schedules the session again), so the dashboard never hangs.
      flushOutbox: (lease, held, committed) =>
        this.flushOutbox(
          {
            lease,
            held: {
              signal: held.sending,
              sending: held.sending,
              fresh: held.fresh,
              // No effect runs here (effects: []): nothing asks the store.
              confirm: () => Promise.resolve(!held.sending.aborted),
              renewedAgo: held.renewedAgo,
              pause: () => Promise.resolve(),
              resume: () => undefined,
              stop: () => undefined,
            },
            effects: [],
            claims: claimed({ claims: new Set() }, committed),
          },
          { maxAttempts: 3, maxWaitMs: AGENT_SEND_WAIT_MS },
        ),
    };
  }

  /**
   * Applies the messages waiting in the mailbox of a session held for an agent, whatever the
   * buffer window: each is recorded `held` (or `late`), nothing is sent. Messages that would do
   * more (one that expires the session, an effect's result) are left to the next batch.
   */
  private async settleHeld(lease: LeaseGrant, prev: SessionSnapshot): Promise<SessionSnapshot> {
    let s = prev;
    for (;;) {
      const pending = (await this.o.backend.pending(lease, MAX_BATCH)).filter((m) => !isEffectResult(m));
      if (pending.length === 0) return s;
      const resolved = await this.resolveContext(lease, pending.map(trustedTimestamp));
      const result = transition(this.flowFor(s, resolved), s, resolved, this.env(lease));
      const quiet = result.records.every((r) => r.kind === 'held' || r.kind === 'late');
      if (!quiet || result.effects.length > 0 || result.started.length > 0 || result.consumed.length === 0)
        return s;
      await this.o.backend.commit(lease, {
        expectedVersion: s.version,
        snapshot: result.snapshot,
        records: result.records,
        outbound: [],
        consumed: result.consumed,
        deadLetters: [],
      });
      for (const r of result.records) this.o.metrics.messages.inc({ outcome: r.kind }, r.message_ids.length);
      s = result.snapshot;
      if (pending.length < MAX_BATCH) return s;
    }
  }

  /** An agent's reset: takes the baton (waiting up to the lock TTL), records `admin_reset`, sends nothing. */
  adminReset(key: SessionKey, agent?: string, anyway = false): Promise<SessionSnapshot | null> {
    return agentOps.adminReset(this.agentHost(), key, agent, anyway);
  }
}

/** An effect running in a holding of its session's baton (see Engine.startEffects). */
interface RunningEffect {
  readonly effectId: string;
  readonly done: Promise<'done' | 'left'>;
  /** Aborts when the session has left the visit that started it. */
  readonly left: AbortController;
  outcome?: 'done' | 'left';
  settled?: boolean;
}

/**
 * Whether the turn ends here: the baton goes to an agent, or the session comes back after a
 * backoff it could not wait out in place (see Engine.waitBackoff).
 */
function ending(run: SessionRun): boolean {
  return run.yielded === true || run.releaseAfterMs !== undefined;
}

/** Whether an effect of this holding stopped for an agent (it left the session to one). */
function effectLeft(run: SessionRun): boolean {
  for (const r of run.running?.values() ?? []) if (r.outcome === 'left') return true;
  return false;
}

/** Whether an effect of this holding is still running. */
function effectsRunning(run: SessionRun): boolean {
  for (const r of run.running?.values() ?? []) if (r.settled !== true) return true;
  return false;
}

/** Whether the session has effects to run or await before its baton may go. */
function effectsOpen(run: SessionRun): boolean {
  return run.effects.length > 0 || effectsRunning(run);
}

/**
 * A session that left the visit that started an effect (a reset, an agent's take) no longer
 * awaits it: the effect makes no further attempt (the one in flight ends as it does).
 */
function abandonLeft(run: SessionRun): void {
  const awaited = run.awaiting;
  for (const { effectId, left } of run.running?.values() ?? [])
    if (effectId !== awaited && !left.signal.aborted) left.abort();
}

/** The effect id a session awaits (null: none). */
function awaitedBy(s: SessionSnapshot | null | undefined): string | null {
  return s?.awaiting?.id ?? null;
}

/** One holding of a session's baton. */
interface SessionRun {
  readonly lease: LeaseGrant;
  readonly held: {
    signal: AbortSignal;
    sending: AbortSignal;
    fresh: () => boolean;
    confirm: () => Promise<boolean>;
    /** Milliseconds since the lease was last renewed. */
    renewedAgo: () => number;
    /** See HeldLease.pause and resume. */
    pause: () => Promise<void>;
    resume: () => void;
    stop: () => void;
  };
  /** The session's unfinished effects, as the last look at its outbox found them. */
  effects: OutboundRecord[];
  /**
   * The effects running in this holding, by record id (see Engine.startEffects). Absent for an
   * agent's flush, where no effect runs.
   */
  running?: Map<string, RunningEffect>;
  /** An effect started beside a send backoff has stored its result: the backoff is cut short. */
  resultReady?: boolean;
  /** What the session awaits, as last loaded or committed (see awaitedBy). */
  awaiting?: string | null;
  /** A reply sent and not yet recorded as sent (see flushOutbox). */
  sent?: OutboundUpdate;
  /** An agent asked for the baton while a send waited: the turn ends, replies left unsent. */
  yielded?: boolean;
  /** A send backoff was cut short by new messages: the turn goes on to apply them. */
  messagesWaiting?: boolean;
  /** When the backoff so cut would have ended: the next send waits until then (see waitBackoff). */
  resumeSendAt?: number;
  /** The turn ends without waiting out its backoff (see waitBackoff): the session is due again after it. */
  releaseAfterMs?: number;
  /** This turn left the session untouched for a worker that serves it (see leaveUnserved). */
  leftUnserved?: boolean;
  /** The session as this turn's last batch loaded it (see leftWithoutBatch). */
  loaded?: SessionSnapshot | null;
  /** The last such cut applied nothing: backoffs are not cut for messages again this turn. */
  cutInVain?: boolean;
  /**
   * Ids of the unsent replies this holder holds a claim to send that no attempt used yet (see
   * flushOutbox): the ones its own commits wrote, and those it claimed since.
   */
  readonly claims: Set<string>;
  /** When an agent last cleared this session's lease and from whom, once looked up (see Engine.cleared). */
  cleared?: ClearedLease | null;
  /** Frees the worker loop's slot this session holds (see Engine.park). */
  readonly detach?: () => void;
  /** It freed its slot to wait out a send backoff. */
  parked?: boolean;
}

/**
 * The batch whose window ends at `windowEnd`: the messages stored within it, and those stored
 * since that the user sent no later than the newest of them (WhatsApp timestamps). A busy
 * intake can store a burst's first message after its window closed yet before its batch runs;
 * left for the next batch it would be older than what this one applied, so recorded `late` and
 * lost (a name missing its first half; an outside test saw a starved ingress read a burst's
 * webhooks 2.2 s apart). Such a message is in the mailbox when the batch reads it, so it sorts
 * before the batch's newest and is applied in its place, however late the batch runs. Messages
 * sent after the window's newest stay for a batch of their own, as the window says. `pending`
 * is in mailbox order, timestamps already trusted.
 */
export function withStragglers(pending: readonly StoredMessage[], windowEnd: number): StoredMessage[] {
  let newest = Number.NEGATIVE_INFINITY;
  for (const m of pending) if (m.storedAt <= windowEnd && m.timestamp > newest) newest = m.timestamp;
  return pending.filter((m) => m.storedAt <= windowEnd || m.timestamp <= newest);
}

/** Adds the replies `committed` claimed for their committing holder (see `claimFirst`) to its claims. */
function claimed(run: { readonly claims: Set<string> }, committed: readonly OutboundRecord[]): Set<string> {
  for (const r of committed) if (r.effect === undefined && (r.claims ?? 1) > 0) run.claims.add(r.id);
  return run.claims;
}

/**
 * A commit claims its first reply for the committing holder, whose attempt at it starts right
 * after the commit: no write on the hot path. Its later replies are claimed each with the record
 * of the one before (Engine.flushOutbox), so a holder that dies between two replies leaves no
 * claim on those it never tried: the next two holders may each still try them (SPEC 1.6's one
 * repeat), instead of the third finding two claims no attempt used and dead-lettering the reply.
 */
function claimFirst(outbound: OutboundRecord[], holder: string): OutboundRecord[] {
  let first = true;
  for (const r of outbound) {
    if (r.effect !== undefined) continue;
    if (first) r.claimedBy = holder;
    else r.claims = 0;
    first = false;
  }
  return outbound;
}

/** How one flush of a session's outbox goes (see Engine.flushOutbox). */
interface FlushOptions {
  /** Leave the last send's record in `run.sent` for the end of the turn. Default false. */
  readonly leaveLast?: boolean;
  /** Attempts per reply in this flush. Default: the engine's `maxSendAttempts` (8). */
  readonly maxAttempts?: number;
  /** A retry that would wait longer than this is left to a later turn instead. Default: none. */
  readonly maxWaitMs?: number;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
