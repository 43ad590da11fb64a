/**
 * Scripted load: every simulated user plays the same conversation file as `baton simulate
 * --script` (what the user types at each step, the replies expected), so any flow can be
 * load-tested. Lines are typed as in the simulator (a number picks a choice of the latest menu,
 * `/burst a | b`, `/image`, `/location`, `/react`, `/text`); `{{n}}` (the user's index),
 * `{{n4}}`/`{{n5}}` (the index as 4 or 5 digits) and `{{user}}` (the wa_id) make each user's words their own.
 *
 * Chaos applies as in the reference scenario: duplicate deliveries (same wamid), bursts
 * shuffled and fired concurrently. Each reply is rendered and checked against the script; the
 * verdict counts wrong replies, missing ones (lost) and extra ones (duplicate prompts).
 * @module
 */
import { inboundMessage, type UserInput } from '../src/simulate/inbound.ts';
import { renderMessage, type Pickable } from '../src/simulate/render.ts';
import {
  fill,
  fillDeep,
  mismatch,
  type ConversationScript,
  type ScriptExpectation,
} from '../src/simulate/script.ts';
import { burstParts, parseUserLine } from '../src/simulate/simulator.ts';
import { webhookBody, type CloudMessage } from './payloads.ts';
import { deliverer, recorder, type DriverContext, type DuplicateTiming, type UserTrace } from './scenario.ts';
import type { SinkCall } from './sink.ts';
import { shuffled, type Random } from './stats.ts';

/** Problems with a script for load (commands that only make sense in the chat); empty when fine. */
export function scriptProblems(script: ConversationScript): string[] {
  const problems: string[] = [];
  script.steps.forEach((step, i) => {
    const cmd = /^\/(\w+)/.exec(step.send.trim())?.[1]?.toLowerCase();
    if (cmd === 'user' || cmd === 'replay' || cmd === 'help' || cmd === 'quit' || cmd === 'exit') {
      problems.push(`step ${i + 1}: /${cmd} has no meaning under load (every user plays the script once)`);
    }
  });
  return problems;
}

export interface ScriptPlan {
  readonly index: number;
  readonly waId: string;
  readonly baseTs: number;
}

