/**
 * Durability is checked, not assumed: Baton acknowledges a webhook once Redis has it, so it
 * reads Redis's persistence settings at start and names the one that could lose an
 * acknowledged webhook on a restart.
 * @module
 */
import type { Redis } from 'ioredis';

async function configGet(redis: Redis, name: string): Promise<string | undefined> {
  const reply = (await redis.config('GET', name)) as unknown;
  if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
  if (reply && typeof reply === 'object' && name in reply)
    return String((reply as Record<string, unknown>)[name]);
  return undefined;
}

/** One line naming the setting that makes acknowledged webhooks losable, or null when AOF fsyncs every write. */
export async function persistenceWarning(redis: Redis): Promise<string | null> {
  let appendonly: string | undefined;
  let appendfsync: string | undefined;
  let save: string | undefined;
  try {
    appendonly = await configGet(redis, 'appendonly');
    appendfsync = await configGet(redis, 'appendfsync');
    save = await configGet(redis, 'save');
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return `Redis persistence settings could not be read (CONFIG GET refused: ${why}); make sure appendonly is yes and appendfsync is always, or acknowledged webhooks can be lost when Redis restarts`;
  }
  if (appendonly !== 'yes') {
    return save
      ? `Redis appendonly is "${appendonly ?? '?'}" (RDB save "${save}" only): webhooks acknowledged since the last snapshot are LOST if Redis restarts; set appendonly yes and appendfsync always`
      : `Redis appendonly is "${appendonly ?? '?'}" and save is "": Redis keeps nothing on disk, every acknowledged webhook not yet processed is LOST if Redis restarts; set appendonly yes and appendfsync always`;
  }
  if (appendfsync !== 'always') {
    return `Redis appendfsync is "${appendfsync ?? '?'}": up to a second of acknowledged webhooks can be LOST if Redis or its host crashes; set appendfsync always`;
  }
  return null;
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
