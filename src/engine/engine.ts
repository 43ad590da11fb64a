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
import type { Backend, LeaseGrant } from '../backends/types.ts';
import { BatonError, FencedError, FlowRuntimeError, thrownText, VersionConflictError } from '../errors.ts';
import { errorNotice, type Flow, type FlowData } from '../flow/define.ts';
import type { FlowRouter } from '../flow/router.ts';
import {
  freshSnapshot,
  isEffectResult,
  isResetKeyword,
  notServedBy,
  orderBatch,
  transition,
  type Effect,
  type EffectStart,
  type ResolvedMessage,
  type TransitionResult,
} from '../flow/transition.ts';
import type { Metrics } from '../metrics.ts';
import type { IntakeGate } from './intake-gate.ts';
import { LeaseLostError, LeaseManager } from './lease-manager.ts';
import { LoopLag } from './loop-lag.ts';
import { Outbox, type OutboundSender, type OutboxTurn } from '../outbox/outbox.ts';
import { claimed, toOutbound } from '../outbox/records.ts';
import { sleep } from '../sleep.ts';
import {
  arrivedBy,
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
import { escalatedOnResult, failedOnAwaited } from '../flow/agent.ts';
import { LogLimiter } from '../log-limit.ts';
import * as agentOps from './agent.ts';
import { DEFAULT_EFFECT_TIMEOUT_MS, runEffect, waitUnlessWanted } from './effects.ts';

export type { OutboundSender };

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

/**
 * Longest a batch waits for webhooks of its window still being stored: as long as an ingress may
 * be silent before it counts as dead (intake-watermark.ts `DEAD_AFTER_MS`), so a stopped one that
 * runs again within that is waited for (outside test QA140-F2: stopped 1.8 s, it stored the rest
 * of its bursts after a 1 s wait had closed them).
 */
const INTAKE_WAIT_MS = 2000;
/** How many times a batch's window may stretch again after waiting for its intake (see Engine.closeWindow). */
const STRETCH_ROUNDS = 3;
/**
 * An event loop this late lately, ms, was stopped or starved: what reached its sockets meanwhile
 * takes several turns to be read (see Engine.readSockets).
 */
const STALL_MS = 100;
/**
 * After a stall, the turns in a row that must begin no webhook, and for how long (ms): the turns
 * that read a backlog of webhooks are not every one (outside test QA140-F1: 3 quiet turns came
 * while 100 requests of the stall were still unread). Once the turns are quiet, it looks again
 * every {@link QUIET_LOOK_MS}; it waits {@link STALL_TURNS_MAX} turns at most.
 */
const QUIET_TURNS = 3;
const QUIET_MS = 25;
const QUIET_LOOK_MS = 5;
const STALL_TURNS_MAX = 500;

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
 * How long a session a turn yielded to an agent is left alone (an agent's change asks for the
 * baton every 50 ms, and its own release makes the session due again at once).
 */
const YIELD_TO_AGENT_MS = 1000;
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
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : `threw ${thrownText(err)}`;
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
/** How long an answer of whether a flow version is run by a live worker is believed, ms. */
const SERVED_FOR_MS = 1000;
/** Most sessions whose leaving is remembered at once (oldest forgotten first). */
const UNSERVED_HELD = 10_000;

/** A batch, for counting its overruns: its session and first message. */
function overrunId(key: SessionKey, batch: readonly StoredMessage[]): string {
  return `${sessionId(key)}\u0000${batch[0]?.id ?? ''}`;
}

/** Times a session whose turn failed is tried again here (after 1, 2, 4, 8 lease TTLs). */
const TURN_RETRIES = 4;
/** How long after the session is due again a failed turn's own retry runs, ms. */
const RETRY_MARGIN_MS = 100;
/** A session whose turn failed (its store answering) is due again this much later, ms. */
const FAILED_TURN_DUE_MS = 250;
/** Most sessions waiting to be tried again at once (beyond: the reaper finds them). */
const TURN_RETRIES_HELD = 10_000;

export class Engine {
  readonly workerId: string;

  /** The ids of the flows served, the one new sessions start in first. */
  get flowIds(): string[] {
    return [this.o.defaultFlow, ...[...this.o.flows.keys()].filter((id) => id !== this.o.defaultFlow)];
  }

  /** The flows served, as `flowIds` orders them, each with its version: `order v2`. */
  get flowsServed(): string[] {
    return this.flowIds.map((id) => `${id} v${this.o.flows.get(id)!.version}`);
  }
  private readonly now: () => number;
  private readonly abort = new AbortController();
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
  /** Agents' changes in hand in a process that is no worker, and the beat they keep (see `holding`). */
  private changes = 0;
  private holderBeat: NodeJS.Timeout | null = null;
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
  /** What the store said lately of flow versions being run by live workers (see servedElsewhere). */
  private readonly served = new Map<string, { until: number; answer: Promise<number | null> }>();
  /** Sends the replies of this engine's turns after their commits (src/outbox). */
  private readonly outbox: Outbox<SessionRun>;

  constructor(private readonly o: EngineOptions) {
    this.now = o.now ?? Date.now;
    this.logLimiter = new LogLimiter(5000, this.now);
    this.workerId = o.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.outbox = new Outbox<SessionRun>({
      backend: o.backend,
      senders: o.senders,
      logger: o.logger,
      metrics: o.metrics,
      now: this.now,
      workerId: this.workerId,
      ...(o.maxSendAttempts !== undefined ? { maxSendAttempts: o.maxSendAttempts } : {}),
      ...(o.sendBackoffMs !== undefined ? { sendBackoffMs: o.sendBackoffMs } : {}),
      ...(o.sendTimeoutMs !== undefined ? { sendTimeoutMs: o.sendTimeoutMs } : {}),
      turnsOf: (key) => this.turns.get(sessionId(key)) ?? 0,
      waitBackoff: (run, ms, signal) => this.waitBackoff(run, ms, signal),
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
    // Every worker loop and every session in hand listens to this one signal (Node warned of a
    // leak past 10 listeners: outside tests QA42-F8, QA44).
    setMaxListeners(0, this.abort.signal);
  }

  /** Starts `concurrency` worker loops, and a heartbeat that `stats().workers` counts. */
  start(concurrency = 4): void {
    const { every, ttl } = this.beatTimes();
    const serves = [...this.o.flows.values()].map((f) => ({
      id: f.id,
      version: f.version,
      ...(f.id === this.o.defaultFlow ? { starts: true } : {}),
    }));
    const beat = (): void => {
      this.o.backend
        .heartbeat(this.workerId, ttl, serves)
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
    const graceOver = this.sendsGrace();
    try {
      await Promise.all(this.loops);
      this.loops = [];
      await Promise.all([...this.waiting]);
    } finally {
      graceOver();
    }
    this.leases.close();
    this.loopLag.stop();
    await this.outbox.stop(this.o.recordOnStopMs);
    if (this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
      await this.o.backend.removeWorker(this.workerId).catch(() => undefined);
    }
  }

  /**
   * A stopping process's sends in flight are abandoned after the grace (`stopSendGraceMs`): its
   * worker loops' (see `stop`), and its agents' changes' (the admin API's requests, which the
   * server's close waits for) whether it runs worker loops or not. A gateway that never answered
   * held an ingress's stop for a minute, and a second attempt went out during it; an embedded
   * process's, whose worker loops had stopped at once, for 30 s (outside test QA134-F3). Returns
   * what cancels the grace's end, once they are over.
   */
  sendsGrace(): () => void {
    const grace = setTimeout(() => this.outbox.abandonSends(), this.o.stopSendGraceMs ?? STOP_SEND_GRACE_MS);
    return () => clearTimeout(grace);
  }

  /** How often a process says it is alive, and for how long each time. */
  private beatTimes(): { every: number; ttl: number } {
    const every = Math.max(HEARTBEAT_MIN_EVERY_MS, this.o.lockTtlMs / 3);
    return { every, ttl: Math.max(this.o.lockTtlMs + 1000, 3 * every) };
  }

  /**
   * Runs an agent's change, this process saying meanwhile that it is alive (Backend.holderBeat)
   * unless its worker heartbeat says so. The next holder of a session whose baton another agent
   * cleared from this change waits for the send it may have in flight only while its process is
   * alive: an ingress's admin API did not beat, and a worker sent an agent's message a second
   * time while the first was on its way (outside test QA133-F1).
   */
  private async holding<R>(change: () => Promise<R>): Promise<R> {
    if (this.heartbeat !== null) return change();
    const { every, ttl } = this.beatTimes();
    // A goodbye not heard is not told (the entry expires): the CLI closes its store at once.
    const beat = (stops = false): Promise<void> =>
      this.o.backend
        .holderBeat(this.workerId, ttl, stops)
        .catch((err: unknown) =>
          stops ? undefined : this.o.logger.warn({ err }, 'could not say this process holds batons'),
        );
    this.changes += 1;
    if (this.changes === 1) {
      this.holderBeat = setInterval(() => void beat(), every);
      this.holderBeat.unref();
      await beat();
    }
    try {
      return await change();
    } finally {
      this.changes -= 1;
      if (this.changes === 0 && this.holderBeat !== null) {
        clearInterval(this.holderBeat);
        this.holderBeat = null;
        void beat(true);
      }
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
    /** This round follows a send backoff cut short by messages (see Outbox.flush). */
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
        await this.outbox.recordSent(run);
        // Replies left unsent by an earlier holder (or a replayed dead letter). A session left for
        // a worker that serves it gets its replies all the same (sending one runs no flow code), but
        // no effect: those run that worker's flow's code, and no send backoff is waited out here
        // (it would start them). Left for that worker, a newer version's prompt waited until one took
        // the session, up to 32 s on a loaded machine (outside test QA109).
        if (!flushed) {
          if (run.leftUnserved || (await this.leftWithoutBatch(run))) {
            await this.outbox.flush(run, { maxWaitMs: 0, effects: false });
          } else await this.outbox.flush(run);
        }
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
          // Released as due at once, the session was taken again at once: a commit that failed
          // every time (what JSON cannot store) ran 600-5,000 times a second, and an agent's
          // reset never found the baton free (outside test QA138-F1). A passing failure (a store
          // command timed out) is still tried again soon.
          run.releaseAfterMs = Math.max(run.releaseAfterMs ?? 0, FAILED_TURN_DUE_MS);
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
      await this.outbox.recordSent(run).catch(() => undefined);
      // Yielded to an agent: the session is not taken up again before the agent can take it (the
      // messages still waiting made it due at once, and a worker took the baton back each time).
      if (!released)
        await backend
          .releaseLease(
            lease,
            run.yielded ? YIELD_TO_AGENT_MS : (run.releaseAfterMs ?? this.outbox.resumeIn(run)),
          )
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
    const timer = setTimeout(() => {
      this.retries.delete(id);
      if (this.abort.signal.aborted) return;
      const run: Promise<void> = this.runSession(key, undefined, attempt).finally(() =>
        this.waiting.delete(run),
      );
      this.waiting.add(run);
    }, this.retryDelayMs(attempt));
    timer.unref();
    this.retries.set(id, timer);
  }

  /** When {@link retryLater} tries a failed turn again: 1, 2, 4 then 8 lease TTLs (and a margin) on. */
  private retryDelayMs(attempt: number): number {
    return this.o.lockTtlMs * 2 ** (attempt - 1) + RETRY_MARGIN_MS;
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
   * Where the buffer window of a batch due at `closes` really ends, once nothing received within
   * it can still be on its way into the store; null when the lease went meanwhile. `readAgain`:
   * the mailbox must be read again (the batch waited for more of it).
   *
   * A busy process reads webhooks late, so their arrival times trail the user's sends by up to
   * its event loop's delay: the window stretches by the largest delay of this process and of the
   * ingresses that store for it (at most doubling the window), so a burst that the machine's load
   * spread out stays one batch (an outside test with CPU hogs saw 500 ms bursts stored over
   * 0.5-1.2 s). Webhooks received within the window may still be on their way into the store:
   * the intake gate waits for them. A stopped or starved ingress tells its delay only when it runs
   * again, so the stretch is looked at again after each wait (outside test QA93-F1). A stall
   * longer than the stretch is met per webhook: each counts, in the gate and in the batch, from
   * when it may have come (`readLateMs`, see {@link withStragglers}).
   */
  private async closeWindow(
    run: SessionRun,
    closes: number,
  ): Promise<{ end: number; readAgain: boolean } | null> {
    const { intake, bufferMs } = this.o;
    const { held, lease } = run;
    let end = closes;
    let stretch = 0;
    let readAgain = false;
    for (let round = 0; round <= STRETCH_ROUNDS; round++) {
      const grown = Math.min(bufferMs, Math.max(this.lagMs(), intake?.lagMs() ?? 0));
      if (round > 0 && grown <= stretch) break;
      if (grown > stretch) {
        stretch = grown;
        end = closes + stretch;
        const wait = end - this.now();
        if (wait > 0) {
          await sleep(wait, held.signal);
          if (held.signal.aborted) return null;
          readAgain = true;
        }
      }
      if (!intake) break;
      if (await this.readSockets(intake)) readAgain = true;
      if (await intake.drained(end, INTAKE_WAIT_MS, held.signal, lease)) readAgain = true;
    }
    return { end, readAgain };
  }

  /**
   * Lets the sockets that are readable be read, so webhooks that arrived before a window closed
   * are counted: timers run before I/O in an event-loop turn. After a stall, what came meanwhile
   * takes several turns (a connection made meanwhile is accepted in one turn and read in the
   * next; a stopped process's wait for I/O ends without events when it runs again, so the
   * timers come first even then): until a few turns in a row, and some milliseconds, begin no
   * webhook, for at most as long as the loop was late (up to the window: steady traffic on a
   * starved machine is never quiet, and the batch holds a worker slot meanwhile), when this
   * process reads the webhooks itself (outside test QA137-F1). True when a webhook began
   * meanwhile: the mailbox must be read again (it may be stored already).
   */
  private async readSockets(intake: IntakeGate): Promise<boolean> {
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const begun = (): number => intake.begun?.() ?? 0;
    const first = begun();
    await turn();
    const lag = intake.begun === undefined ? 0 : this.lagMs();
    if (lag >= STALL_MS) {
      const until = performance.now() + Math.min(lag, this.o.bufferMs);
      let quiet = 0;
      let lastBegun = performance.now();
      for (let i = 0; i < STALL_TURNS_MAX && performance.now() < until; i++) {
        if (quiet >= QUIET_TURNS && performance.now() - lastBegun >= QUIET_MS) break;
        const before = begun();
        // Quiet turns come fast on an idle loop: then look every few milliseconds.
        await (quiet >= QUIET_TURNS ? sleep(QUIET_LOOK_MS) : turn());
        if (begun() === before) quiet += 1;
        else {
          quiet = 0;
          lastBegun = performance.now();
        }
      }
    }
    return begun() !== first;
  }

  /**
   * Runs one batch and sends its replies. Returns false when nothing was due, or when every due
   * message waits for an effect's result.
   */
  private async runBatch(run: SessionRun, read?: StoredMessage[]): Promise<boolean> {
    const { backend, metrics } = this.o;
    const { lease, held } = run;
    await this.outbox.recordSent(run);
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
      const closes = first.storedAt + this.o.bufferMs;
      if (closes > this.now()) return false; // not due yet: release reschedules it
      const window =
        this.o.bufferMs > 0 ? await this.closeWindow(run, closes) : { end: closes, readAgain: false };
      if (window === null) return false;
      const windowEnd = window.end;
      if (window.readAgain) pending = await backend.pending(lease, MAX_BATCH);
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
    if (!batch.every(isExpiryEvent) && unservedHere(this.o.backend, base, flow)) {
      if (await this.leaveUnserved(run, base, flow)) return false;
    }
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
      await this.outbox.flush(run);
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
          ...this.records(
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
        await this.outbox.flush(run);
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
        {
          session: logSessionId(lease),
          flow: flow.id,
          step: unfit.from_step,
          version: unfit.version,
          ...(result.unfit === undefined ? {} : { issues: result.unfit }),
        },
        `session restarted: its stored data no longer fits the flow's data schema${result.unfit === undefined ? '' : ` (${result.unfit})`}`,
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
    await this.outbox.flush(run, { leaveLast: true });
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
   * Outbox.flush): its buffer window closed, the session awaiting no effect (then its messages
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

  /** Whether an agent waits for this session's baton (Backend.wantLease). */
  private wanted(run: SessionRun): () => Promise<boolean> {
    return () => this.o.backend.leaseWanted(run.lease);
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
      // An agent waits for the baton: no batch here, which would apply a result stored in the
      // moment before its effect ends (below, the baton goes to the agent once they end). Under
      // load that moment was wide, and an agent's reset came after the result it waited behind
      // (outside test QA100-F1).
      if (await this.wanted(run)().catch(() => false)) break;
      while (await this.runBatch(run)) {
        if (held.signal.aborted) break;
      }
      abandonLeft(run);
      if (!held.signal.aborted && !run.yielded) await this.startEffects(run);
    }
    await Promise.all([...running.values()].map((r) => r.done));
    // An effect paused for an agent: the baton goes to the agent, and a later turn goes on. So
    // does a result an agent's act came before (a reset, a take): the act is applied first, and
    // the result then finds the visit it was for left (recorded, not applied). It was applied
    // first, and an agent's reset during a lookup had the user sent the old order's status just
    // before it (outside test QA99-F4). Asked once more, as the effects have ended.
    if (effectLeft(run) && !held.sending.aborted) run.yielded = true;
    else if (!run.yielded && !held.sending.aborted && (await this.wanted(run)().catch(() => false)))
      run.yielded = true;
    running.clear();
    run.resultReady = false;
    // What the last batch found unfinished is looked at again by the next turn.
    run.effects = [];
  }

  /**
   * Starts the session's committed effects that are not running yet: each runs once per holding
   * (one the session started meanwhile, the user asking again after a reset, starts at once, not
   * after the effects before it have used their attempts). By awaitEffects, and by a send backoff
   * (see Outbox.flush), so that a gateway refusing replies does not hold back the user's lookup:
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
          earlierAttempt: () =>
            this.outbox.earlierAttempt(
              run,
              rec,
              this.o.flows.get(rec.flow)?.effects.get(rec.effect!.name)?.timeoutMs ??
                DEFAULT_EFFECT_TIMEOUT_MS,
            ),
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
   * for `unservedWaitMs` while no live worker runs a flow that serves it; after that (every
   * worker is of the older version: a rollback, or BATON_FLOWS left out the flow) it is run, and
   * handed over.
   * Only for a session `unservedHere` says this process cannot serve.
   */
  private async leaveUnserved(run: SessionRun, base: SessionSnapshot, flow: Flow): Promise<boolean> {
    const foreign = notServedBy(flow, base) === 'other_flow';
    const id = sessionId(run.lease);
    const waitMs = this.o.unservedWaitMs ?? UNSERVED_WAIT_MS;
    const servedUntil = (await this.servedElsewhere(base.flow, base.flowVersion)) ?? 0;
    const now = this.now();
    const left = this.unserved.get(id);
    // The wait counts from the latest of: this process first leaving the session (its version
    // unchanged since: a worker that served it meanwhile is there), and the last moment a worker
    // that runs the session's flow at its version or newer was alive (their heartbeats say which
    // flows they run, and until when; one alive now keeps the wait from starting). Counted from
    // the first leaving alone, a user who wrote every second was handed over 30 s into a rolling
    // deploy, between the newer worker's commits (outside test QA68-F1: 57 of 80 users); and
    // without the heartbeats, a session left while the only newer worker restarted was handed
    // over just after it came back, having sent only a reply it owed, which changes no version
    // (outside test QA109-F1: 5 of 130 users); and with them read only as "alive now", a newer
    // worker that came back, ran the session's lookup and died again within seconds had not
    // counted at all (outside test QA111-F1: a crash loop, 2 of 130 users).
    const firstLeft = left !== undefined && left.version === base.version ? left.since : now;
    const since = Math.max(firstLeft, Math.min(servedUntil, now));
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
            ? `a session of flow ${base.flow}, which this process does not serve, is left for a worker that serves it; if none runs for ${waitMs / 1000} s, it is handed to an agent`
            : `a session written by version ${base.flowVersion} of flow ${flow.id} (this process serves version ${flow.version}) is left for a worker of that version; if none runs for ${waitMs / 1000} s, it is handed to an agent`,
        ),
      );
    run.releaseAfterMs = UNSERVED_RETRY_MS;
    run.leftUnserved = true;
    return true;
  }

  /**
   * Until when a worker that runs flow `id` at `version` or newer is known alive (see
   * `Backend.flowServedUntil`; null: the store could not say), asked at most once a second per
   * flow version.
   */
  private servedElsewhere(id: string, version: number): Promise<number | null> {
    const key = `${id}\u0000${version}`;
    const now = this.now();
    const known = this.served.get(key);
    if (known !== undefined && known.until > now) return known.answer;
    const answer = this.o.backend.flowServedUntil(id, version).catch(() => null);
    this.served.set(key, { until: now + SERVED_FOR_MS, answer });
    return answer;
  }

  /**
   * `leaveUnserved` for a turn that ran no batch (only replies or effects an earlier holder left):
   * a newer flow's effects are not run by this process's flow.
   */
  private async leftWithoutBatch(run: SessionRun): Promise<boolean> {
    if (this.o.backend.kind !== 'distributed') return false;
    // What a batch of this turn read, else the read the lease grant made (no round trip).
    const base = run.loaded !== undefined ? run.loaded : ((await this.o.backend.load(run.lease)) ?? null);
    const flow = this.flowFor(base);
    return unservedHere(this.o.backend, base, flow) && (await this.leaveUnserved(run, base, flow));
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

  /** The outbound records of a state change, made by this worker now (see outbox/records.ts). */
  private records(
    s: SessionSnapshot,
    effects: Effect[],
    started: readonly EffectStart[] = [],
  ): { snapshot: SessionSnapshot; outbound: OutboundRecord[] } {
    return toOutbound(s, effects, started, this.now(), this.workerId);
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
    // The flow failed on the result of the effect the session awaits: the session goes to an
    // agent (escalatedOnResult).
    const stuck = failedOnAwaited(fresh, batch);
    const records: TransitionRecord[] = [];
    let base = fresh;
    if (stuck) {
      const escalated = escalatedOnResult(fresh, err.code, this.env(lease));
      base = escalated.snapshot;
      records.push(escalated.record);
    }
    const first = batch[0]!;
    // The notice answers the user's message when the state stays as it was (SPEC 3: the wamid
    // appended); after an escalation it is tagged with the new version alone, and an effect's
    // result, no message of the user's, is never named as the one answered (outside test QA53-F2).
    // An event is the bot's own systems speaking: a user who wrote nothing is told nothing of it
    // (outside test QA97-F2: "we could not handle your last message" for an event's mistake).
    const answered = batch.find(
      (m) =>
        m.replayed !== true && m.content.type !== 'event' && (stuck || m.content.type !== 'effect_result'),
    );
    const { snapshot, outbound } = this.records(
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

  /** An agent takes the session from the inbox (`engine/agent.ts`). */
  takeSession(
    key: SessionKey,
    agent: string,
    takeOver = false,
    seenVersion?: number,
    seenAgent?: string | null,
  ): Promise<SessionSnapshot | null> {
    return this.holding(() =>
      agentOps.takeSession(this.agentHost(), key, agent, takeOver, seenVersion, seenAgent),
    );
  }

  /** An agent writes to the user through the outbox (`engine/agent.ts`). */
  agentMessage(
    key: SessionKey,
    text: string,
    agent?: string,
    anyway?: boolean,
  ): Promise<agentOps.AgentSend | null> {
    return this.holding(() => agentOps.agentMessage(this.agentHost(), key, text, agent, anyway));
  }

  /** An agent hands the session back to the bot at `step` (`engine/agent.ts`). */
  handback(
    key: SessionKey,
    step: string,
    agent?: string,
    data?: FlowData,
    anyway?: boolean,
  ): Promise<SessionSnapshot | null> {
    return this.holding(() => agentOps.handback(this.agentHost(), key, step, agent, data, anyway));
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
      toOutbound: (s, replies, started) => this.records(s, replies, started),
      queue: this.agentQueue,
      settleHeld: (lease, prev) => this.settleHeld(lease, prev),
      // While the agent's request waits: quick retries only. A send that would wait longer (a
      // throttled gateway's Retry-After, a long backoff) stays unsent and a worker takes it up
      // (the release schedules the session again), so the dashboard never hangs.
      flushOutbox: (lease, held, committed) =>
        this.outbox.flush(agentRun(lease, held, committed), {
          maxAttempts: 3,
          maxWaitMs: AGENT_SEND_WAIT_MS,
        }),
      earlierSendsRecorded: (lease, held) => this.outbox.earlierSendsRecorded(agentRun(lease, held, [])),
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
    return this.holding(() => agentOps.adminReset(this.agentHost(), key, agent, anyway));
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
 * Whether this process cannot serve the session and leaves it for one that can (see
 * `leaveUnserved`): in distributed mode, a session at a step of a flow this process does not
 * serve, or written by a newer version of its flow. A session already held for an agent is not
 * left: no flow code reads it.
 */
function unservedHere(backend: Backend, base: SessionSnapshot | null, flow: Flow): base is SessionSnapshot {
  return (
    backend.kind === 'distributed' && base !== null && !base.needsAgent && notServedBy(flow, base) !== null
  );
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

/**
 * An agent's change as a turn of the outbox's: its holding sends (no effect runs here), and the
 * replies its commit wrote are claimed by it (`committed`).
 */
function agentRun(
  lease: LeaseGrant,
  held: agentOps.AgentHeld,
  committed: readonly OutboundRecord[],
): SessionRun {
  return {
    lease,
    held: {
      signal: held.sending,
      sending: held.sending,
      fresh: held.fresh,
      // No effect runs here: nothing asks the store.
      confirm: () => Promise.resolve(!held.sending.aborted),
      renewedAgo: held.renewedAgo,
      pause: () => Promise.resolve(),
      resume: () => undefined,
      stop: () => undefined,
    },
    effects: [],
    claims: claimed({ claims: new Set() }, committed),
  };
}

/** A turn holding a session's baton: the outbox's view of it, and the engine's own fields. */
interface SessionRun extends OutboxTurn {
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
  /**
   * The effects running in this holding, by record id (see Engine.startEffects). Absent for an
   * agent's flush, where no effect runs.
   */
  running?: Map<string, RunningEffect>;
  /** An effect started beside a send backoff has stored its result: the backoff is cut short. */
  resultReady?: boolean;
  /** What the session awaits, as last loaded or committed (see awaitedBy). */
  awaiting?: string | null;
  /** An agent asked for the baton while a send waited: the turn ends, replies left unsent. */
  yielded?: boolean;
  /** A send backoff was cut short by new messages: the turn goes on to apply them. */
  messagesWaiting?: boolean;
  /** The turn ends without waiting out its backoff (see waitBackoff): the session is due again after it. */
  releaseAfterMs?: number;
  /** This turn left the session untouched for a worker that serves it (see leaveUnserved). */
  leftUnserved?: boolean;
  /** The session as this turn's last batch loaded it (see leftWithoutBatch). */
  loaded?: SessionSnapshot | null;
  /** The last such cut applied nothing: backoffs are not cut for messages again this turn. */
  cutInVain?: boolean;
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
 * sent after the window's newest stay for a batch of their own, as the window says. A message
 * counts as stored within the window when it may have reached Baton within it (`arrivedBy`: a
 * stopped or starved process read it late, and it kept how late). `pending` is in mailbox
 * order, timestamps already trusted.
 */
export function withStragglers(pending: readonly StoredMessage[], windowEnd: number): StoredMessage[] {
  let newest = Number.NEGATIVE_INFINITY;
  for (const m of pending) if (arrivedBy(m) <= windowEnd && m.timestamp > newest) newest = m.timestamp;
  return pending.filter((m) => arrivedBy(m) <= windowEnd || m.timestamp <= newest);
}
