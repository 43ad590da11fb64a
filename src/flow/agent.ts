/**
 * The pure side of a hand-off to a person (SPEC section 4): an agent takes a session waiting
 * for one, writes to the user, and hands the session back to the bot at a step. Each function
 * returns the next snapshot, its transition records and the replies to put in the outbox; the
 * engine (`engine/agent.ts`) commits them under the session's lease and sends the replies.
 * No I/O, no clock (the time comes in `env`).
 * @module
 */
import { BatonError, FlowRuntimeError } from '../errors.ts';
import type { StoredMessage } from '../model/message.ts';
import type {
  OutboundBody,
  OutboundRecord,
  SessionSnapshot,
  TransitionKind,
  TransitionRecord,
} from '../model/session.ts';
import { dataFieldKind, schemaIssues, type Flow, type FlowData, type StepDef } from './define.ts';
import { handbackDataError } from './handback-data.ts';
import { blank } from '../providers/screen.ts';
import {
  activeNow,
  handbackTransition,
  migratedData,
  notServedBy,
  waiting,
  type TransitionEnv,
  type TransitionResult,
} from './transition.ts';

/** What an agent operation commits. */
export interface AgentChange {
  readonly snapshot: SessionSnapshot;
  readonly records: TransitionRecord[];
  readonly outbound: OutboundRecord[];
}

/** The name of the agent holding the session, if one took it and it still waits for an agent. */
export function agentOf(s: SessionSnapshot): string | null {
  return s.agent !== undefined && s.needsAgent && s.agent.version === s.version ? s.agent.name : null;
}

/**
 * Who acts in an agent's message or handback: the agent named, else the one who has the session.
 * One who names themself while another agent has it is refused unless they say so (`anyway`):
 * two agents never answer one user unknowingly (outside test QA2-4: only the console asked).
 */
export function actingAgent(
  prev: SessionSnapshot,
  agent: string | undefined,
  anyway: boolean,
): string | null {
  const holder = agentOf(prev);
  if (agent !== undefined && holder !== null && agent !== holder && !anyway) {
    throw new BatonError(
      'BATON_ERR_TAKEN_BY_OTHER',
      `${holder} has this session, not ${agent}; send "confirm": true to do it anyway`,
      { details: { holder } },
    );
  }
  return agent ?? holder;
}

/** The `worker` recorded for an agent's change: who did it. */
export function agentWorker(name: string | null): string {
  return `agent:${name ?? 'unknown'}`;
}

/**
 * Whether `batch` holds the result of the effect `s` awaits. When the flow failed on such a batch
 * for good, that result will never be applied, and every later message would wait for it,
 * silently, for good: the session stops awaiting it and goes to an agent instead
 * ({@link escalatedOnResult}). The engine does it when it dead-letters the batch; `testFlow` as
 * the failure is thrown (outside test QA103-F12: a test's session kept awaiting, and each later
 * message failed the same way).
 */
export function failedOnAwaited(s: SessionSnapshot, batch: readonly StoredMessage[]): boolean {
  const awaited = s.awaiting;
  return (
    awaited !== undefined &&
    batch.some((m) => m.content.type === 'effect_result' && m.content.effectId === awaited.id)
  );
}

/**
 * The session `s`, whose flow failed for good on the awaited effect's result, with an agent:
 * no longer awaiting, `needs_agent`, its hand-off reason naming the effect and the error's code,
 * and the `escalated` record of that change.
 */
export function escalatedOnResult(
  s: SessionSnapshot,
  code: string,
  env: TransitionEnv,
): { snapshot: SessionSnapshot; record: TransitionRecord } {
  const { awaiting, ...rest } = s;
  const snapshot = waiting(
    {
      ...rest,
      version: s.version + 1,
      needsAgent: true,
      retryCount: 0,
      handoffReason: `the flow failed on the result of effect ${awaiting?.name ?? '?'}: ${code}`,
    },
    'escalated',
    env.nowMs,
  );
  return { snapshot, record: changeRecord(snapshot, 'escalated', s.step, env) };
}

/** The transition record of a change that consumed no message (an agent's, or an escalation). */
export function changeRecord(
  s: SessionSnapshot,
  kind: TransitionKind,
  from: string | null,
  env: TransitionEnv,
): TransitionRecord {
  return {
    version: s.version,
    from_step: from,
    to_step: s.step,
    kind,
    message_ids: [],
    at: new Date(env.nowMs).toISOString(),
    worker: env.worker,
    fencing_token: env.fence,
  };
}