/** Runs one user through the script against Baton, recording what happened. */
export async function runScriptUser(
  plan: ScriptPlan,
  script: ConversationScript,
  ctx: DriverContext,
  rnd: Random,
  wamid: () => string,
): Promise<UserTrace> {
  const { client, sink, chaos, counters } = ctx;
  const { waId, index } = plan;
  const expectedReplies = script.steps.reduce((n, s) => n + s.expect.length, 0);
  const end = script.end;
  const trace: UserTrace = {
    waId,
    expected: end
      ? { ...(fillDeep(end, index, waId) as { step: string; data?: Record<string, unknown> }), partial: true }
      : null,
    expectedReplies,
    wrongReplies: [],
    sentIds: [],
    bursts: [],
    ackedIds: new Set(),
    rejected: [],
    missingReplies: [],
    completed: false,
    plannedMessages: script.steps.reduce((n, s) => n + (burstParts(s.send)?.length ?? 1), 0),
  };
  let ts = plan.baseTs;
  let menu: { wamid: string; picks: readonly Pickable[] } | undefined;
  let lastBotWamid: string | undefined;
  // Replies seen, by callback data (unique per reply): a second copy is the one repeat SPEC 1.6
  // allows after a crash (the verdict counts it), never the reply a step expects next.
  const seen = new Set<string>();

  const dup = (): DuplicateTiming | null => {
    if (chaos.duplicates <= 0 || rnd() >= chaos.duplicates) return null;
    const r = rnd();
    return r < 0.4 ? 'together' : r < 0.8 ? 'after-ack' : 'after-reply';
  };
  const record = recorder(ctx, trace);
  const deliver = deliverer(ctx, record);

  for (const [i, step] of script.steps.entries()) {
    if (ctx.signal?.aborted) break;
    const label = `step ${i + 1}`;
    const lines = (burstParts(step.send) ?? [step.send]).map((l) => fill(l, index, waId));
    const inputs = lines.map((l) => parseUserLine(l, { menu, lastBotWamid }));
    const bad = inputs.find((x): x is string => typeof x === 'string');
    if (bad !== undefined) {
      trace.wrongReplies!.push(`${label}: cannot send ${JSON.stringify(step.send)}: ${bad}`);
      break;
    }
    const burst = (inputs as UserInput[]).map((input) => {
      const id = wamid();
      const m = inboundMessage(ctx.channel, waId, input, id, ts++) as unknown as CloudMessage;
      return { m, duplicate: dup() };
    });
    for (const { m } of burst) {
      trace.sentIds.push(m.id);
      counters.sent += 1;
    }
    if (burst.length > 1) trace.bursts!.push(burst.map(({ m }) => m.id));
    const cursor = sink.callsTo(waId).length;
    const order = chaos.shuffle ? shuffled(burst, rnd) : burst;
    let sentAt: number[];
    if (chaos.concurrentBursts) {
      const wire = order.flatMap(({ m, duplicate }) => (duplicate === 'together' ? [m, m] : [m]));
      const results = await client.postAll(wire.map((m) => webhookBody(ctx.channel, [m])));
      results.forEach((r, k) => record(wire[k]!, r));
      sentAt = results.map((r) => r.sentAt);
      for (const { m, duplicate } of order) if (duplicate === 'after-ack') await deliver(m);
    } else {
      sentAt = [];
      for (const { m, duplicate } of order) {
        if (duplicate === 'together') {
          const [at] = await Promise.all([deliver(m), deliver(m)]);
          sentAt.push(at);
        } else {
          sentAt.push(await deliver(m));
          if (duplicate === 'after-ack') await deliver(m);
        }
      }
    }
    const triggerAt = Math.max(...sentAt);

    // The replies this step expects, in order.
    const got: SinkCall[] = [];
    let waitedAt = cursor;
    for (let at = cursor; got.length < step.expect.length; at++) {
      waitedAt = at;
      const reply = await sink.waitFor(waId, () => true, at, ctx.replyTimeoutMs, ctx.signal);
      if (reply === null) break;
      if (reply.callbackData !== undefined && seen.has(reply.callbackData)) continue;
      if (reply.callbackData !== undefined) seen.add(reply.callbackData);
      got.push(reply);
      counters.replies += 1;
      const latency = Math.max(0, reply.at - triggerAt);
      ctx.replyMs.push(latency);
      const stepName = reply.callback?.step ?? 'unknown';
      let byStep = ctx.replyMsByStep.get(stepName);
      if (byStep === undefined) ctx.replyMsByStep.set(stepName, (byStep = []));
      byStep.push(latency);
      ctx.lastReplyAt = Math.max(ctx.lastReplyAt, reply.at);
    }
    for (const reply of got) {
      const rendered = renderMessage(reply.body);
      lastBotWamid = reply.providerMessageId;
      if (rendered.picks.length > 0) menu = { wamid: reply.providerMessageId, picks: rendered.picks };
    }
    if (got.length < step.expect.length) {
      trace.missingReplies.push(`${label} (${JSON.stringify(step.expect[got.length])})`);
      // One that comes after the user stopped waiting is late, not lost (outside test QA137-F2).
      trace.missingFrom = waitedAt;
      trace.missingNext = true;
      trace.missingFor = burst.map(({ m }) => m.id);
      break;
    }
    let wrong = false;
    got.forEach((reply, k) => {
      const e = fillDeep(step.expect[k], index, waId) as ScriptExpectation;
      const rendered = renderMessage(reply.body);
      const why = mismatch(e, { rendered });
      if (why) {
        wrong = true;
        trace.wrongReplies!.push(
          `${label} reply ${k + 1}: ${why}; got: ${rendered.lines.join(' / ').slice(0, 160)}`,
        );
      }
    });
    for (const { m, duplicate } of burst) if (duplicate === 'after-reply') await deliver(m);
    if (wrong) break;
  }
  trace.completed =
    trace.missingReplies.length === 0 && trace.wrongReplies!.length === 0 && !ctx.signal?.aborted;
  counters.usersDone += 1;
  if (!trace.completed) counters.usersGaveUp += 1;
  return trace;
}
