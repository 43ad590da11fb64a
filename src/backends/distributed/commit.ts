/**
 * Commit: a batch is checked (token, fence, version) and applied atomically in Redis, and in
 * the same script appended to the session's journal. Write-through then copies the journal to
 * PostgreSQL through the group committer before `commit` resolves; write-behind leaves it to
 * the stream flusher. PostgreSQL refuses a write whose fence is older than the row's. The
 * barriers here give admin reads, which go to PostgreSQL, their read-your-writes.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { FencedError, StorageUnavailableError, VersionConflictError } from '../../errors.ts';
import { logSessionId, sessionId, type SessionKey } from '../../model/message.ts';
import type { BatchCommit, CommitResult, LeaseGrant } from '../types.ts';
import { ScriptCode, scriptCodeName } from './codes.ts';
import type { Context } from './context.ts';
import type { GroupCopy } from './committer.ts';
import { entryPrefix, splitOutbound, type JournalEntry } from './journal.ts';
import { restore } from './mailbox.ts';
import { idleOp } from './maintenance.ts';
import { rememberOutbound } from './outbox.ts';
import {
  asArray,
  asNumber,
  asString,
  copyOrAnnounce,
  followUp,
  notifyOps,
  pipeline,
  r,
} from './redis-calls.ts';
import type { Arg, PipelineOp, ScriptOp } from './scripts.ts';
import { figuresAt } from './global-feed.ts';

/** Every store the mode writes through has the commit. */
const DURABLE: CommitResult = Object.freeze({ durable: true });
/** Applied and journaled in Redis; PostgreSQL's copy is pending. */
const JOURNALED: CommitResult = Object.freeze({ durable: false });

/** Most journal entries of one session copied to PostgreSQL per read. */
const JOURNAL_PAGE = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function commit(ctx: Context, lease: LeaseGrant, batch: BatchCommit): Promise<CommitResult> {
  const sk = ctx.keys.session(lease);
  ctx.prefetched.delete(sk.member); // read before this commit: stale after it
  const id = randomUUID();
  const outbound = batch.outbound.map((o) => splitOutbound(o, 1));
  const prefix = entryPrefix({
    id,
    t: 'c',
    channel: lease.channel,
    user: lease.user,
    fence: lease.fence,
    expectedVersion: batch.expectedVersion,
    at: ctx.now(),
    snapshot: batch.snapshot,
    records: batch.records,
    outbound,
    deadLetters: batch.deadLetters,
  });
  const consumed = [
    ...new Set([
      ...batch.consumed,
      ...batch.deadLetters.filter((d) => d.kind === 'inbound').map((d) => d.ref),
    ]),
  ];
  const args: Arg[] = [
    lease.token,
    lease.fence,
    batch.expectedVersion,
    batch.snapshot.version,
    JSON.stringify(batch.snapshot),
    prefix,
    ctx.outboundKeep,
    // Write-through: the head of the journal comes back with the commit, for the copy to
    // PostgreSQL that then takes it without reading it again.
    ctx.writeThrough ? JOURNAL_PAGE : 0,
    consumed.length,
    ...consumed,
    outbound.length,
  ];
  for (const o of outbound) {
    const unsent = o.state.status === 'pending' || o.state.status === 'sending';
    args.push(
      o.record.id,
      o.record.seq,
      JSON.stringify(o.record),
      JSON.stringify(o.state),
      unsent ? '1' : '0',
    );
  }
  const op: PipelineOp = {
    script: 'commit',
    keys: [
      sk.lock,
      sk.fence,
      sk.state,
      sk.mbox,
      sk.msgs,
      sk.out,
      sk.outState,
      sk.outIndex,
      sk.unsent,
      sk.pmid,
      sk.journal,
      sk.pv,
    ],
    args,
  };
  // Write-behind announces the journal in the same round trip (on a cluster, right after);
  // if the commit is refused, the flusher finds nothing new and moves on.
  const notice = ctx.writeThrough ? [] : notifyOps(ctx, [sk.member]);
  // The commit brings back the replies left to send (the outbox asks for them next) and, when
  // write-through, the journal's head.
  const ops = [op];
  // The commit's read of the journal's head covers the status changes journaled before it is
  // sent (see deferred-copies.ts).
  const mark = ctx.deferred.mark(sk.member);
  let replies = await pipeline(ctx, 'commit', ops, notice);
  let reply = asArray(replies[0]);
  if (asNumber(reply[0]) === ScriptCode.NeedLoad) {
    await restore(ctx, lease, sk);
    replies = await pipeline(ctx, 'commit', ops, notice);
    reply = asArray(replies[0]);
  }
  const code = asNumber(reply[0]);
  const journalHead = code === 0 ? asNumber(reply[5]) : 0;
  if (code === 0) {
    const unsent = reply.slice(6 + journalHead);
    ctx.unsentAfterCommit.set(sk.member, { token: lease.token, reply: unsent });
  }
  if (code === ScriptCode.Fenced) throw new FencedError(sessionId(lease), lease.fence);
  if (code === ScriptCode.VersionConflict)
    throw new VersionConflictError(sessionId(lease), batch.expectedVersion);
  if (code !== 0) throw new Error(`commit returned ${scriptCodeName(code)}`);
  ctx.unposted.delete(sk.member); // what the holder read is older than this
  ctx.globalFeed.post(figuresAt(sk.member, reply, 2));
  rememberOutbound(ctx, batch.outbound);
  if (!ctx.writeThrough) return DURABLE;
  ctx.journalReads.set(sk.member, { page: reply.slice(6, 6 + journalHead), mark });
  try {
    await makeDurable(ctx, lease, sk.member, id, lease.fence);
    ctx.notDurable.delete(sk.member);
    return DURABLE;
  } catch (err) {
    // Applied and journaled in Redis; PostgreSQL takes its copy when it is back (the flusher
    // was told). The commit took effect: say so rather than fail it.
    if (!(err instanceof StorageUnavailableError)) throw err;
    ctx.log.warn({ session: logSessionId(lease) }, 'commit applied in Redis; PostgreSQL copy pending');
    ctx.pgCopyFailedAt = ctx.now();
    if (ctx.intakeLog !== null) ctx.notDurable.add(sk.member);
    return JOURNALED;
  }
}