/**
 * `s` with an agent's act now: an agent at work keeps the session alive (`activeAt`), so it does
 * not expire under them (outside test D3).
 */
function agentActive(s: SessionSnapshot, env: TransitionEnv): SessionSnapshot {
  return activeNow(s, Math.floor(env.nowMs / 1000));
}

/** An outbound record for `s`, numbered after its last one; `suffix` ends the callback data. */
function outboundFor(
  s: SessionSnapshot,
  flow: Flow,
  body: OutboundBody,
  isPrompt: boolean,
  env: TransitionEnv,
  suffix: (seq: number) => string,
): { snapshot: SessionSnapshot; outbound: OutboundRecord } {
  const seq = s.outboundSeq + 1;
  const step = s.step ?? flow.start;
  const outbound: OutboundRecord = {
    id: `${s.channel}:${s.user}:${seq}`,
    channel: s.channel,
    user: s.user,
    seq,
    flow: s.flow,
    step,
    version: s.version,
    ...(s.provider !== undefined ? { provider: s.provider } : {}),
    to: s.waId ?? s.userId ?? s.user,
    body,
    callbackData: `baton:${s.flow}:${step}:${s.version}${suffix(seq)}`,
    isPrompt,
    status: 'pending',
    attempts: 0,
    createdAt: env.nowMs,
  };
  return { snapshot: { ...s, outboundSeq: seq }, outbound };
}

/** `s` taken by agent `name` now (a claim on its current version, see `agentOf`). */
function claimedBy(s: SessionSnapshot, name: string, env: TransitionEnv): SessionSnapshot {
  return { ...s, agent: { name, at: env.nowMs, version: s.version } };
}

/**
 * An agent takes the session. One already waiting for an agent keeps its version (the claim is
 * bookkeeping: `needs_agent` stays true, the bot stays silent). One the bot is still serving is
 * escalated by the agent: version + 1, a record of kind `escalated`, nothing sent. Like a flow's
 * own hand-off, that ends the visit: an effect it was waiting for may still finish (its work
 * was asked for), but its result comes for a visit that is over and is recorded, not applied,
 * and the user's messages are `held` instead of waiting for it.
 */
export function takeSession(
  prev: SessionSnapshot,
  agent: string,
  env: TransitionEnv,
  takeOver = false,
  /** Whom the agent saw holding it (null: nobody), when they say: someone else now is refused. */
  seenAgent?: string | null,
): AgentChange {
  // Two agents never answer one user unknowingly: taking a session another agent has is explicit,
  // and a take-over takes it from the agent seen holding it (two at once: the second is refused,
  // not told it has the session the first just took).
  const holder = agentOf(prev);
  if (holder !== null && holder !== agent && !takeOver) {
    throw new BatonError(
      'BATON_ERR_TAKEN_BY_OTHER',
      `${holder} has taken this session; send "take_over": true to take it over`,
      { details: { holder } },
    );
  }
  if (seenAgent !== undefined && holder !== seenAgent && holder !== agent) {
    throw new BatonError(
      'BATON_ERR_TAKEN_BY_OTHER',
      `${holder ?? 'nobody'} has this session now, not ${seenAgent ?? 'nobody'} as you saw; look again before taking it`,
      holder === null ? undefined : { details: { holder } },
    );
  }
  if (prev.needsAgent) {
    return {
      snapshot: agentActive(claimedBy(prev, agent, env), env),
      records: [],
      outbound: [],
    };
  }
  const version = prev.version + 1;
  const { awaiting: _awaiting, ...visitOver } = prev;
  const snapshot: SessionSnapshot = waiting(
    agentActive(
      {
        ...visitOver,
        version,
        needsAgent: true,
        agent: { name: agent, at: env.nowMs, version },
        handoffReason: `${agent} took it from the bot`,
      },
      env,
    ),
    'escalated',
    env.nowMs,
  );
  return { snapshot, records: [changeRecord(snapshot, 'escalated', prev.step, env)], outbound: [] };
}

/** An agent's message to a session the bot serves: refused (the agent takes it first). */
export function notWithAgent(): BatonError {
  return new BatonError('BATON_ERR_NOT_WITH_AGENT', 'the bot is serving this session: take it first');
}

/** Whether a reply's callback data is an agent's message's (see {@link agentMessage}). */
export function isAgentMessage(callbackData: string): boolean {
  return /:agent-\d+$/.test(callbackData);
}

