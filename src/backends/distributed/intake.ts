/**
 * Intake: a webhook's messages go to their sessions' mailboxes (deduplicated by id) and its
 * statuses to the outbound records they name, in one pipeline; the sessions made due are then
 * added to the ready queue through the global feed (see index.ts on why that is a follow-up).
 * @module
 */
import { randomUUID } from 'node:crypto';
import {
  ALIAS_SEARCH_DEPTH,
  EARLY_STATUS_TTL_MS,
  readLate,
  statusLastError,
  type InboundMessage,
  type SessionKey,
  type WebhookBatch,
} from '../../model/message.ts';
import type { IngestResult } from '../types.ts';
import { ScriptCode } from './codes.ts';
import type { Context } from './context.ts';
import { entryPrefix } from './journal.ts';
import { asArray, asNumber, intakeQueues, pipeline } from './redis-calls.ts';
import type { PipelineOp, ScriptOp } from './scripts.ts';
import { figuresAt, type MailboxFigures } from './global-feed.ts';
import { aliasOps, routeByUserId } from './user-aliases.ts';

/**
 * The `intake` script call that stores one message (`stored`: its StoredMessage JSON without
 * `seq`) in its session's mailbox; `replay` skips the dedupe check (a dead letter's replay).
 */
export function intakeOp(
  ctx: Context,
  key: SessionKey,
  id: string,
  stored: string,
  replay = false,
): ScriptOp {
  const sk = ctx.keys.session(key);
  const args = [id, stored.slice(0, -1), ctx.opts.dedupeTtlSec, ctx.opts.bufferMs, replay ? '1' : '0'];
  const keys = [sk.seen(id), sk.mbox, sk.msgs, sk.seq, sk.lock, sk.sched, sk.pv];
  if (!intakeQueues(ctx)) return { script: 'intake', keys, args };
  return { script: 'intake', keys: [...keys, ctx.keys.ready], args: [...args, sk.member] };
}

/** A message's key in the intake log's set of consumed ones (intake-log.ts). */
export function consumedKey(m: { channel: string; user: string; id: string }): string {
  return `${m.channel}\n${m.user}\n${m.id}`;
}

