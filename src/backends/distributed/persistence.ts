/**
 * Durability is checked, not assumed: Baton acknowledges a webhook once Redis has it, so it
 * reads Redis's persistence settings at start and names the one that could lose an
 * acknowledged webhook on a restart.
 * @module
 */
import type { Redis } from 'ioredis';
import { isRedisUnavailable } from './redis-errors.ts';

async function configGet(redis: Redis, name: string): Promise<string | undefined> {
  const reply = (await redis.config('GET', name)) as unknown;
  if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
  if (reply && typeof reply === 'object' && name in reply)
    return String((reply as Record<string, unknown>)[name]);
  return undefined;
}

/** What Redis would lose on its own: the setting, what it loses, and the setting that keeps it. */
export interface PersistenceGap {
  readonly setting: string;
  readonly loss: string;
  readonly fix: string;
}

/**
 * The setting that makes acknowledged webhooks losable in Redis alone, or null when AOF fsyncs
 * every write and no replica can take over without them.
 */
export async function persistenceGap(redis: Redis): Promise<PersistenceGap | null> {
  let appendonly: string | undefined;
  let appendfsync: string | undefined;
  let save: string | undefined;
  const fix = 'set appendonly yes and appendfsync always';
  try {
    appendonly = await configGet(redis, 'appendonly');
    appendfsync = await configGet(redis, 'appendfsync');
    save = await configGet(redis, 'save');
  } catch (err) {
    // Redis away is no answer about its settings (the watch in lifecycle.ts reads them again).
    if (isRedisUnavailable(err)) throw err;
    const why = err instanceof Error ? err.message : String(err);
    return {
      setting: `Redis persistence settings could not be read (CONFIG GET refused: ${why})`,
      loss: 'acknowledged webhooks may be lost when Redis restarts',
      fix: 'make sure appendonly is yes and appendfsync is always',
    };
  }
  if (appendonly !== 'yes') {
    return save
      ? {
          setting: `Redis appendonly is "${appendonly ?? '?'}" (RDB save "${save}" only)`,
          loss: 'webhooks acknowledged since the last snapshot are lost if Redis restarts',
          fix,
        }
      : {
          setting: `Redis appendonly is "${appendonly ?? '?'}" and save is "": Redis keeps nothing on disk`,
          loss: 'every acknowledged webhook not yet processed is lost if Redis restarts',
          fix,
        };
  }
  if (appendfsync !== 'always') {
    return {
      setting: `Redis appendfsync is "${appendfsync ?? '?'}"`,
      loss: 'up to a second of acknowledged webhooks can be lost if Redis or its host crashes',
      fix: 'set appendfsync always',
    };
  }
  // AOF on the master does not reach its replicas in step: one that takes over in a failover may
  // lack the last writes the master acknowledged (an outside test lost 22 of 60 webhooks so).
  const replicas = await connectedReplicas(redis);
  if (replicas > 0) {
    return {
      setting: `Redis replicates to ${replicas} replica${replicas === 1 ? '' : 's'}, asynchronously`,
      loss: 'webhooks acknowledged just before a failover are lost if a replica that lacks them takes over',
      fix: 'run Redis without replicas that can take over',
    };
  }
  return null;
}

/** How many replicas the node has (0 when INFO cannot tell). */
async function connectedReplicas(redis: Redis): Promise<number> {
  try {
    const info = await redis.info('replication');
    return Number(/^connected_slaves:(\d+)/m.exec(info)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * One line when Redis may evict Baton's keys (a memory limit with a policy other than
 * `noeviction`: an evicted dedupe marker lets a redelivered webhook be applied twice, an evicted
 * mailbox loses messages); null when it may not, or when the settings cannot be read.
 */
export async function evictionWarning(redis: Redis): Promise<string | null> {
  // INFO, not CONFIG: managed Redis (ElastiCache, ...) often refuses CONFIG but answers INFO.
  let info: string;
  try {
    info = await redis.info('memory');
  } catch {
    return null;
  }
  const field = (name: string): string | undefined => new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1];
  const maxmemory = field('maxmemory');
  const policy = field('maxmemory_policy');
  if (maxmemory === undefined || maxmemory === '0' || policy === undefined || policy === 'noeviction')
    return null;
  return `Redis maxmemory-policy is "${policy}" with maxmemory ${maxmemory}: when memory runs short Redis EVICTS keys, and an evicted dedupe marker or mailbox breaks "once" and "nothing lost"; set maxmemory-policy noeviction`;
}