/**
 * An agent writes to the user: one text reply in the outbox, recorded as `agent_message`,
 * version unchanged. Its callback data is `baton:<flow>:<step>:<version>:agent-<n>`, `<n>` being
 * the reply's place in the session's send order, so no two carry the same value.
 */
export function agentMessage(
  prev: SessionSnapshot,
  flow: Flow,
  text: string,
  env: TransitionEnv,
  /**
   * The agent who writes (see `actingAgent`). One writing to a session nobody took takes it, so
   * a colleague who then writes too is asked first (outside test QA63-F3: two agents answered one
   * user, neither told of the other).
   */
  by: string | null = null,
): AgentChange {
  if (!prev.needsAgent) throw notWithAgent();
  const claimed = by !== null && agentOf(prev) === null ? claimedBy(prev, by, env) : prev;
  const { snapshot, outbound } = outboundFor(
    agentActive(claimed, env),
    flow,
    { type: 'text', text },
    false,
    env,
    (n) => `:agent-${n}`,
  );
  return {
    snapshot,
    records: [changeRecord(snapshot, 'agent_message', prev.step, env)],
    outbound: [outbound],
  };
}

/**
 * The data keys `step` needs (its `needs`) that `data` does not have: a handback there is refused.
 * A blank text (white space, invisible characters) counts as none: the step's prompt quotes what
 * it needs, and an agent's empty field reached the user as "Thanks, ." (outside test QA63-F7,
 * QA102-F3).
 */
export function missingNeeds(step: Pick<StepDef, 'needs'>, data: FlowData): string[] {
  return step.needs.filter((k) => {
    const v = data[k];
    return v === undefined || v === null || (typeof v === 'string' && blank(v));
  });
}

/** Whether an agent may hand a session with `data` back at `step` now. */
export function handbackOpen(step: Pick<StepDef, 'needs' | 'handback'>, data: FlowData): boolean {
  return step.handback && missingNeeds(step, data).length === 0;
}

/**
 * Why a hand-back of `prev` at `stepId` is refused before its data is looked at, in the order
 * the admin API answers: the flow not served here, no such step, the session not with an agent,
 * a step not for hand-backs. Undefined when none of these refuses it.
 */
export function handbackRefusal(prev: SessionSnapshot, flow: Flow, stepId: string): BatonError | undefined {
  // A process whose flow is not the session's, or is older than the one that wrote it (an admin
  // API served by an old process during a rolling deploy), would stamp the session with its own
  // flow and version: older workers then ran it, and the newer flow upgraded its data a second
  // time (outside test QA68-F3).
  const unserved = notServedBy(flow, prev);
  if (unserved === 'other_flow')
    return new BatonError(
      'BATON_ERR_FLOW_NOT_SERVED_HERE',
      `the session is flow ${prev.flow}'s, which this process does not serve (BATON_FLOWS): hand it back through a process that serves it`,
    );
  if (unserved === 'newer_version')
    return new BatonError(
      'BATON_ERR_FLOW_NOT_SERVED_HERE',
      `the session was written by version ${prev.flowVersion} of flow ${flow.id}; this process serves version ${flow.version}: hand it back through a process running the newer flow`,
    );
  const step = flow.steps.get(stepId);
  if (step === undefined)
    return new BatonError(
      'BATON_ERR_UNKNOWN_STEP',
      `flow ${flow.id} has no step "${stepId}" (its steps: ${[...flow.steps.keys()].join(', ')})`,
    );
  if (!prev.needsAgent)
    return new BatonError('BATON_ERR_NOT_WITH_AGENT', 'the session is not waiting for an agent');
  if (!step.handback)
    return new BatonError(
      'BATON_ERR_STEP_NOT_FOR_HANDBACK',
      `flow ${flow.id} does not let an agent hand a session back at "${stepId}" (entering it does what only the user may ask for); choose another step`,
    );
  return undefined;
}

/**
 * The agent hands the session back to the bot at `step` (see `handbackTransition`): checked
 * here, computed by the flow core so the step is entered exactly as a flow would enter it.
 */
