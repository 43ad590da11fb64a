/**
 * The agent operations of the engine (SPEC section 4): take a session, write to its user,
 * hand it back to the bot. Each follows `Engine.adminReset`: take the session's baton (waiting
 * out a busy holder up to the lock TTL), load, compute (pure, `flow/agent.ts`), commit fenced,
 * then send the session's outbox in order under the same baton, renewed while it sends. So an
 * agent's text has the ordering and retry guarantees of every reply.
 * @module
 */
import type { Backend, LeaseGrant } from '../backends/types.ts';
import { BatonError, FencedError, SessionBusyError } from '../errors.ts';
import { LeaseLostError } from './lease-manager.ts';
import {
  actingAgent,
  agentMessage as agentMessageChange,
  notWithAgent,
  agentWorker,
  handback as handbackChange,
  handbackRefusal,
  takeSession as takeChange,
  type AgentChange,
} from '../flow/agent.ts';
import type { Flow, FlowData } from '../flow/define.ts';
import { adminReset as resetChange, type TransitionEnv, type TransitionResult } from '../flow/transition.ts';
import {
  refuseSharedChat,
  RESET_CANCELLED,
  RESET_CANCELLED_MAYBE_SENT,
  sessionId,
  type SessionKey,
} from '../model/message.ts';
import type { OutboundRecord, SessionSnapshot } from '../model/session.ts';

/** A holding of an agent's change, as its sends need it (see AgentHost.hold). */
export interface AgentHeld {
  readonly sending: AbortSignal;
  readonly fresh: () => boolean;
  readonly renewedAgo: () => number;
}

/** What the agent operations need of the engine. */
export interface AgentHost {
  readonly backend: Backend;
  readonly workerId: string;
  readonly lockTtlMs: number;
  now(): number;
  env(lease: LeaseGrant): TransitionEnv;
  flowFor(s: SessionSnapshot | null): Flow;
  /** Renews the lease while `fn`'s sending runs; `sending` aborts when the lease is lost. */
  hold(lease: LeaseGrant): {
    signal: AbortSignal;
    sending: AbortSignal;
    fresh: () => boolean;
    renewedAgo: () => number;
    stop: () => void;
  };
  /**
   * Sends the session's unsent replies; `committed` are the records this lease's commit wrote
   * (its claim to send them is the commit's own: see OutboundRecord.claims).
   */
  flushOutbox(lease: LeaseGrant, held: AgentHeld, committed: readonly OutboundRecord[]): Promise<void>;
  /**
   * Waits for the replies an earlier holder may still be sending (its lease cleared mid-send) to
   * be recorded, while it is alive (see Outbox.earlierSendsRecorded).
   */
  earlierSendsRecorded(lease: LeaseGrant, held: AgentHeld): Promise<void>;
  /**
   * Records the messages waiting in the mailbox of a session that waits for an agent as `held`
   * (committed under `lease`), and returns the session as it then is. A handback or an agent's
   * reset comes after them: they were written to the agent, not to the bot.
   */
  settleHeld(lease: LeaseGrant, prev: SessionSnapshot): Promise<SessionSnapshot>;
  /** Turns a flow core result's replies and started effects into outbound records. */
  toOutbound(
    s: SessionSnapshot,
    replies: TransitionResult['effects'],
    started: TransitionResult['started'],
  ): { snapshot: SessionSnapshot; outbound: OutboundRecord[] };
  /** Runs this process's agent changes of one session one at a time, in the order asked. */
  readonly queue: AgentQueue;
}

/**
 * Each session's agent changes, one after another in the order they were asked for. Without it,
 * whichever waiting change got the baton next committed first: an API client posting five
 * messages 400 ms apart while a slow gateway held the session saw them reach the user as A0, A1,
 * A4, A2, A3 (outside test QA31-F1). Across processes serving the admin API the order is the
 * order in which each process gets the baton.
 */
