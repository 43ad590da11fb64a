/**
 * Outbound records: what a commit writes for the replies and effects of a state change, numbered
 * per session, with the callback data SPEC 3 pins, and which of them the committing holder
 * claims for its first attempt.
 * @module
 */
import { callbackNumbering, type Effect, type EffectStart } from '../flow/transition.ts';
import type { OutboundRecord, SessionSnapshot } from '../model/session.ts';

/**
 * Turns replies into outbound records, numbered after the session's last one, then the effects
 * started (records the outbox runs instead of sending). The second and later messages of one
 * state change carry `#<n>` after the version in their callback data. The first reply is
 * claimed for `holder`, the committing worker (see {@link claimFirst}).
 */
export function toOutbound(
  s: SessionSnapshot,
  effects: Effect[],
  started: readonly EffectStart[],
  createdAt: number,
  holder: string,
): { snapshot: SessionSnapshot; outbound: OutboundRecord[] } {
  let seq = s.outboundSeq;
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
  return { snapshot: { ...s, outboundSeq: seq }, outbound: claimFirst(outbound, holder) };
}

/** Adds the replies `committed` claimed for their committing holder (see `claimFirst`) to its claims. */
export function claimed(
  run: { readonly claims: Set<string> },
  committed: readonly OutboundRecord[],
): Set<string> {
  for (const r of committed) if (r.effect === undefined && (r.claims ?? 1) > 0) run.claims.add(r.id);
  return run.claims;
}

/**
 * A commit claims its first reply for the committing holder, whose attempt at it starts right
 * after the commit: no write on the hot path. Its later replies are claimed each with the record
 * of the one before (Outbox.flush), so a holder that dies between two replies leaves no
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