export function handback(
  prev: SessionSnapshot,
  flow: Flow,
  stepId: string,
  env: TransitionEnv,
  /** Data the agent sets on the way (what they settled with the user), merged into the session's. */
  set: FlowData = {},
): TransitionResult {
  const refusal = handbackRefusal(prev, flow, stepId);
  if (refusal !== undefined) throw refusal;
  const step = flow.steps.get(stepId)!;
  // What the admin API's body schema lets an agent set, checked by the same schema, so
  // `testFlow`'s handback refuses what the API refuses (outside test QA41-F1).
  const refused = handbackDataError(set);
  if (refused !== undefined) throw new BatonError('BATON_ERR_BAD_REQUEST', refused);
  // Stored by an earlier version of the flow: upgraded as a batch would upgrade it (`migrate`,
  // then the schema's reading, its defaults), before the step's needs are checked and its prompt
  // is rendered. Entered with the data as stored, the step read fields the new version no longer
  // has, and the session was stamped with the new version, so `migrate` never ran on it (outside
  // test QA70-F1: the items of a basket lost, or a 500 from the step's prompt).
  const upgraded = prev.flowVersion < flow.version;
  const migrated: unknown = migratedData(flow, prev, env);
  // A `migrate` with a branch that returns nothing (outside test QA71-H2): spread, it was no data
  // at all, and the hand-back went through with the user's data gone.
  if (typeof migrated !== 'object' || migrated === null || Array.isArray(migrated))
    throw new BatonError(
      'BATON_ERR_BAD_REQUEST',
      `flow ${flow.id}'s migrate from version ${prev.flowVersion} returned ${Array.isArray(migrated) ? 'an array' : String(migrated)}, not the session's data`,
    );
  const data = { ...(migrated as FlowData), ...set };
  const given = Object.keys(set).length > 0;
  const checked = !given && !upgraded ? undefined : flow.data?.safeParse(data);
  if (checked !== undefined && !checked.success) {
    const stored = upgraded
      ? ` (the session's data, stored by version ${prev.flowVersion} and upgraded${given ? ', with the data given' : ''})`
      : '';
    throw new BatonError(
      'BATON_ERR_BAD_REQUEST',
      `flow ${flow.id}'s data schema refuses that data${stored}: ${schemaIssues(checked.error)}`,
    );
  }
  // A key the schema drops (a zod object's unknown keys) is one the flow does not have.
  const kept = checked?.success === true ? (checked.data as Record<string, unknown>) : undefined;
  const unknown = kept === undefined ? [] : Object.keys(set).filter((k) => !(k in kept));
  if (unknown.length > 0) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `flow ${flow.id}'s data has no ${unknown.join(', ')}`);
  }
  const next = kept ?? data;
  const missing = missingNeeds(step, next);
  if (missing.length > 0) {
    // The steps open now, by name: a key a step computes (a list of slots) cannot be set by hand,
    // and "an earlier step" left the agent to guess which (outside test QA7-F3).
    const open = [...flow.steps.values()].filter((s) => handbackOpen(s, next)).map((s) => s.id);
    // A key the schema takes no flat value for (a list, an object) is not the agent's to set:
    // told to set it, the agent tried and got the schema's refusal (outside test QA103-F8). The
    // console reads the key's kind the same way, and offers no field for it.
    const computed = missing.filter((k) => dataFieldKind(flow, k)?.type === 'other');
    const how =
      computed.length === 0
        ? `set it with the handback's "data" (strings, numbers, booleans), or hand it back`
        : `${computed.join(', ')} ${computed.length > 1 ? 'are' : 'is'} set by a step (no string, number or boolean): no handback's "data" sets ${computed.length > 1 ? 'them' : 'it'}; hand it back`;
    throw new BatonError(
      'BATON_ERR_STEP_NEEDS_DATA',
      `step "${stepId}" needs ${missing.join(', ')}, which the session does not have; ${how} at a step open now: ${open.length > 0 ? open.join(', ') : 'none'}`,
    );
  }
  // Served here (checked above): the session's version is this flow's, or now upgraded to it.
  const upgradedPrev = { ...prev, data: next, flowVersion: flow.version };
  try {
    return handbackTransition(flow, agentActive(upgradedPrev, env), stepId, env);
  } catch (err) {
    // A prompt the agent's own data makes unsendable (a link with a space, a title too long) is
    // the agent's to mend: said to them, not a bare 500 (outside test QA74-F7).
    if (given && err instanceof FlowRuntimeError && err.code === 'BATON_ERR_FLOW_REPLY')
      throw new BatonError(
        'BATON_ERR_BAD_REQUEST',
        `step "${stepId}"'s prompt, with the data given, breaks a WhatsApp limit: ${err.detail}`,
      );
    throw err;
  }
}