/** How long after a failed PostgreSQL copy every send first checks its session's copy, ms. */
const COPY_DOUBT_MS = 60_000;

/**
 * Whether the state behind a session's unsent replies is durable, so they may go. Where Redis
 * keeps nothing across a restart (the intake log on), a commit made while PostgreSQL was away is
 * in Redis alone: a reply sent from it, then Redis restarted, was a reply from a state that no
 * longer existed, and the user's next answer met the state before it (outside test QA33-F1:
 * PostgreSQL stopped, then Redis SIGKILLed, 28 of 60 users stalled). Such a session's journal is
 * copied first; while PostgreSQL is away the reply waits (false), as for a refusing gateway.
 * With a Redis that persists every write, or PostgreSQL healthy, this asks nothing.
 */
export async function sendable(ctx: Context, key: SessionKey | LeaseGrant): Promise<boolean> {
  if (ctx.intakeLog === null) return true;
  const member = ctx.keys.member(key);
  // And a reply sent just before this one (a turn's earlier reply) whose `sent` is in Redis alone
  // goes to PostgreSQL first: a Redis restarted empty then repeats at most the one send that was
  // in flight, as SPEC 1.6 allows, not every reply of the session's last moment (QA40-F1).
  const settled = !ctx.notDurable.has(member) && ctx.now() - ctx.pgCopyFailedAt > COPY_DOUBT_MS;
  if (settled && ctx.deferred.mark(member) === undefined) return true;
  try {
    await ctx.committer.flush(member);
    // A copy made after Redis lost the session copies nothing (its journal is gone with it) and
    // says nothing of the commit behind these replies, which PostgreSQL may have refused: the
    // lease must still be in Redis, or that commit is gone and its replies with it (outside test
    // QA79-F2: a reply sent for a commit Redis lost, then sent again by the next holder).
    // Only where the commit's own copy is in doubt: one copied already is in PostgreSQL.
    if (!settled && 'token' in key && !(await leaseInRedis(ctx, key))) return false;
  } catch (err) {
    if (!(err instanceof StorageUnavailableError)) throw err;
    ctx.pgCopyFailedAt = ctx.now();
    return false;
  }
  ctx.notDurable.delete(member);
  return true;
}