export class AgentQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(session: string, fn: () => Promise<T>): Promise<T> {
    const mine = (this.tails.get(session) ?? Promise.resolve()).then(fn);
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(session, tail);
    void tail.then(() => {
      if (this.tails.get(session) === tail) this.tails.delete(session);
    });
    return mine;
  }
}

/** An agent's reply as committed, and where its send stands once the outbox was flushed. */
export interface AgentSend {
  readonly snapshot: SessionSnapshot;
  readonly outbound: OutboundRecord;
}

const POLL_MS = 50;

/**
 * Takes the session's baton for an agent's or admin's change: waits out a busy holder up to
 * the lock TTL (and a second), meanwhile saying it waits ({@link Backend.wantLease}) so that a
 * holder only waiting out a throttled gateway yields it. Throws SessionBusyError (retryable)
 * when the baton did not come.
 */
export async function acquireForAgent(
  backend: Backend,
  key: SessionKey,
  holder: string,
  lockTtlMs: number,
  now: () => number,
): Promise<LeaseGrant> {
  const started = now();
  const deadline = started + lockTtlMs + 1000;
  let wantedUntil = 0;
  for (;;) {
    const lease = await backend.acquireLease(key, holder, lockTtlMs);
    if (lease) {
      if (wantedUntil > 0) await backend.wantLease(key, 0).catch(() => undefined);
      return lease;
    }
    if (now() > deadline) throw new SessionBusyError(sessionId(key), now() - started);
    if (now() > wantedUntil - 1000) {
      wantedUntil = now() + 3000;
      await backend.wantLease(key, 3000);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** How many times a change starts over when its baton is cleared or taken over before it commits. */
const SUPERSEDED_TRIES = 3;

/** How long a take waits between looks at a mailbox the bot is still to apply, ms. */
const BOT_FIRST_POLL_MS = 100;

interface ChangeOptions {
  readonly role?: 'agent' | 'admin';
  /** The change ends the wait for an agent: what the user wrote meanwhile is recorded `held` first. */
  readonly settle?: boolean;
  /**
   * The change starts a wait for an agent: messages the user sent before it, still in the
   * mailbox of a session the bot serves, are the bot's to apply first (not `held`: they came
   * before the wait), for up to the lock TTL and a second.
   */
  readonly botFirst?: boolean;
  /** Runs once the change is committed, the baton still held. */
  readonly afterCommit?: (lease: LeaseGrant, held: AgentHeld) => Promise<void>;
}

/**
 * Takes the session's baton, applies `compute` to the stored session and commits the change
 * fenced, then sends the outbox. `null` when the session does not exist. A change that ends the
 * wait for an agent (`settle`) first records what the user wrote meanwhile as `held`; one that
 * starts it (`botFirst`) first lets the bot apply what the user wrote before it. Changes of one
 * session in this process run one at a time, in the order asked (`AgentQueue`).
 *
 * Another agent may clear the baton (or a worker take it over once cleared) while the change is
 * made: its commit is then refused and nothing of it is written, so it starts over, on the
 * session as it now is (a few times, then SessionBusyError: retryable). Once committed the change
 * stands: losing the baton while its replies go out leaves them to the session's next holder.
 */
async function change(
  host: AgentHost,
  key: SessionKey,
  compute: (prev: SessionSnapshot, env: TransitionEnv) => AgentChange,
  opts: ChangeOptions = {},
): Promise<AgentChange | null> {
  return host.queue.run(sessionId(key), async () => {
    const botUntil = opts.botFirst === true ? host.now() + host.lockTtlMs + 1000 : 0;
    for (let tries = 1; ;) {
      const done = await changeOnce(host, key, compute, opts, host.now() < botUntil);
      if (done === BOT_FIRST) {
        await new Promise((r) => setTimeout(r, BOT_FIRST_POLL_MS));
        continue;
      }
      if (done !== SUPERSEDED) return done;
      if (tries >= SUPERSEDED_TRIES) throw SessionBusyError.superseded(sessionId(key));
      tries += 1;
    }
  });
}

/** A change whose commit was refused: nothing of it was written, it may start over. */
const SUPERSEDED = Symbol('superseded');

/** The bot has messages of the user's to apply before this change: it waits and looks again. */
const BOT_FIRST = Symbol('bot first');

/** One try of {@link change}, under one baton. */
async function changeOnce(
  host: AgentHost,
  key: SessionKey,
  compute: (prev: SessionSnapshot, env: TransitionEnv) => AgentChange,
  opts: ChangeOptions,
  botFirst: boolean,
): Promise<AgentChange | null | typeof SUPERSEDED | typeof BOT_FIRST> {
  const { backend } = host;
  const role = opts.role ?? 'agent';
  const lease = await acquireForAgent(backend, key, `${host.workerId}:${role}`, host.lockTtlMs, () =>
    host.now(),
  );
  const held = host.hold(lease);
  /** The bot is to apply what waits first: the baton goes back, the session to the ready queue's front. */
  let botTurn = false;
  try {
    const loaded = await backend.load(lease);
    if (!loaded) return null;
    // Given back, so that a worker applies them: at the front of the ready queue, where a backlog
    // does not keep it past this wait (outside test QA114-F1: a take during a backlog of 7-33 s
    // waited its 6 s and recorded the user's earlier answer `held`, not applied).
    if (botFirst && !loaded.needsAgent && loaded.awaiting === undefined) {
      botTurn = (await backend.pending(lease, 1)).length > 0;
      if (botTurn) return BOT_FIRST;
    }
    let result: AgentChange;
    try {
      const prev = opts.settle === true && loaded.needsAgent ? await host.settleHeld(lease, loaded) : loaded;
      result = compute(prev, host.env(lease));
      await backend.commit(lease, {
        expectedVersion: prev.version,
        snapshot: result.snapshot,
        records: result.records,
        outbound: result.outbound,
        consumed: [],
        deadLetters: [],
      });
    } catch (err) {
      if (superseded(err)) return SUPERSEDED;
      throw err;
    }
    // Committed: the change stands, whatever happens to the baton from here on.
    try {
      await opts.afterCommit?.(lease, held);
      if (result.outbound.length > 0) await host.flushOutbox(lease, held, result.outbound);
    } catch (err) {
      if (!superseded(err)) throw err;
    }
    return result;
  } finally {
    held.stop();
    await backend.releaseLease(lease, 0, botTurn);
  }
}

/** The change's baton was cleared or taken over: the store refused its write. */
function superseded(err: unknown): boolean {
  return err instanceof FencedError || err instanceof LeaseLostError;
}

/** An agent takes the session (escalating it if the bot was still serving it). */
export async function takeSession(
  host: AgentHost,
  key: SessionKey,
  agent: string,
  takeOver = false,
  seenVersion?: number,
  seenAgent?: string | null,
): Promise<SessionSnapshot | null> {
  refuseSharedChat(key);
  const r = await change(
    host,
    key,
    (prev, env) => {
      if (seenVersion !== undefined && prev.version !== seenVersion)
        throw new BatonError(
          'BATON_ERR_VERSION_CONFLICT',
          `the session changed since you saw it (version ${seenVersion}, now ${prev.version}); look again before taking it`,
        );
      return takeChange(prev, agent, { ...env, worker: agentWorker(agent) }, takeOver, seenAgent);
    },
    { botFirst: true },
  );
  return r?.snapshot ?? null;
}

/**
 * Refuses an agent's act on a session the bot serves at once, with `refusal`'s error (none: the
 * act goes on), not after waiting for the baton behind a turn: an effect's attempt may hold it
 * for seconds (outside test QA100-F2: a 409 that needed no baton came after 3.4 s). Read from the
 * stored session without the lease; the act is checked again under the baton, where it counts.
 */
async function refuseWhileBotServes(
  host: AgentHost,
  key: SessionKey,
  refusal: (s: SessionSnapshot) => BatonError | undefined,
): Promise<void> {
  const seen = await host.backend.load(key);
  if (seen?.needsAgent !== false) return;
  const err = refusal(seen);
  if (err !== undefined) throw err;
}

/** An agent writes `text` to the user; resolves once the outbox has been sent (or gave up for now). */
export async function agentMessage(
  host: AgentHost,
  key: SessionKey,
  text: string,
  agent?: string,
  anyway = false,
): Promise<AgentSend | null> {
  refuseSharedChat(key);
  await refuseWhileBotServes(host, key, () => notWithAgent());
  const r = await change(host, key, (prev, env) => {
    const by = actingAgent(prev, agent, anyway);
    return agentMessageChange(prev, host.flowFor(prev), text, { ...env, worker: agentWorker(by) }, by);
  });
  if (!r) return null;
  const sent = r.outbound[0]!;
  const now = (await host.backend.outbound(key)).find((o) => o.id === sent.id) ?? sent;
  return { snapshot: r.snapshot, outbound: now };
}

/**
 * An agent's reset (`admin_reset`): a fresh session that sends nothing. `agent`: who resets,
 * named in the record's `worker` (`agent:<name>`), as a take or a handback is. One who names
 * themself while a colleague has the session is refused unless `anyway`, as for a message: a
 * reset ends the colleague's conversation (outside test QA63-F4: it went through in one click,
 * and the colleague learnt of it from a refused send).
 */
export async function adminReset(
  host: AgentHost,
  key: SessionKey,
  agent?: string,
  anyway = false,
): Promise<SessionSnapshot | null> {
  const r = await change(
    host,
    key,
    (prev, env) => ({
      ...resetChange(
        prev,
        agent === undefined ? env : { ...env, worker: agentWorker(actingAgent(prev, agent, anyway)) },
      ),
      outbound: [],
    }),
    {
      role: 'admin',
      settle: true,
      afterCommit: async (lease, held) => {
        await host.earlierSendsRecorded(lease, held);
        await cancelUnsent(host.backend, lease);
      },
    },
  );
  return r?.snapshot ?? null;
}

/**
 * An agent's reset sends nothing (SPEC 4), so replies of the conversation it ends that are still
 * unsent (a gateway throttling them) are not sent after it either: each is marked failed, with
 * the reason, under the reset's baton (after the one an earlier holder may have on its way, whose
 * lease an agent cleared: see AgentHost.earlierSendsRecorded). Effects in flight are left to
 * finish: their results come for a visit the session has left, and are recorded, not applied.
 */
async function cancelUnsent(backend: Backend, lease: LeaseGrant): Promise<void> {
  for (const rec of await backend.unsent(lease)) {
    if (rec.effect !== undefined) continue;
    await backend.updateOutbound(rec.id, {
      status: 'failed',
      attempts: rec.attempts,
      // A claim counted, no answer recorded: an attempt may have gone out (said so, not "before it
      // was sent"); a refused attempt gave its claim back.
      lastError: (rec.claims ?? 0) > 0 ? RESET_CANCELLED_MAYBE_SENT : RESET_CANCELLED,
    });
  }
}

/**
 * The agent hands the session back to the bot at `step`, whose prompt is sent; `data` (checked by
 * the flow's schema) is merged into the session's first, for what the agent settled with the user.
 */
export async function handback(
  host: AgentHost,
  key: SessionKey,
  step: string,
  agent?: string,
  data?: FlowData,
  anyway = false,
): Promise<SessionSnapshot | null> {
  refuseSharedChat(key);
  // The refusal is the one the checks under the baton would give first (a step the flow has not
  // is named before the session's state).
  await refuseWhileBotServes(host, key, (s) => handbackRefusal(s, host.flowFor(s), step));
  const r = await change(
    host,
    key,
    (prev, env) => {
      const t = handbackChange(
        prev,
        host.flowFor(prev),
        step,
        { ...env, worker: agentWorker(actingAgent(prev, agent, anyway)) },
        data,
      );
      return { ...host.toOutbound(t.snapshot, t.effects, t.started), records: t.records };
    },
    { settle: true },
  );
  return r?.snapshot ?? null;
}
