/**
 * Scheduling: `nextReady` hands each due session to one waiting caller. The ready queue holds
 * every live session (see index.ts); a claim hides the most overdue one for `claimTimeoutMs`,
 * and wake-ups published by other processes cut the scheduler's sleep short (scheduler.ts).
 * @module
 */
import type { SessionKey } from '../../model/message.ts';
import type { Context } from './context.ts';
import { startMaintenance } from './maintenance.ts';
import { subscriberClient } from './redis-client.ts';
import { asArray, asString, redisError, run } from './redis-calls.ts';
import { ReadyScheduler, type ClaimResult } from './scheduler.ts';

export async function nextReady(ctx: Context, signal: AbortSignal): Promise<SessionKey | null> {
  const member = await ensureScheduler(ctx).next(signal);
  return member === null ? null : ctx.keys.parseMember(member);
}

function ensureScheduler(ctx: Context): ReadyScheduler {
  if (ctx.scheduler) return ctx.scheduler;
  const scheduler = new ReadyScheduler({
    claim: () => claim(ctx),
    unclaim: async (member, claimScore) => {
      await run(ctx, 'unclaim', {
        script: 'ready-cas',
        keys: [ctx.keys.ready],
        args: [member, claimScore, Math.floor(ctx.now())],
      });
    },
    now: ctx.now,
    onError: (err) => ctx.log.warn({ err: String(err) }, 'nextReady: claim failed; retrying'),
    maxIdleMs: ctx.opts.maxIdleMs ?? 1000,
  });
  ctx.scheduler = scheduler;
  if (ctx.closed) scheduler.close();
  // Wake-ups from other processes; without them the scheduler still looks every maxIdleMs.
  const sub = subscriberClient(ctx.redis);
  sub.on('error', (err: Error) => redisError(ctx, err));
  sub.on('message', () => scheduler.wake());
  // A wake-up published before the subscription took effect would be missed: look once more
  // as soon as it has (and after every reconnect, which re-subscribes).
  sub.on('ready', () => scheduler.wake());
  sub
    .subscribe(ctx.keys.wake)
    .then(() => scheduler.wake())
    .catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'wake subscription failed'));
  ctx.sub = sub;
  // A process that takes work also keeps the reaper and the retention purge going.
  startMaintenance(ctx);
  return scheduler;
}

async function claim(ctx: Context): Promise<ClaimResult> {
  const now = ctx.now();
  const claimScore = `${Math.ceil(now + ctx.claimTimeoutMs)}.25`;
  const reply = asArray(
    await run(ctx, 'claim', {
      script: 'ready-claim',
      keys: [ctx.keys.ready],
      args: [Math.floor(now), claimScore],
    }),
  );
  const member = asString(reply[0]);
  if (member !== '') {
    return { member, claimScore };
  }
  const earliest = asString(reply[1]);
  return { earliest: earliest === '' ? null : Number(earliest) };
}
