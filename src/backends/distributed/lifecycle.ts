/**
 * Starting and stopping the backend (connections, scripts, migrations, the stream flusher),
 * and what it reports about itself: health and group-commit counters.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { ConfigError, StorageUnavailableError } from '../../errors.ts';
import { VOLATILE_DEFERRED_COPY_MS, type Context } from './context.ts';
import { StreamFlusher } from './flusher.ts';
import { migrate } from './migrate.ts';
import { evictionWarning, persistenceGap } from './persistence.ts';
import { IntakeLog, restoreAfterOutages } from './intake-log.ts';
import { masterNodes, nodeAddress, onNodeChange, plainRedisAt, readerClient } from './redis-client.ts';
import { followUp, r, redisError } from './redis-calls.ts';
import { isRedisUnavailable } from './redis-errors.ts';

/** The consumer group of the stream flushers (one consumer per process). */
const FLUSH_GROUP = 'flushers';

/**
 * How long a process starting waits for Redis to be ready before it stops, ms. A cluster that is
 * down (a master lost, a failover under way) left a starting process waiting forever without a
 * word, even after the cluster was back (outside test QA37-F5); stopped, it is restarted.
 */
const START_CONNECT_MS = 15_000;

/** Connects the client, or rejects once `ms` have passed (the client is then disconnected). */
async function connectWithin(ctx: Context, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctx.redis.disconnect();
      const why =
        ctx.opts.cluster === true
          ? `the cluster was not ready (every slot served: cluster_state:ok) within ${ms / 1000} s`
          : `no answer within ${ms / 1000} s`;
      reject(Object.assign(new Error(why), { timedOut: true }));
    }, ms);
  });
  const connecting = ctx.redis.connect();
  // A cluster mid-failover refuses the first attempt (or leaves it pending) and the client goes
  // on trying by itself: it is ready when its 'ready' comes. Waiting on the first attempt alone, a
  // worker started during a failover stopped after 15 s though the cluster was whole within a
  // second (outside test QA56-F3).
  const ready =
    ctx.opts.cluster === true
      ? new Promise<void>((resolve) => ctx.redis.once('ready', () => resolve()))
      : null;
  const connected = ready === null ? connecting : Promise.race([connecting.catch(() => ready), ready]);
  try {
    await Promise.race([connected, late]);
    // Ready is not yet serving: a cluster whose failover is under way answers CLUSTERDOWN for a
    // moment still, and the start stopped on it (QA56-F3). A key's slot answering says it serves.
    if (ctx.opts.cluster === true) await Promise.race([serving(ctx), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once the cluster answers a command on a key (no CLUSTERDOWN, TRYAGAIN or the like). */
async function serving(ctx: Context): Promise<void> {
  for (;;) {
    try {
      await ctx.redis.exists(ctx.keys.owner);
      return;
    } catch (err) {
      if (!isRedisUnavailable(err) || ctx.redis.status === 'end') throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/**
 * Binds the Redis key prefix to the PostgreSQL copy it is the hot state of (database and schema),
 * or stops the start when another one has it: two deployments on one prefix and two schemas
 * shared mailboxes, leases and journals, and each schema got part of the other's sessions
 * (outside test QA37-F7: 117 of 260 acknowledged messages in the other schema, 21 version gaps).
 */
async function claimPrefix(ctx: Context): Promise<boolean> {
  // PostgreSQL's first question at start: unreachable, it is named as a bad setting is, with the
  // address tried and why (it said "PostgreSQL is unavailable (store-identity)": outside test QA89-F3).
  const rows = await ctx.pg.query('store-identity').catch((err: unknown) => {
    throw err instanceof StorageUnavailableError
      ? StorageUnavailableError.unreachable(
          'PostgreSQL',
          'DATABASE_URL',
          ctx.opts.databaseUrl,
          err.cause ?? err,
        )
      : err;
  });
  const identity = String(rows[0]?.identity);
  const owner = await r('init', () => ctx.redis.set(ctx.keys.owner, identity, 'NX', 'GET'));
  if (owner !== null && owner !== identity)
    throw new ConfigError(
      'BATON_REDIS_PREFIX',
      `the Redis keys under "${ctx.keys.prefix}" belong to the PostgreSQL copy ${owner}, not ${identity}: give each deployment its own BATON_REDIS_PREFIX, or use that database and BATON_PG_SCHEMA`,
    );
  return owner === null;
}

/** How often a process looks for the prefix's claim (see `ownerCheckMs`), ms. */
export const OWNER_CHECK_MS = 5000;

/** How many SCAN rounds (of about 1,000 keys) {@link keptElsewhere} reads of each master at most. */
const KEPT_SCAN_ROUNDS = 100;

/**
 * Whether Redis holds keys of this deployment beside its claim, on any master: a scan, not a look
 * at known keys, whose slots may all be the lost master's (outside test QA132-F3: a prefix whose
 * global keys hashed to the claim's master was said to have lost everything).
 */
async function keptElsewhere(ctx: Context): Promise<boolean> {
  const own = new Set([ctx.keys.owner, ctx.keys.forgot]);
  for (const node of masterNodes(ctx.redis)) {
    let cursor = '0';
    for (let round = 0; round < KEPT_SCAN_ROUNDS; round++) {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${ctx.keys.prefix}:*`, 'COUNT', 1000);
      if (keys.some((k) => !own.has(k))) return true;
      cursor = next;
      if (cursor === '0') break;
    }
  }
  return false;
}

/**
 * Redis without this deployment's keys while PostgreSQL has consumed messages (an emptied Redis):
 * the dedupe markers of the messages Redis had seen are gone, and a redelivery of one was applied
 * again (outside test QA79-F4). Marked for the dedupe window, during which processes in
 * `BATON_INTAKE_LOG=auto` keep the intake log on: its insert names the messages PostgreSQL has
 * consumed, and intake takes their redeliveries for duplicates (SPEC 1.2).
 */
async function markForgotten(ctx: Context): Promise<void> {
  await ctx.redis.set(ctx.keys.forgot, String(Date.now()), 'EX', ctx.opts.dedupeTtlSec);
}

/**
 * Redis's loss while its mark lasts (see {@link markForgotten}): when Redis was found emptied, the
 * end of the dedupe window, and the words that say so; null when there is no mark.
 */
async function forgotten(ctx: Context): Promise<{ until: string; said: string } | null> {
  const since = Number(await ctx.redis.get(ctx.keys.forgot));
  if (!(since > 0)) return null;
  const until = new Date(since + ctx.opts.dedupeTtlSec * 1000).toISOString();
  const said = `Redis lost the record of the messages it had seen (found without Baton's keys at ${new Date(since).toISOString()})`;
  return { until, said };
}

/**
 * With `BATON_INTAKE_LOG=off`, Redis's loss within the dedupe window is said as what it is: the
 * log's check against PostgreSQL is off too, so a redelivery of a message Redis forgot is applied
 * again (outside test QA84-F2: 182 of 350 redelivered messages recorded twice, without a word).
 */
async function warnWhileForgotten(ctx: Context): Promise<void> {
  const f = await forgotten(ctx);
  if (f === null) return;
  ctx.log.error(
    { redis: 'forgot', intakeLog: 'off', until: f.until },
    `${f.said}, and BATON_INTAKE_LOG=off: until ${f.until}, a redelivery of one of them is applied AGAIN (SPEC 1.2 does not hold). Set BATON_INTAKE_LOG=auto to have PostgreSQL recognise them`,
  );
}

/** Turns the intake log on while Redis's loss is within the dedupe window; true if it did. */
async function logWhileForgotten(ctx: Context): Promise<boolean> {
  if (ctx.intakeLog !== null || (ctx.opts.intakeLog ?? 'auto') !== 'auto') return false;
  const f = await forgotten(ctx);
  if (f === null || ctx.intakeLog !== null) return false;
  intakeLogOn(ctx);
  clearInterval(ctx.persistenceTimer ?? undefined);
  ctx.log.warn(
    { redis: 'forgot', intakeLog: 'auto', until: f.until },
    `${f.said}: until ${f.until} (BATON_DEDUPE_TTL), the intake log is on, so that PostgreSQL recognises their redeliveries`,
  );
  return true;
}

/**
 * After an outage: when Redis lost the prefix's claim (restarted empty), marks it forgotten and
 * claims the prefix again. True when this process is the first to see the claim gone (see
 * {@link claimPrefix}).
 */
async function reclaimPrefix(ctx: Context): Promise<boolean> {
  if ((await ctx.redis.exists(ctx.keys.owner)) === 1) return false;
  // Marked before the prefix is claimed again: a process that finds the claim finds the mark.
  await markForgotten(ctx);
  const identity = String((await ctx.pg.query('store-identity'))[0]?.identity);
  return (await ctx.redis.set(ctx.keys.owner, identity, 'NX')) !== null;
}

export async function init(ctx: Context): Promise<void> {
  if (ctx.initialized) return;
  if (ctx.redis.status === 'wait' || ctx.redis.status === 'end') {
    try {
      await connectWithin(ctx, START_CONNECT_MS);
    } catch (err) {
      const plain = ctx.opts.cluster === true ? await plainRedisAt(ctx.opts.redisUrl) : null;
      if (plain !== null)
        throw new ConfigError(
          'BATON_REDIS_CLUSTER',
          `the Redis at ${plain} is not a cluster (cluster_enabled:0): unset BATON_REDIS_CLUSTER, or name cluster nodes in REDIS_URL`,
        );
      // ioredis rejects with "Connection is closed."; the socket's own error says why.
      const timedOut = (err as { timedOut?: boolean }).timedOut === true;
      const why =
        ctx.lastRedisErrorMessage !== undefined && !timedOut ? new Error(ctx.lastRedisErrorMessage) : err;
      throw StorageUnavailableError.unreachable('Redis', 'REDIS_URL', ctx.opts.redisUrl, why);
    }
  }
  if (ctx.opts.cluster !== true && ctx.redis instanceof Redis) {
    // A cluster node reached as a plain Redis starts and answers PING, then refuses every
    // session's writes with MOVED and CROSSSLOT (outside test QA37-F6: 144 webhooks of 144 got 503).
    const info = await r('init', () => (ctx.redis as Redis).info('cluster'));
    if (/^cluster_enabled:1\s*$/m.test(info))
      throw new ConfigError(
        'BATON_REDIS_CLUSTER',
        `the Redis at ${nodeAddress(ctx.redis)} is a cluster node (cluster_enabled:1): set BATON_REDIS_CLUSTER=true`,
      );
  }
  // Every time this process stamps or compares is on Redis's clock from here (store-clock.ts).
  if (ctx.clock) {
    await r('init', () => ctx.clock!.sync());
    ctx.clock.start();
  }
  // Before the migration: a start refused for another deployment's prefix (a mistyped
  // BATON_PG_SCHEMA) leaves the database as it was (outside test QA60-F2: the schema was made,
  // every table in it). The identity names the schema whether it exists yet or not.
  const claimed = await claimPrefix(ctx);
  if (ctx.opts.migrate !== false) {
    ctx.migrationsApplied = await migrate(ctx.opts.databaseUrl, ctx.schema);
    // Said: the first process of a new version upgrades the shared schema for all (QA45-F6).
    if (ctx.migrationsApplied.length > 0)
      ctx.log.info(
        { schema: ctx.schema, applied: ctx.migrationsApplied },
        'PostgreSQL schema migrated (processes of an older Baton will refuse to start on it)',
      );
  }
  // A new or emptied Redis under a deployment that has processed messages (a stack brought back
  // up with a Redis that kept no volume): what it held unprocessed is gone, said at once.
  if (claimed && (await ctx.pg.query('inbound-any'))[0]?.any === true) {
    await r('init', () => markForgotten(ctx));
    // On a cluster the claim lives on one master: one that restarted empty took it, while the
    // others kept their keys. That is no emptied Redis, and was said as one, "stop Baton"
    // included (outside test QA130-F2).
    if (ctx.opts.cluster === true && (await r('init', () => keptElsewhere(ctx))))
      ctx.log.error(
        { redis: 'partly-empty' },
        "A Redis Cluster master came back without its data: it held the claim on BATON_REDIS_PREFIX, while other masters still hold Baton's keys. Webhooks that master held and not yet processed are restored from the intake log if it was on when they came (it is while a master keeps no AOF), else LOST; the sessions it held reload from PostgreSQL",
      );
    else
      ctx.log.error(
        { redis: 'empty' },
        "Redis holds none of Baton's keys, but PostgreSQL has this deployment's conversations (a new or emptied Redis): webhooks the old Redis held that were not yet processed are LOST, and sessions reload from PostgreSQL. If that Redis still has its AOF, stop Baton and start Redis on it (appendonly yes, its dir)",
      );
  }
  ctx.autovacuumOff = (await ctx.pg.query('autovacuum-off'))[0]?.off === true;
  // Said, not warned: the purge makes up for it (one-shot commands stay quiet).
  if (ctx.autovacuumOff)
    ctx.log.info(
      { postgres: 'autovacuum' },
      "PostgreSQL autovacuum is off (for the server, or on one of Baton's tables): rows the retention deletes would keep their space and texts, so the purge runs VACUUM on its tables after each pass (or turn autovacuum on)",
    );
  await r('init', () => ctx.scripts.preload(ctx.redis));
  const nodes = masterNodes(ctx.redis);
  const mode = ctx.opts.intakeLog ?? 'auto';
  let volatile = false;
  for (const node of nodes) {
    const eviction = await evictionWarning(node);
    if (eviction)
      ctx.log.warn(
        { redis: 'eviction' },
        `DURABILITY WARNING: ${eviction}${nodes.length > 1 ? ` (cluster node ${nodeAddress(node)})` : ''}`,
      );
    const gap = await persistenceGap(node);
    if (!gap) continue;
    volatile = true;
    const where = nodes.length > 1 ? ` (cluster node ${nodeAddress(node)})` : '';
    if (mode === 'off')
      ctx.log.warn(
        { redis: 'persistence' },
        `DURABILITY WARNING: ${gap.setting}${where}: ${gap.loss.replace(' lost', ' LOST')}; ${gap.fix}; BATON_INTAKE_LOG=off, so nothing else keeps them`,
      );
    // Said once, without contradicting the next line: the intake log keeps what Redis would lose.
    else
      ctx.log.info(
        { redis: 'persistence' },
        `Redis does not keep every write: ${gap.setting}${where}; on its own, ${gap.loss}, so the intake log keeps them (or ${gap.fix})`,
      );
  }
  let persistenceAfterLoss: (() => void) | null = null;
  if (mode === 'on' || (mode === 'auto' && volatile)) {
    intakeLogOn(ctx);
    ctx.log.info(
      { intakeLog: mode },
      'intake log on: each webhook is also written to PostgreSQL before it is answered, and what Redis loses is restored from there',
    );
  } else if (mode === 'auto' && !(await r('init', () => logWhileForgotten(ctx))))
    persistenceAfterLoss = watchPersistence(ctx);
  else if (mode === 'off') await r('init', () => warnWhileForgotten(ctx));
  // Redis back empty with the intake log on: the log puts back what it lost (no error to say),
  // and the prefix is claimed again quietly, so another deployment's start still finds it taken.
  // With the log off by choice, the loss is said (in `auto` with the log off, the watch says it).
  const reclaimAfterOutage = (): void => {
    if (!ctx.initialized) return;
    if (ctx.intakeLog !== null) reclaimPrefix(ctx).catch(() => undefined);
    else if (mode === 'off')
      reclaimPrefix(ctx)
        .then((first) => (first ? warnWhileForgotten(ctx) : undefined))
        .catch(() => undefined);
  };
  ctx.redis.on('ready', reclaimAfterOutage);
  onNodeChange(ctx.redis, reclaimAfterOutage);
  // A cluster master that restarted empty took the claim with it, and nothing tells a running
  // process (no reconnect, the same masters): unclaimed, a start with a mistyped BATON_PG_SCHEMA
  // took the prefix, then the deployment's sessions, and locked its own processes out (outside
  // test QA130-F6). Every process looks for the claim now and then, and puts it back.
  const ownerCheckMs = ctx.opts.ownerCheckMs ?? OWNER_CHECK_MS;
  if (ownerCheckMs > 0) {
    let looking = false;
    ctx.ownerTimer = setInterval(() => {
      if (looking || ctx.closed) return;
      looking = true;
      ctx.redis
        .exists(ctx.keys.owner)
        .then((n) => {
          if (n !== 0) return;
          reclaimAfterOutage();
          persistenceAfterLoss?.();
        })
        .catch(() => undefined) // Redis away: its 'ready' does the same
        .finally(() => (looking = false));
    }, ownerCheckMs);
    ctx.ownerTimer.unref();
  }
  if (ctx.opts.flusher !== false) {
    const conn = await readerClient(ctx.redis, 10_000);
    conn.on('error', (err: Error) => redisError(ctx, err));
    ctx.flusher = new StreamFlusher({
      conn,
      stream: ctx.keys.flush,
      group: FLUSH_GROUP,
      consumer: `flusher-${randomUUID()}`,
      flush: async (members) => {
        await Promise.all(members.map((m) => ctx.committer.flush(m)));
      },
      onError: (err) => ctx.log.warn({ err: String(err) }, 'journal flush failed; will retry'),
      claimIdleMs: 30_000,
      blockMs: 1000,
    });
    ctx.flusher.start();
  }
  ctx.initialized = true;
}

/** Turns the intake log on (for good: see intake-log.ts). */
function intakeLogOn(ctx: Context): void {
  ctx.intakeLog = new IntakeLog(ctx.pg);
  ctx.deferred.setDelay(VOLATILE_DEFERRED_COPY_MS);
  restoreAfterOutages(ctx);
}

/** How often a process whose intake log is off reads Redis's persistence settings again, ms. */
export const PERSISTENCE_CHECK_MS = 1000;

/**
 * With `BATON_INTAKE_LOG=auto`, the log off because Redis kept every write at start: Redis's
 * settings are read again every {@link PERSISTENCE_CHECK_MS} and whenever Redis is back from an
 * outage (intake waits for that read), and the log is turned on the moment one would lose an
 * acknowledged webhook. Read at start only, `CONFIG SET appendonly no`, or a Redis restarted
 * without AOF by its supervisor, left webhooks acknowledged with no durable copy anywhere: 40 of
 * 40 lost at the next restart (outside test QA79-F1). What the watch leaves: webhooks stored in
 * the second before a runtime `CONFIG SET` was seen. Returns what it does after Redis was away
 * (the prefix's watch calls it too).
 */
function watchPersistence(ctx: Context): () => void {
  const check = async (): Promise<void> => {
    if (ctx.closed || ctx.intakeLog !== null) return;
    const nodes = masterNodes(ctx.redis);
    for (const node of nodes) {
      const gap = await persistenceGap(node);
      if (gap === null || ctx.intakeLog !== null) continue;
      intakeLogOn(ctx);
      const where = nodes.length > 1 ? ` (cluster node ${nodeAddress(node)})` : '';
      ctx.log.warn(
        { redis: 'persistence', intakeLog: 'auto' },
        `Redis no longer keeps every write: ${gap.setting}${where}. The intake log is on from now: each webhook is also written to PostgreSQL before it is answered (or ${gap.fix}, and restart Baton's processes to turn it off)`,
      );
      clearInterval(ctx.persistenceTimer ?? undefined);
      return;
    }
  };
  const checked = (): Promise<void> =>
    check().catch((err: unknown) => {
      // Redis away again: the next 'ready' checks. Intake answers 503 meanwhile.
      if (!isRedisUnavailable(err)) ctx.log.warn({ err: String(err) }, 'Redis persistence check failed');
    });
  let running: Promise<void> | null = null;
  ctx.persistenceTimer = setInterval(() => {
    running ??= checked().finally(() => (running = null));
  }, PERSISTENCE_CHECK_MS);
  ctx.persistenceTimer.unref();
  // Back empty (restarted without its AOF, by a supervisor's default configuration): what it held
  // is gone and nothing here can restore it, but it is said, once, by the first process to see it
  // (outside test QA81-F2: 10 of 10 acknowledged webhooks gone without a word).
  const backEmpty = async (): Promise<void> => {
    if (await reclaimPrefix(ctx))
      ctx.log.error(
        { redis: 'restart' },
        "Redis is back without Baton's keys (restarted without its AOF, or emptied): the webhooks it held that were not yet processed are LOST, and sessions reload from PostgreSQL. To get them back, stop Baton and restart Redis on its AOF (appendonly yes, its dir); to keep this from happening, let Baton's intake log keep them (BATON_INTAKE_LOG=on)",
      );
    await logWhileForgotten(ctx);
  };
  const afterOutage = (): void => {
    if (ctx.intakeLog !== null) return;
    const gate: Promise<void> = Promise.all([checked(), backEmpty().catch(() => undefined)]).then(() => {
      if (ctx.persistenceCheck === gate) ctx.persistenceCheck = null;
    });
    ctx.persistenceCheck = gate;
  };
  ctx.redis.on('ready', afterOutage);
  onNodeChange(ctx.redis, () => {
    if (ctx.initialized) afterOutage();
  });
  return afterOutage;
}

export async function close(ctx: Context): Promise<void> {
  if (ctx.closed) return;
  ctx.closed = true;
  if (ctx.persistenceTimer) clearInterval(ctx.persistenceTimer);
  if (ctx.ownerTimer) clearInterval(ctx.ownerTimer);
  ctx.clock?.stop();
  // This ingress's watermark entry goes: it receives nothing more.
  const leaving = ctx.intake?.close();
  if (leaving) await followUp(ctx, [leaving]);
  ctx.scheduler?.close();
  if (ctx.reaperTimer) clearInterval(ctx.reaperTimer);
  if (ctx.stallTimer) clearInterval(ctx.stallTimer);
  if (ctx.purgeTimer) clearInterval(ctx.purgeTimer);
  await ctx.reaping;
  await ctx.stallChecking;
  await ctx.purging;
  await ctx.flusher?.stop(ctx.redis);
  ctx.deferred.flush();
  await ctx.rate.close();
  await ctx.committer.drain();
  await ctx.globalFeed.settled();
  ctx.sub?.disconnect();
  await ctx.redis.quit().catch(() => ctx.redis.disconnect());
  await ctx.pg.close();
}

export async function health(ctx: Context): Promise<Record<string, boolean>> {
  // Every master must answer: on a cluster, each one serves a share of the sessions. And a
  // cluster must say it serves every slot: a master that died is soon gone from the client's
  // list, and the masters left answer PING while the cluster refuses writes (outside test
  // QA37-F4: ready through a whole outage, so RabbitMQ consumers took webhooks back and forth).
  const nodes = masterNodes(ctx.redis);
  const clustered = !(ctx.redis instanceof Redis);
  const redis = Promise.all(
    nodes.map(async (n) =>
      clustered
        ? /^cluster_state:ok\r?$/m.test(String(await n.call('CLUSTER', 'INFO')))
        : (await n.ping()) === 'PONG',
    ),
  )
    .then((p) => p.length > 0 && p.every(Boolean))
    .catch(() => false);
  return { redis: await redis, postgres: await ctx.pg.ping() };
}

/** Group-commit and flush counters, for tests and benchmarks. */
export function diagnostics(ctx: Context): {
  groups: number;
  flushRequests: number;
  pgTransactions: number;
  pgEntries: number;
} {
  return {
    groups: ctx.committer.groups,
    flushRequests: ctx.committer.requests,
    pgTransactions: ctx.pg.applyTransactions,
    pgEntries: ctx.pg.appliedEntries,
  };
}
