/**
 * The outbox's storage: the replies a commit left to send, their status as sends go (or as
 * the provider reports them, see intake.ts), and the prompts they carried. Redis keeps the
 * unsent ones and the latest few per session; PostgreSQL keeps them all.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { FencedError } from '../../errors.ts';
import { EARLY_STATUS_TTL_MS, sessionId, type SessionKey } from '../../model/message.ts';
import type { DeadLetter, OutboundRecord, PromptRef } from '../../model/session.ts';
import type { LeaseGrant, OutboundPatch, OutboundUpdate } from '../types.ts';
import { ScriptCode } from './codes.ts';
import type { Context } from './context.ts';
import { entryPrefix, joinOutbound, type OutboundBodyRecord, type OutboundState } from './journal.ts';
import type { SessionKeys } from './keys.ts';
import { load } from './mailbox.ts';
import { asArray, asNumber, asString, pipeline, r, run } from './redis-calls.ts';
import type { StoredOutbound } from './pg-store.ts';
import type { PipelineOp, ScriptOp } from './scripts.ts';

/**
 * The sessions an outbound id may belong to, most likely first, when Baton's id scheme
 * (`<channel>:<user>:<...>`) is followed: user ids may hold colons, so every split is a
 * candidate. Each is only a guess, checked against Redis.
 */
function outboundIdCandidates(id: string): SessionKey[] {
  const parts = id.split(':');
  const out: SessionKey[] = [];
  for (let end = parts.length - 1; end >= 2; end--) {
    out.push({ channel: parts[0]!, user: parts.slice(1, end).join(':') });
  }
  return out;
}

/** Most outbound ids remembered per process (id -> session), for updateOutbound. */
const OUTBOUND_CACHE_MAX = 50_000;

/** The `outbound-read` call listing the session's unsent replies. */
export function unsentOp(sk: SessionKeys): PipelineOp {
  return { script: 'outbound-read', keys: [sk.unsent, sk.out, sk.outState, sk.pmid], args: ['unsent'] };
}

export async function unsent(ctx: Context, key: SessionKey): Promise<OutboundRecord[]> {
  const sk = ctx.keys.session(key);
  const cached = ctx.unsentAfterCommit.get(sk.member);
  if (cached !== undefined) {
    ctx.unsentAfterCommit.delete(sk.member);
    // Read with the lease holder's commit, and only that holder changes them since.
    if ('token' in key && key.token === cached.token) {
      const records = parseUnsent(cached.reply);
      rememberOutbound(ctx, records);
      return records;
    }
  }
  const read = async (): Promise<OutboundRecord[]> =>
    parseUnsent((await pipeline(ctx, 'unsent', [unsentOp(sk)]))[0]);
  const records = await read();
  rememberOutbound(ctx, records);
  if (records.length > 0) return records;
  // Nothing unsent, or Redis lost the session: make sure it is loaded. Only a holder loads it
  // (see mailbox.ts `load`); a reader reads PostgreSQL's.
  if ((await r('unsent', () => ctx.redis.exists(sk.state))) === 1) return records;
  if (!('token' in key))
    return (await ctx.pg.outboundOf(key, true)).map((o) => joinOutbound(o.record, o.state));
  await load(ctx, key);
  const reloaded = await read();
  rememberOutbound(ctx, reloaded);
  return reloaded;
}

/** The records of an `outbound-read unsent` reply (pairs of record and state JSON). */
function parseUnsent(raw: unknown): OutboundRecord[] {
  const reply = asArray(raw).map(asString);
  const out: OutboundRecord[] = [];
  for (let i = 0; i + 1 < reply.length; i += 2) {
    if (reply[i] === '' || reply[i + 1] === '') continue;
    out.push(
      joinOutbound(JSON.parse(reply[i]!) as OutboundBodyRecord, JSON.parse(reply[i + 1]!) as OutboundState),
    );
  }
  return out;
}

/** Remembers which session an outbound id belongs to (records this process committed or read). */
export function rememberOutbound(ctx: Context, records: readonly OutboundRecord[]): void {
  for (const r of records) {
    if (ctx.outboundSessions.size >= OUTBOUND_CACHE_MAX) {
      ctx.outboundSessions.delete(ctx.outboundSessions.keys().next().value!);
    }
    ctx.outboundSessions.set(r.id, { channel: r.channel, user: r.user });
  }
}

/** The `outbound-update` call recording `patch` on record `id` of the session of `sk`. */
function updateOp(sk: SessionKeys, key: SessionKey, id: string, patch: OutboundPatch, now: number): ScriptOp {
  return {
    script: 'outbound-update',
    keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal, sk.early],
    args: [
      'id',
      id,
      patch.status,
      patch.attempts ?? '',
      patch.providerMessageId ?? '',
      patch.lastError ?? '',
      entryPrefix({ id: randomUUID(), t: 'o', channel: key.channel, user: key.user }),
      // A status parked for the message id being recorded applies (see the script).
      EARLY_STATUS_TTL_MS,
      patch.claims ?? '',
      now,
      '',
      '',
      patch.notBefore ?? '',
    ],
  };
}

/**
 * Takes an `outbound-update` reply: false when Redis does not keep the record. Durable in Redis
 * once it answers (journaled); PostgreSQL gets it in the background, in both modes, so that a
 * PostgreSQL outage never makes the outbox take a done send for a failed one.
 */
function updated(ctx: Context, sk: SessionKeys, reply: unknown): boolean {
  if (asNumber(asArray(reply)[0]) === ScriptCode.NotFound) return false;
  ctx.deferred.defer(sk.member);
  return true;
}

