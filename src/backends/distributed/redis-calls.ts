/**
 * How the backend's roles talk to Redis: every call goes through `r` (an unreachable Redis
 * becomes StorageUnavailableError), `run` / `pipeline` carry the global feed's queued writes
 * in the same round trip, and `followUp` sends the writes to global keys (ready queue, wake
 * channel, flush stream) that a per-session script cannot make itself (see index.ts on hash
 * tags).
 * @module
 */
import { StorageUnavailableError } from '../../errors.ts';
import type { Context } from './context.ts';
import { isRedisUnavailable } from './redis-errors.ts';
import type { PipelineOp, ScriptOp } from './scripts.ts';

export function asArray(v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
  return v as unknown[];
}

export function asNumber(v: unknown): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
  return n;
}

export function asString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  throw new Error(`unexpected Redis reply: ${JSON.stringify(v)}`);
}

export function redisError(ctx: Context, err: Error): void {
  ctx.lastRedisErrorMessage = err.message;
  // Before `init` is through, its own error says it, in one line (`baton migrate` printed a log
  // line and then the error; outside test QA6-L7); after `close`, the connections closing are
  // no news (a port already taken printed "Connection is closed." before its error; QA11-F3).
  if (!ctx.initialized || ctx.closed) return;
  // Connection errors repeat on every reconnect attempt: log at most one per 5 s.
  const t = Date.now();
  if (t - ctx.lastRedisError < 5000) return;
  ctx.lastRedisError = t;
  ctx.log.warn({ err: err.message }, 'Redis connection error');
}

/** Runs a Redis operation, turning "Redis is not there" into StorageUnavailableError. */
export async function r<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isRedisUnavailable(err)) throw new StorageUnavailableError(`Redis is unavailable (${what})`, err);
    throw err;
  }
}

export function run(ctx: Context, what: string, op: ScriptOp): Promise<unknown> {
  if (piggybacks(ctx)) return pipeline(ctx, what, [op]).then((replies) => replies[0]);
  return r(what, () => ctx.scripts.run(ctx.redis, op.script, op.keys, op.args));
}

/** `after`: notices that must reach Redis after `ops` (see ScriptSet.pipeline). */
export function pipeline(
  ctx: Context,
  what: string,
  ops: readonly PipelineOp[],
  after: readonly PipelineOp[] = [],
): Promise<unknown[]> {
  const taken = piggybacks(ctx) ? ctx.globalFeed.takeWrites() : null;
  const posts = taken?.ops ?? [];
  if (posts.length === 0) return r(what, () => ctx.scripts.pipeline(ctx.redis, ops, after));
  // The posts' own replies are not the caller's business; if the command fails, they go again.
  return r(what, () => ctx.scripts.pipeline(ctx.redis, ops, [...after, ...posts])).then(
    (replies) => replies.slice(0, -posts.length),
    (err: unknown) => {
      ctx.globalFeed.giveBack(taken!);
      throw err;
    },
  );
}

/**
 * Whether the global feed's queued writes go with the command about to go (single node: same
 * round trip, so they cost none). On a cluster they would wait for the command's answer: they
 * go alone.
 */
function piggybacks(ctx: Context): boolean {
  return ctx.opts.cluster !== true && ctx.globalFeed.owesNow;
}

export function scheduleOps(
  ctx: Context,
  schedules: ReadonlyArray<readonly [member: string, due: number]>,
  nx = false,
): PipelineOp[] {
  if (schedules.length === 0) return [];
  const pairs = schedules.flatMap(([member, due]) => [due, member]);
  return [
    { command: 'ZADD', args: nx ? [ctx.keys.ready, 'NX', ...pairs] : [ctx.keys.ready, ...pairs] },
    wakeOp(ctx),
  ];
}

/**
 * Whether the intake script (intake-n.lua) puts a session it schedules into the ready queue
 * itself: on a single node; on a Redis Cluster the queue lives in another slot.
 */
export function intakeQueues(ctx: Context): boolean {
  return ctx.opts.cluster !== true;
}

/**
 * What follows intake scripts that scheduled these sessions: the ready-queue entries and the
 * wake-up, or the wake-up alone where the scripts queued them ({@link intakeQueues}).
 */
export function afterIntakeOps(
  ctx: Context,
  schedules: ReadonlyArray<readonly [member: string, due: number]>,
  nx = false,
): PipelineOp[] {
  if (schedules.length === 0) return [];
  return intakeQueues(ctx) ? [wakeOp(ctx)] : scheduleOps(ctx, schedules, nx);
}

/** Tells every process's scheduler that sessions entered the ready queue. */
export function wakeOp(ctx: Context): PipelineOp {
  return { command: 'PUBLISH', args: [ctx.keys.wake, '1'] };
}

export function notifyOps(ctx: Context, members: Iterable<string>): PipelineOp[] {
  return [...new Set(members)].map((m) => ({
    command: 'XADD',
    args: [ctx.keys.flush, 'MAXLEN', '~', 100_000, '*', 'm', m],
  }));
}

/**
 * Copies these sessions' journals to PostgreSQL soon, through this process's group committer
 * (the change is durable in Redis already, journaled; the caller does not wait). Cheaper than a
 * notice to the flusher: no stream round trips, and the copy shares a transaction with other
 * sessions' copies. Should PostgreSQL be away, the flusher is told instead, and the reaper
 * re-announces journals left behind by a process that died meanwhile.
 */
export function copySoon(ctx: Context, members: Iterable<string>): void {
  for (const m of new Set(members)) copyOrAnnounce(ctx, m).catch(() => undefined);
}

/**
 * Copies one session's journal through this process's group committer; if that fails, the
 * flusher is told (see {@link copySoon}) and the promise rejects with the failure.
 */
export function copyOrAnnounce(ctx: Context, member: string): Promise<void> {
  return ctx.committer.flush(member).then(
    () => undefined,
    async (err: unknown) => {
      await followUp(ctx, notifyOps(ctx, [member]));
      throw err;
    },
  );
}

/**
 * Follow-up writes to global keys (ready queue, wake channel, flush stream). Losing them
 * delays work but loses nothing (the stall check, flag expiry and the reaper repair it; see
 * maintenance.ts), so a failure is logged. A failure may be a write that was made: after the
 * process stalls for longer than the command timeout, ioredis rejects commands whose replies
 * are already in the socket (its timers run before the socket is read).
 */
export async function followUp(ctx: Context, ops: readonly PipelineOp[]): Promise<boolean> {
  if (ops.length === 0) return true;
  try {
    await ctx.scripts.pipeline(ctx.redis, ops);
    return true;
  } catch (err) {
    ctx.log.warn(
      { err: String(err) },
      'ready-queue/flush follow-up failed; the stall check or the reaper will repair it',
    );
    return false;
  }
}