/** Whether Redis still holds `lease` under its token (a restarted Redis has no lease). */
async function leaseInRedis(ctx: Context, lease: LeaseGrant): Promise<boolean> {
  const holder = await pipeline(ctx, 'lease check', [
    { command: 'GET', args: [ctx.keys.session(lease).lock] },
  ]);
  const token = holder[0];
  return token !== null && token !== undefined && asString(token) === lease.token;
}

/**
 * Write-through: copies the session's journal to PostgreSQL (group commit), retrying for
 * `pgRetryMs`. If PostgreSQL stays away, the entry stays in the journal, the flusher is told,
 * and the caller gets StorageUnavailableError (the Redis part is applied; reload before retrying).
 */
async function makeDurable(
  ctx: Context,
  key: SessionKey,
  member: string,
  entryId: string,
  fence = 0,
): Promise<void> {
  const deadline = Date.now() + ctx.pgRetryMs;
  for (let delay = 50; ; delay *= 2) {
    try {
      const fenced = await ctx.committer.flush(member);
      if (fenced.has(entryId)) {
        // Fencing at work (a holder whose lease lapsed, paused or starved), not a fault: a warning,
        // like the engine's "batch refused; lease lost" (outside test QA57-F4: it paged as an error).
        // Unless Redis still holds the lease: then Redis and PostgreSQL disagree on the session's
        // fences, which no lapse explains (outside test QA91-F1 said it as a lapse): an error.
        const held = 'token' in key && (await leaseInRedis(ctx, key as LeaseGrant).catch(() => false));
        if (held)
          ctx.log.error(
            { session: sessionId(key), fence },
            "PostgreSQL refused a commit Redis accepted under a lease Redis still holds: the two disagree on the session's fences (its commits stay in Redis alone)",
          );
        else
          ctx.log.warn(
            { session: sessionId(key), fence },
            'PostgreSQL refused a commit: its row has a newer fence (this lease lapsed)',
          );
        throw new FencedError(sessionId(key), fence);
      }
      return;
    } catch (err) {
      if (!(err instanceof StorageUnavailableError)) throw err;
      if (Date.now() + delay > deadline) {
        await followUp(ctx, notifyOps(ctx, [member]));
        throw err;
      }
      await sleep(delay);
    }
  }
}

/**
 * A single node trims every journal of a group copy in one script call; a cluster keeps one call
 * per session (a script's keys must share a slot, and each session's keys have their own).
 */
function oneTrimPerSlot(ctx: Context, trims: readonly ScriptOp[]): readonly ScriptOp[] {
  if (ctx.opts.cluster === true || trims.length < 2) return trims;
  return [
    {
      script: 'journal-trim',
      keys: trims.flatMap((t) => t.keys),
      args: trims.flatMap((t) => t.args),
    },
  ];
}

/**
 * The group committer's work: copy these sessions' journals to PostgreSQL, then trim them. It
 * resolves once PostgreSQL holds the entries; `done` follows the trims.
 */