export async function updateOutbound(ctx: Context, id: string, patch: OutboundPatch): Promise<void> {
  const apply = async (key: SessionKey): Promise<boolean> => {
    const sk = ctx.keys.session(key);
    ctx.unsentAfterCommit.delete(sk.member); // no longer as of the commit
    return updated(ctx, sk, await run(ctx, 'outbound', updateOp(sk, key, id, patch, ctx.now())));
  };
  const cached = ctx.outboundSessions.get(id);
  const candidates = cached ? [cached] : outboundIdCandidates(id);
  for (const key of candidates) if (await apply(key)) return;
  // Redis no longer keeps this record (or the id says nothing): PostgreSQL knows its session.
  const stored = await ctx.pg.getOutbound(id);
  if (!stored) return;
  const key = { channel: stored.channel, user: stored.user };
  if (await apply(key)) return;
  await restoreOutbound(ctx, id, key, stored);
  await apply(key);
}

/** Puts record `id` of session `key` back into Redis from PostgreSQL, unless Redis has it. */
async function restoreOutbound(
  ctx: Context,
  id: string,
  key: SessionKey,
  read?: StoredOutbound,
): Promise<void> {
  const stored = read ?? (await ctx.pg.getOutbound(id));
  if (stored?.channel !== key.channel || stored.user !== key.user) return;
  const sk = ctx.keys.session(key);
  const unsent = stored.state.status === 'pending' || stored.state.status === 'sending';
  await run(ctx, 'outbound', {
    script: 'outbound-restore',
    keys: [sk.out, sk.outState, sk.outIndex, sk.unsent],
    args: [id, stored.seq, JSON.stringify(stored.record), JSON.stringify(stored.state), unsent ? '1' : '0'],
  });
}

/**
 * Claims (`delta` 1) or gives back (-1) send attempts of the session's unsent records `ids`,
 * fenced by the lease (outbound-claim-4.lua). Durable in Redis once it answers (journaled), as
 * `updateOutbound` is; PostgreSQL gets it in the background. A record Redis no longer keeps is
 * put back from PostgreSQL first.
 */
export async function claimOutbound(
  ctx: Context,
  lease: LeaseGrant,
  ids: readonly string[],
  delta: 1 | -1,
): Promise<Array<number | null>> {
  const sk = ctx.keys.session(lease);
  const claim = async (some: readonly string[]): Promise<number[]> => {
    ctx.unsentAfterCommit.delete(sk.member); // no longer as of the commit
    const args: Array<string | number> = [lease.token, lease.fence, delta, some.length];
    for (const id of some) {
      args.push(id, entryPrefix({ id: randomUUID(), t: 'o', channel: lease.channel, user: lease.user }));
    }
    args.push(lease.holder);
    const reply = asArray(
      await run(ctx, 'outbound', {
        script: 'outbound-claim',
        keys: [sk.lock, sk.fence, sk.outState, sk.journal],
        args,
      }),
    ).map(asNumber);
    if (reply[0] === ScriptCode.Fenced) throw new FencedError(sessionId(lease), lease.fence);
    if (reply.slice(2).some((c) => c >= 0)) ctx.deferred.defer(sk.member);
    return reply.slice(2);
  };
  const counts = await claim(ids);
  const missing = ids.filter((_id, i) => counts[i] === ScriptCode.NotFound);
  if (missing.length > 0) {
    for (const id of missing) await restoreOutbound(ctx, id, lease);
    const again = await claim(missing);
    for (const [j, id] of missing.entries()) counts[ids.indexOf(id)] = again[j]!;
  }
  return counts.map((c) => (c >= 0 ? c : null));
}

/**
 * `update` as an op to ride in a pipeline of the session's own (its holder's `releaseOrTake`),
 * when this process knows the record is that session's; `done` takes the op's reply and
 * finishes the update (through `updateOutbound` should Redis no longer keep the record).
 * Null when the record's session is not known here: call `updateOutbound`.
 */
export function updateInPipeline(
  ctx: Context,
  key: SessionKey,
  update: OutboundUpdate,
): { op: PipelineOp; done(reply: unknown): Promise<void> } | null {
  const cached = ctx.outboundSessions.get(update.id);
  if (cached?.channel !== key.channel || cached.user !== key.user) return null;
  const sk = ctx.keys.session(key);
  ctx.unsentAfterCommit.delete(sk.member);
  return {
    op: updateOp(sk, key, update.id, update.patch, ctx.now()),
    async done(reply) {
      if (!updated(ctx, sk, reply)) await updateOutbound(ctx, update.id, update.patch);
    },
  };
}

export async function deadLetter(ctx: Context, letter: DeadLetter): Promise<void> {
  await ctx.pg.insertDeadLetters([letter]);
}

export async function resolvePrompts(
  ctx: Context,
  key: SessionKey,
  providerMessageIds: readonly string[],
): Promise<Map<string, PromptRef>> {
  const found = new Map<string, PromptRef>();
  if (providerMessageIds.length === 0) return found;
  const sk = ctx.keys.session(key);
  const reply = asArray(
    await run(ctx, 'prompts', {
      script: 'outbound-read',
      keys: [sk.unsent, sk.out, sk.outState, sk.pmid],
      args: ['pmid', ...providerMessageIds],
    }),
  ).map(asString);
  const missing: string[] = [];
  providerMessageIds.forEach((pmid, i) => {
    const json = reply[i * 2]!;
    if (json === '') missing.push(pmid);
    else {
      const r = JSON.parse(json) as OutboundBodyRecord;
      if (r.isPrompt) found.set(pmid, { step: r.step, version: r.version });
    }
  });
  if (missing.length > 0) {
    for (const [pmid, r] of await ctx.pg.outboundByProviderIds(key, missing)) {
      if (r.isPrompt) found.set(pmid, { step: r.step, version: r.version });
    }
  }
  return found;
}