export async function ingest(ctx: Context, batch: WebhookBatch): Promise<IngestResult> {
  // Redis back from an outage: whether it still keeps every write is known first, and what it
  // lost goes back first (lifecycle.ts).
  if (ctx.persistenceCheck !== null) await ctx.persistenceCheck;
  if (ctx.restoring !== null) await ctx.restoring;
  // A message named by a business-scoped user id alone goes to the phone number's session it
  // came with last (user-aliases.ts).
  const given = await routeByUserId(ctx, batch.messages);
  const now = Math.min(ctx.now(), batch.receivedAt ?? Number.POSITIVE_INFINITY);
  const late = readLate(batch);
  const jsons = given.map((m) => JSON.stringify({ ...m, storedAt: now, ...late }));
  // Where Redis would not keep them across a restart, the messages go to PostgreSQL's intake log
  // first (intake-log.ts); those PostgreSQL has consumed already are redeliveries a restarted
  // Redis no longer recognises: duplicates, not stored again.
  const logged =
    ctx.intakeLog !== null && given.length > 0 ? await ctx.intakeLog.append(given, jsons, now) : null;
  const messages: InboundMessage[] = [];
  const ops: PipelineOp[] = [];
  for (const [i, m] of given.entries()) {
    if (logged?.consumed.has(consumedKey(m))) continue;
    messages.push(m);
    // Its place in the log goes with it (StoredMessage.logged): the reaper may store another
    // message of this webhook from the log meanwhile, and the batch's order must not depend on
    // which of the two got there first.
    const place = logged?.places[i];
    const json =
      place === undefined ? jsons[i]! : `${jsons[i]!.slice(0, -1)},"logged":[${place[0]},${place[1]}]}`;
    ops.push(intakeOp(ctx, m, m.id, json));
  }
  for (const s of batch.statuses) {
    const key = { channel: s.channel, user: s.recipient };
    const sk = ctx.keys.session(key);
    const lastError = statusLastError(s) ?? '';
    ops.push({
      script: 'outbound-update',
      keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal, sk.early],
      args: [
        'pmid',
        s.messageId,
        s.status,
        '',
        '',
        lastError,
        entryPrefix({ id: randomUUID(), t: 'o', ...key }),
        // Not recorded yet? Parked for when the send is (see the script).
        EARLY_STATUS_TTL_MS,
        '',
        ctx.now(),
        // About a copy of a reply sent but never recorded? Kept as the reply's alias.
        s.bizOpaqueCallbackData ?? '',
        ALIAS_SEARCH_DEPTH,
      ],
    });
  }
  // The user ids the messages bring with phone numbers are bound to those numbers' sessions, and
  // the messages named by user id alone keep their route (their replies, last, are not read).
  ops.push(...aliasOps(ctx, messages));
  // This ingress's intake watermark rides first (before the messages it may be about to store).
  const watermark = ctx.intake?.take();
  const replies = (await pipeline(ctx, 'ingest', watermark ? [watermark, ...ops] : ops)).slice(
    watermark ? 1 : 0,
  );

  let accepted = 0;
  let duplicates = given.length - messages.length;
  let statuses = 0;
  const schedules: Array<[string, number]> = [];
  const figures = new Map<string, MailboxFigures>();
  messages.forEach((m, i) => {
    const reply = asArray(replies[i]);
    const code = asNumber(reply[0]);
    if (code === ScriptCode.Duplicate) {
      duplicates++;
      return;
    }
    accepted++;
    const member = ctx.keys.member(m);
    if (code > 0) schedules.push([member, code]);
    const f = figuresAt(member, reply, 1);
    if ((figures.get(member)?.version ?? -1) < f.version) figures.set(member, f);
  });
  const journaled: string[] = [];
  const unknown: number[] = [];
  batch.statuses.forEach((s, i) => {
    const reply = asArray(replies[messages.length + i]);
    if (asNumber(reply[0]) === ScriptCode.NotFound) {
      unknown.push(i);
      // An alias learnt is journaled: it reaches PostgreSQL like a status change.
      if (asNumber(reply[1] ?? 0) === 1)
        journaled.push(ctx.keys.member({ channel: s.channel, user: s.recipient }));
    } else {
      statuses++;
      journaled.push(ctx.keys.member({ channel: s.channel, user: s.recipient }));
    }
  });
  // Status changes reach PostgreSQL in the background (group commit, deferred-copies.ts), in both
  // modes: a PostgreSQL outage must not make intake answer 503 (Redis holds them in the journal
  // meanwhile).
  for (const m of journaled) ctx.deferred.defer(m);
  // The mailboxes' figures and the sessions made due join the global feed: the webhooks stored
  // in one event-loop turn share one stats post and one ready-queue write, riding with the next
  // command or sent at the end of the turn. Not awaited: the webhook is stored, and its answer
  // need not wait another round trip. On a single node the intake script has put the sessions it
  // scheduled in the ready queue already (this adds the wake-up); on a cluster, if these writes
  // are lost, the schedule flag's expiry and the reaper reschedule the sessions.
  for (const f of figures.values()) ctx.globalFeed.post(f);
  if (!intakeQueues(ctx)) for (const [member, due] of schedules) ctx.globalFeed.hint(member, due);
  else if (schedules.length > 0) ctx.globalFeed.wake();
  // Statuses of records Redis no longer keeps (or never did: another app's sends): PostgreSQL's
  // copy, all of them in one statement (Meta sends up to 1,000 in one POST; one round trip each
  // kept such a webhook waiting for tens of seconds on a busy database).
  if (unknown.length > 0) {
    const updates = unknown.map((i) => {
      const s = batch.statuses[i]!;
      return {
        providerMessageId: s.messageId,
        channel: s.channel,
        status: s.status,
        lastError: statusLastError(s),
      };
    });
    const hits = await ctx.pg.statusesByProviderId(updates);
    const ops: PipelineOp[] = [];
    hits.forEach((hit, j) => {
      if (!hit) return;
      statuses++;
      // Keep Redis's copy (if any, e.g. under the user's other id) in step; PostgreSQL has it already.
      const sk = ctx.keys.session(hit.key);
      ops.push({
        script: 'outbound-update',
        keys: [sk.out, sk.outState, sk.outIndex, sk.unsent, sk.pmid, sk.journal, sk.early],
        args: ['id', hit.id, updates[j]!.status, '', '', updates[j]!.lastError ?? '', '', ''],
      });
    });
    if (ops.length > 0) await pipeline(ctx, 'status', ops);
  }
  return { accepted, duplicates, statuses };
}