export async function copyJournals(ctx: Context, members: readonly string[]): Promise<GroupCopy> {
  const fenced = new Set<string>();
  const trimmed: Array<Promise<void>> = [];
  let todo = [...members];
  // Sessions whose commit (by their lease holder, in this process) read the journal's head: that
  // read stands for the first one here (any read of the head is a valid one: entries appended
  // since wait for the next copy). Their lease is held, so they are not idle either: release
  // asks about that.
  const early = new Map<string, unknown>();
  // What each session's first read covers of its deferred status changes (deferred-copies.ts).
  const marks = new Map<string, number | undefined>();
  // Each read is forgotten once the copy has succeeded, not before: a group copy that failed (a
  // neighbour's journal read as Redis died) and was tried again after Redis came back empty read
  // an empty journal, copied nothing and reported the commit durable, so its reply went out
  // (outside test QA79-F2). Copied again, the page changes nothing, or PostgreSQL refuses it.
  const reads = new Map<string, { page: unknown; mark: number | undefined }>();
  for (const m of todo) {
    const read = ctx.journalReads.get(m);
    if (read === undefined) continue;
    reads.set(m, read);
    early.set(m, read.page);
    marks.set(m, read.mark);
  }
  const held = new Set(early.keys());
  while (todo.length > 0) {
    const sks = todo.map((m) => ctx.keys.forMember(m));
    const toRead = todo.filter((m) => !early.has(m));
    for (const m of toRead) if (!marks.has(m)) marks.set(m, ctx.deferred.mark(m));
    const read =
      toRead.length === 0
        ? []
        : await pipeline(
            ctx,
            'journal read',
            toRead.map((m) => ({
              command: 'LRANGE',
              args: [ctx.keys.forMember(m).journal, 0, JOURNAL_PAGE - 1],
            })),
          );
    const readPages = new Map(toRead.map((m, i) => [m, read[i]]));
    const pages = todo.map((m) => early.get(m) ?? readPages.get(m));
    early.clear(); // only the first page comes early
    const entries: JournalEntry[] = [];
    const trims: ScriptOp[] = [];
    const again: string[] = [];
    pages.forEach((page, i) => {
      const raw = asArray(page).map(asString);
      if (raw.length === 0) return;
      const parsed = raw.map((j) => JSON.parse(j) as JournalEntry);
      entries.push(...parsed);
      trims.push({
        script: 'journal-trim',
        keys: [sks[i]!.journal],
        args: [parsed.length, ...parsed.map((e) => e.id)],
      });
      if (raw.length === JOURNAL_PAGE) again.push(todo[i]!);
    });
    if (entries.length === 0) break;
    for (const id of await ctx.pg.apply(entries)) fenced.add(id);
    // A session released before its journal reached PostgreSQL may now expire.
    // (Not for a session whose lease this process holds: its release asks.)
    const idle = pages.flatMap((p, k) =>
      asArray(p).length > 0 && !held.has(todo[k]!) && !ctx.held.has(todo[k]!) ? [idleOp(ctx, sks[k]!)] : [],
    );
    // Not awaited here: PostgreSQL holds the entries, so what waits on this copy may go on (the
    // committer waits for `done` before its next group). The trim leaves on this connection ahead
    // of any later read of these journals (the next page below included); if it is lost, the
    // entries are copied again, which changes nothing.
    trimmed.push(
      pipeline(ctx, 'journal trim', [...oneTrimPerSlot(ctx, trims), ...idle]).then(
        () => undefined,
        (err: unknown) =>
          ctx.log.warn({ err: String(err) }, 'journal trim failed; the entries will be copied again'),
      ),
    );
    todo = again;
  }
  for (const [m, read] of reads) if (ctx.journalReads.get(m) === read) ctx.journalReads.delete(m);
  for (const [m, mark] of marks) ctx.deferred.covered(m, mark);
  return { fenced, done: Promise.all(trimmed).then(() => undefined) };
}

/** A barrier gathering the callers of the current synchronous stretch, per context. */
const gathering = new WeakMap<Context, Promise<void>>();

/**
 * Read-your-writes for admin reads that span sessions: copies the journals of every session
 * still announced on the flush stream (entries stay there until a flusher has copied them).
 * Cheap when the flusher keeps up: the stream is then (nearly) empty. Reads started together (a
 * dashboard page's dead letters and failed replies) share one: it starts once their caller
 * yields, so it covers what each of them was asked after; a later call starts another.
 */
export function barrier(ctx: Context): Promise<void> {
  let shared = gathering.get(ctx);
  if (shared === undefined) {
    shared = Promise.resolve().then(() => {
      gathering.delete(ctx);
      return barrierNow(ctx);
    });
    gathering.set(ctx, shared);
  }
  return shared;
}

async function barrierNow(ctx: Context): Promise<void> {
  const entries = await r('barrier', () => ctx.redis.xrange(ctx.keys.flush, '-', '+', 'COUNT', 10_000));
  // And this process's status changes waiting for a copy (deferred-copies.ts), copied as
  // deferred copies are (a failed one is announced to the flusher).
  const waiting = new Set(ctx.deferred.take());
  const announced = new Set(
    entries
      .map(([, fields]) => fields[1])
      .filter((m): m is string => typeof m === 'string' && !waiting.has(m)),
  );
  await Promise.all([
    ...[...waiting].map((m) => copyOrAnnounce(ctx, m)),
    ...[...announced].map((m) => ctx.committer.flush(m)),
  ]);
}

/** Admin reads go to PostgreSQL: first copy whatever the session's journal still holds. */
export async function flushSession(ctx: Context, key: SessionKey): Promise<void> {
  const sk = ctx.keys.session(key);
  const len = await r('journal', () => ctx.redis.llen(sk.journal));
  if (len > 0) await ctx.committer.flush(sk.member);
}
