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
  agentWorker,
  handback as handbackChange,
  takeSession as takeChange,
  type AgentChange,
} from '../flow/agent.ts';
import type { Flow, FlowData } from '../flow/define.ts';
import { adminReset as resetChange, type TransitionEnv, type TransitionResult } from '../flow/transition.ts';
import { RESET_CANCELLED, sessionId, type SessionKey } from '../model/message.ts';
import type { OutboundRecord, SessionSnapshot } from '../model/session.ts';

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
  flushOutbox(
    lease: LeaseGrant,
    held: { sending: AbortSignal; fresh: () => boolean; renewedAgo: () => number },
    committed: readonly OutboundRecord[],
  ): Promise<void>;
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

/**
 * Takes the session's baton, applies `compute` to the stored session and commits the change
 * fenced, then sends the outbox. `null` when the session does not exist. A change that ends the
 * wait for an agent (`settle`) first records what the user wrote meanwhile as `held`.
 * `afterCommit` runs once the change is committed, the baton still held.
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
  role: 'agent' | 'admin' = 'agent',
  settle = false,
  afterCommit?: (lease: LeaseGrant) => Promise<void>,
): Promise<AgentChange | null> {
  for (let tries = 1; ; tries += 1) {
    const done = await changeOnce(host, key, compute, role, settle, afterCommit);
    if (done !== SUPERSEDED) return done;
    if (tries >= SUPERSEDED_TRIES) throw SessionBusyError.superseded(sessionId(key));
  }
}

/** A change whose commit was refused: nothing of it was written, it may start over. */
const SUPERSEDED = Symbol('superseded');

/** One try of {@link change}, under one baton. */
async function changeOnce(
  host: AgentHost,
  key: SessionKey,
  compute: (prev: SessionSnapshot, env: TransitionEnv) => AgentChange,
  role: 'agent' | 'admin',
  settle: boolean,
  afterCommit?: (lease: LeaseGrant) => Promise<void>,
): Promise<AgentChange | null | typeof SUPERSEDED> {
  const { backend } = host;
  const lease = await acquireForAgent(backend, key, `${host.workerId}:${role}`, host.lockTtlMs, () =>
    host.now(),
  );
  const held = host.hold(lease);
  try {
    const loaded = await backend.load(lease);
    if (!loaded) return null;
    let result: AgentChange;
    try {
      const prev = settle && loaded.needsAgent ? await host.settleHeld(lease, loaded) : loaded;
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
      await afterCommit?.(lease);
      if (result.outbound.length > 0) await host.flushOutbox(lease, held, result.outbound);
    } catch (err) {
      if (!superseded(err)) throw err;
    }
    return result;
  } finally {
    held.stop();
    await backend.releaseLease(lease);
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
  const r = await change(host, key, (prev, env) => {
    if (seenVersion !== undefined && prev.version !== seenVersion)
      throw new BatonError(
        'BATON_ERR_VERSION_CONFLICT',
        `the session changed since you saw it (version ${seenVersion}, now ${prev.version}); look again before taking it`,
      );
    return takeChange(prev, agent, { ...env, worker: agentWorker(agent) }, takeOver, seenAgent);
  });
  return r?.snapshot ?? null;
}

/** An agent writes `text` to the user; resolves once the outbox has been sent (or gave up for now). */
export async function agentMessage(
  host: AgentHost,
  key: SessionKey,
  text: string,
  agent?: string,
  anyway = false,
): Promise<AgentSend | null> {
  const r = await change(host, key, (prev, env) =>
    agentMessageChange(prev, host.flowFor(prev), text, {
      ...env,
      worker: agentWorker(actingAgent(prev, agent, anyway)),
    }),
  );
  if (!r) return null;
  const sent = r.outbound[0]!;
  const now = (await host.backend.outbound(key)).find((o) => o.id === sent.id) ?? sent;
  return { snapshot: r.snapshot, outbound: now };
}

/**
 * An agent's reset (`admin_reset`): a fresh session that sends nothing. `agent`: who resets,
 * named in the record's `worker` (`agent:<name>`), as a take or a handback is.
 */
export async function adminReset(
  host: AgentHost,
  key: SessionKey,
  agent?: string,
): Promise<SessionSnapshot | null> {
  const r = await change(
    host,
    key,
    (prev, env) => ({
      ...resetChange(prev, agent === undefined ? env : { ...env, worker: agentWorker(agent) }),
      outbound: [],
    }),
    'admin',
    true,
    (lease) => cancelUnsent(host.backend, lease),
  );
  return r?.snapshot ?? null;
}

/**
 * An agent's reset sends nothing (SPEC 4), so replies of the conversation it ends that are still
 * unsent (a gateway throttling them) are not sent after it either: each is marked failed, with
 * the reason, under the reset's baton. Effects in flight are left to finish: their results come
 * for a visit the session has left, and are recorded, not applied.
 */
async function cancelUnsent(backend: Backend, lease: LeaseGrant): Promise<void> {
  for (const rec of await backend.unsent(lease)) {
    if (rec.effect !== undefined) continue;
    await backend.updateOutbound(rec.id, {
      status: 'failed',
      attempts: rec.attempts,
      lastError: RESET_CANCELLED,
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
    'agent',
    true,
  );
  return r?.snapshot ?? null;
}
