/**
 * `npm run bench` (SPEC section 7): one run, on this machine, of the same workloads against
 * embedded Baton, distributed Baton with 1 and with 2 worker processes, and the seed article's
 * own algorithm (bench/baseline/server.ts).
 *
 * Three scenarios:
 * - `steady` (BATON_BUFFER_MS=0): closed loop through the order flow, a quarter of messages
 *   delivered twice. SPEC 7's columns: messages/s end to end (webhook in to reply at the sink),
 *   webhook ack p50/p99, reply p50/p99, peak RSS, lost / duplicated / out of order / duplicate
 *   prompts; plus CPU per message from the OS accounting and wire counts per message.
 * - `bursts` (BATON_BUFFER_MS=500): every user's name and address arrive as shuffled bursts of
 *   concurrent webhooks, 30% delivered twice. Baton's verdict must be clean; the baseline runs
 *   once for contrast (it has no buffer window and is expected to get names wrong).
 *
 * Each configuration is booted once per scenario with its own Redis key prefix
 * (BATON_REDIS_PREFIX) and PostgreSQL schema (BATON_PG_SCHEMA) on the machine's shared services,
 * warmed up, measured `--repeat` times (fresh users each time), then stopped and its keys and
 * schema deleted. Figures are printed as median (min-max) over the repeats.
 *
 * CPU comes from `/proc/<pid>/stat` (utime+stime): Baton's processes and their descendants;
 * the PostgreSQL backends serving them (found by `application_name`, set through PGAPPNAME);
 * the Redis server, minus its rate in a one-second idle window before each repeat (the server
 * is shared with other clients). The load generator's share is this process's own CPU time.
 * Redis commands and flushes and PostgreSQL statements are counted on the wire by the preload
 * bench/hooks/wire-count.mjs in every child process.
 *
 * - `rate` (BATON_BUFFER_MS=0): open loop. Webhooks are OFFERED at a fixed rate (`--rate`,
 *   default 1000/s, for `--rate-seconds`, default 10), each a new user's first message, whatever
 *   Baton answers: webhook ack p50/p99/max while Baton is busy with the turns they cause, replies
 *   per second, the backlog left when the offer stops, Baton's CPU per webhook. Each run starts
 *   once the one before has drained (up to 3 min). Not the baseline.
 *
 * Flags: `--repeat N` (default 3), `--quick` (fewer users, one repeat unless --repeat),
 * `--only steady|bursts|rate`, `--rate N`, `--rate-seconds S` (or BENCH_RATE, BENCH_RATE_SECONDS). Environment: `BENCH_REDIS_URL` (redis://127.0.0.1:6379),
 * `BENCH_DATABASE_URL` (postgres://postgres@127.0.0.1:5432/test), `BENCH_USERS` (steady
 * users, default 400). Writes bench/results/latest.json, latest.txt (the table) and latest.svg.
 * @module
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import {
  queueDepth,
  runLoad,
  startReplySink,
  type ChaosOptions,
  type LoadReport,
  type ReplySink,
} from '../loadgen/index.ts';
import {
  cpuBetween,
  machineCpu,
  readWire,
  scriptNamesBySha,
  snapshot,
  wireBetween,
  withDescendants,
  type WireCounts,
} from './accounting.ts';
import {
  childEnv,
  freePort,
  lastWords,
  peakRss,
  spawnNode,
  stop,
  waitForHttp,
  waitForOutput,
  type Proc,
} from './procs.ts';
import { DistributedBackend } from '../src/backends/distributed/index.ts';
import { seedSessions } from '../scripts/seed-sessions.ts';
import { runOpenLoop, type OpenLoopReport } from '../loadgen/open-loop.ts';
import { barChart } from './svg.ts';
import { formatReport, type ConfigResult, type RunResult, type ScenarioId } from './table.ts';
import { spread } from './stats.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOOK = join(ROOT, 'bench', 'hooks', 'wire-count.mjs');
const RESULTS = join(ROOT, 'bench', 'results');
const SECRET = 'bench-app-secret';
const ADMIN = 'bench-admin-token';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const { values: flags } = parseArgs({
  options: {
    repeat: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rate: { type: 'string' },
    'rate-seconds': { type: 'string' },
  },
});
const QUICK = flags.quick === true;
const REPEAT = Math.max(1, Math.min(20, Number(flags.repeat ?? (QUICK ? 1 : 3)) || 1));
const ONLY_CONFIGS = process.env.BENCH_CONFIGS ? process.env.BENCH_CONFIGS.split(',') : null;
// Idle sessions stored before each distributed boot (cost must not grow with stored data).
const SEED_IDLE = Number(process.env.BENCH_SEED_IDLE ?? 0);
// `baton worker`'s own default unless BENCH_WORKER_CONCURRENCY says otherwise.
const WORKER_CONCURRENCY = Number(process.env.BENCH_WORKER_CONCURRENCY ?? 32);
// Workers run as README recommends where they share a machine with the ingress: at a lower CPU
// priority (`baton worker --nice`), so webhooks are stored and answered first under overload.
// BENCH_WORKER_NICE=0 runs them at the ingress's priority.
const WORKER_NICE = Number(process.env.BENCH_WORKER_NICE ?? 10);
const STEADY_USERS = Number(process.env.BENCH_USERS ?? (QUICK ? 60 : 400));
const BURST_USERS = QUICK ? 30 : 150;
const TOTAL_TIMEOUT_MS = (QUICK ? 5 : 20) * 60_000;
const RUN_TIMEOUT_MS = 120_000;
/** The open-loop scenario: webhooks offered per second, for this many seconds. */
const RATE = Number(flags.rate ?? process.env.BENCH_RATE ?? 1000);
const RATE_SECONDS = Number(flags['rate-seconds'] ?? process.env.BENCH_RATE_SECONDS ?? (QUICK ? 5 : 10));

interface Workload {
  readonly users: number;
  readonly chaos: Partial<ChaosOptions>;
  readonly replyTimeoutMs: number;
  readonly maxInflight: number;
  readonly settleTimeoutMs: number;
  /** The target's BATON_BUFFER_MS, for the verdict (a burst stored further apart may split). */
  readonly bufferMs?: number;
}

interface Scenario {
  readonly id: ScenarioId;
  readonly title: string;
  readonly bufferMs: number;
  readonly workload: Workload;
  readonly warmupUsers: number;
  /** The baseline runs once here, for contrast, and its verdict does not fail the bench. */
  readonly baselineOnce: boolean;
}

const SCENARIOS: readonly Scenario[] = [
  {
    id: 'steady',
    title: 'steady load, BATON_BUFFER_MS=0',
    bufferMs: 0,
    workload: {
      users: STEADY_USERS,
      chaos: { duplicates: 0.25, shuffle: false, splitTexts: false, concurrentBursts: false },
      // A user waits this long for a reply before counting it lost: long enough that the
      // closed loop's initial backlog is latency, not loss, on a busy 2-core machine.
      replyTimeoutMs: 30_000,
      maxInflight: 64,
      settleTimeoutMs: 8_000,
    },
    // Long enough for V8 to optimise the hot path (a server runs for days): with 20 users
    // (80 messages) the first measured run of every configuration cost 1.5-2x the next two.
    warmupUsers: Math.max(20, Math.round(STEADY_USERS / 2)),
    baselineOnce: false,
  },
  {
    id: 'bursts',
    title: 'shuffled duplicated bursts, BATON_BUFFER_MS=500',
    bufferMs: 500,
    workload: {
      users: BURST_USERS,
      chaos: { duplicates: 0.3, shuffle: true, splitTexts: true, concurrentBursts: true },
      replyTimeoutMs: 8_000,
      maxInflight: 64,
      settleTimeoutMs: 8_000,
    },
    warmupUsers: Math.max(10, Math.round(BURST_USERS / 5)),
    baselineOnce: true,
  },
];

const SCRIPT_NAMES = scriptNamesBySha(join(ROOT, 'src', 'backends', 'distributed', 'scripts'));
const live = new Set<Proc>();
/** Booted targets, so an interrupted bench still deletes its keys and schemas. */
const booted = new Set<Target>();
let serial = 0;

function note(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Target {
  readonly url: string;
  readonly procs: Proc[];
  /** Directory of the wire-count files of this target's processes. */
  readonly wireDir: string;
  /** PGAPPNAME of its PostgreSQL connections, when it has any. */
  readonly pgApp?: string;
  readonly usesRedis: boolean;
  readonly cleanup: () => Promise<void>;
}

interface Config {
  readonly id: string;
  readonly name: string;
  readonly baseline: boolean;
  readonly boot: (sink: ReplySink, bufferMs: number) => Promise<Target>;
}

function start(name: string, args: string[], env: Record<string, string>): Proc {
  const p = spawnNode(name, args, env, ROOT);
  live.add(p);
  void p.exited.then(() => live.delete(p));
  return p;
}

async function withRedis<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** Deletes every key under `pattern` (SCAN + UNLINK: never FLUSHDB on a shared server). */
async function deleteKeys(pattern: string): Promise<number> {
  return withRedis(async (r) => {
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) n += await r.unlink(...keys);
    } while (cursor !== '0');
    return n;
  });
}

async function withPg<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

function wireDir(): string {
  return mkdtempSync(join(tmpdir(), 'baton-bench-wire-'));
}

function batonEnv(
  sink: ReplySink,
  port: number,
  bufferMs: number,
  wire: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return childEnv({
    PORT: String(port),
    HOST: '127.0.0.1',
    WHATSAPP_APP_SECRET: SECRET,
    WHATSAPP_API_BASE_URL: sink.url,
    ADMIN_TOKEN: ADMIN,
    BATON_BUFFER_MS: String(bufferMs),
    LOG_LEVEL: 'warn',
    BENCH_WIRE_COUNT_DIR: wire,
    BENCH_REDIS_PORT: new URL(REDIS_URL).port || '6379',
    BENCH_PG_PORT: new URL(PG_URL).port || '5432',
    ...extra,
  });
}

const node = (entry: string[]): string[] => [
  '--import',
  HOOK,
  ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
  ...entry,
];

async function embedded(sink: ReplySink, bufferMs: number): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const wire = wireDir();
  const port = await freePort();
  const p = start(
    'baton start',
    node(['bin/baton.mjs', 'start']),
    batonEnv(sink, port, bufferMs, wire, { BATON_DATA_DIR: dir }),
  );
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async (): Promise<void> => {
    await stop(p);
    rmSync(dir, { recursive: true, force: true });
    rmSync(wire, { recursive: true, force: true });
  };
  try {
    await waitForHttp(`${url}/readyz`, 30_000, [p]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { url, procs: [p], wireDir: wire, usesRedis: false, cleanup };
}

/**
 * Distributed Baton: `baton ingress` and `workers` `baton worker` processes, or with `workers`
 * 0 one `baton start` process that does both (the deployment of one machine).
 */
async function distributed(sink: ReplySink, bufferMs: number, workers: number): Promise<Target> {
  serial += 1;
  const name = `bench_${process.pid}_${serial}`;
  const wire = wireDir();
  const port = await freePort();
  const env = batonEnv(sink, port, bufferMs, wire, {
    REDIS_URL,
    DATABASE_URL: PG_URL,
    BATON_REDIS_PREFIX: name,
    BATON_PG_SCHEMA: name,
    PGAPPNAME: name,
    // Baton's default (`auto`: on when the Redis does not persist every write) unless set.
    ...(process.env.BENCH_INTAKE_LOG ? { BATON_INTAKE_LOG: process.env.BENCH_INTAKE_LOG } : {}),
  });
  const procs: Proc[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.all(procs.map((p) => stop(p)));
    await withPg((c) => c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`)).catch((err: unknown) =>
      note(`could not drop schema ${name}: ${String(err)}`),
    );
    await deleteKeys(`${name}:*`).catch((err: unknown) =>
      note(`could not delete ${name}:* keys: ${String(err)}`),
    );
    rmSync(wire, { recursive: true, force: true });
  };
  try {
    const migrate = start('baton migrate', ['bin/baton.mjs', 'migrate'], env);
    const timer = setTimeout(() => migrate.child.kill('SIGKILL'), 60_000);
    const code = await migrate.exited;
    clearTimeout(timer);
    if (code !== '0') throw new Error(`baton migrate exited ${code}: ${lastWords(migrate)}`);
    if (SEED_IDLE > 0) {
      const seeder = new DistributedBackend({
        redisUrl: REDIS_URL,
        databaseUrl: PG_URL,
        prefix: name,
        schema: name,
        bufferMs: 0,
        dedupeTtlSec: 7 * 86_400,
        syncMode: 'write-through',
        migrate: false,
      });
      await seeder.init();
      const started = Date.now();
      await seedSessions(seeder, { count: SEED_IDLE, concurrency: 64 });
      await seeder.close();
      note(`seeded ${SEED_IDLE} idle sessions in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    if (workers === 0) procs.push(start('baton start', node(['bin/baton.mjs', 'start']), env));
    else procs.push(start('baton ingress', node(['bin/baton.mjs', 'ingress']), env));
    for (let i = 0; i < workers; i += 1) {
      procs.push(
        start(
          `baton worker ${i + 1}`,
          node([
            'bin/baton.mjs',
            'worker',
            '--concurrency',
            String(WORKER_CONCURRENCY),
            '--nice',
            String(WORKER_NICE),
          ]),
          env,
        ),
      );
    }
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/readyz`, 30_000, procs);
    await Promise.all(procs.slice(1).map((p) => waitForOutput(p, /worker .* started/, 30_000)));
    return { url, procs, wireDir: wire, pgApp: name, usesRedis: true, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function baseline(sink: ReplySink): Promise<Target> {
  serial += 1;
  const name = `bench_${process.pid}_${serial}`;
  const prefix = `${name}:`;
  const wire = wireDir();
  const port = await freePort();
  const env = batonEnv(sink, port, 0, wire, {
    REDIS_URL,
    DATABASE_URL: PG_URL,
    BASELINE_PG_SCHEMA: name,
    PGAPPNAME: name,
    BASELINE_PREFIX: prefix,
    BASELINE_WORKERS: '8',
  });
  const p = start('baseline', ['--import', 'tsx', ...node(['bench/baseline/server.ts'])], env);
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async (): Promise<void> => {
    await stop(p);
    await withPg((c) => c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`)).catch((err: unknown) =>
      note(`could not drop schema ${name}: ${String(err)}`),
    );
    await deleteKeys(`${prefix}*`).catch(() => undefined);
    rmSync(wire, { recursive: true, force: true });
  };
  try {
    await waitForHttp(`${url}/healthz`, 30_000, [p]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { url, procs: [p], wireDir: wire, pgApp: name, usesRedis: true, cleanup };
}

const CONFIGS: readonly Config[] = [
  { id: 'embedded', name: 'embedded', baseline: false, boot: embedded },
  { id: 'dist0', name: 'distributed, 1 process', baseline: false, boot: (s, b) => distributed(s, b, 0) },
  { id: 'dist1', name: 'distributed, 1 worker', baseline: false, boot: (s, b) => distributed(s, b, 1) },
  { id: 'dist2', name: 'distributed, 2 workers', baseline: false, boot: (s, b) => distributed(s, b, 2) },
  { id: 'baseline', name: 'baseline (article)', baseline: true, boot: (s) => baseline(s) },
];

async function redisPid(): Promise<number | null> {
  try {
    const info = await withRedis((r) => r.info('server'));
    const m = /process_id:(\d+)/.exec(info);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function pgBackends(app: string | undefined): Promise<number[]> {
  if (app === undefined) return [];
  try {
    const r = await withPg((c) =>
      c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [app]),
    );
    return r.rows.map((row) => row.pid);
  } catch {
    return [];
  }
}

/** One measured repeat against a booted target. */
async function measureOnce(
  t: Target,
  sink: ReplySink,
  w: Workload,
  seed: number,
  redis: number | null,
  signal: AbortSignal,
): Promise<RunResult> {
  // A quiet second first: the Redis server's background rate (other clients) and flushed counts.
  const idleRedis0 = redis !== null && t.usesRedis ? snapshot([redis]) : new Map<number, number>();
  const idle0 = performance.now();
  await sleep(1000);
  const idleRedis1 = redis !== null && t.usesRedis ? snapshot([redis]) : new Map<number, number>();
  const redisIdleRate = cpuBetween(idleRedis0, idleRedis1) / (performance.now() - idle0);

  const wire0 = readWire(t.wireDir);
  const batonPids = withDescendants(t.procs.map((p) => p.pid));
  const pg0 = await pgBackends(t.pgApp);
  const cpu0 = {
    baton: snapshot(batonPids),
    redis: redis !== null && t.usesRedis ? snapshot([redis]) : new Map<number, number>(),
    pg: snapshot(pg0),
    machine: machineCpu(),
    self: process.cpuUsage(),
    at: performance.now(),
  };
  // The counts stop when the load generator starts judging (its admin reads are not load).
  let end: {
    wallMs: number;
    self: NodeJS.CpuUsage;
    machineBusyMs: number;
    batonMs: number;
    byProcess: Record<string, number>;
    redisRawMs: number;
    pgMs: number;
    wire: WireCounts;
  } | null = null;
  const takeEnd = (): NonNullable<typeof end> => ({
    wallMs: performance.now() - cpu0.at,
    self: process.cpuUsage(cpu0.self),
    machineBusyMs: machineCpu().busyMs - cpu0.machine.busyMs,
    batonMs: cpuBetween(cpu0.baton, snapshot(withDescendants(t.procs.map((p) => p.pid)))),
    byProcess: Object.fromEntries(
      t.procs.map((p) => [p.name, cpuBetween(cpu0.baton, snapshot(withDescendants([p.pid])))]),
    ),
    redisRawMs: redis !== null && t.usesRedis ? cpuBetween(cpu0.redis, snapshot([redis])) : 0,
    pgMs: cpuBetween(cpu0.pg, snapshot(pg0)),
    // Files are rewritten every 250 ms; the load generator waited >= 300 ms of quiet before judging.
    wire: wireBetween(wire0, readWire(t.wireDir)),
  });
  const report: LoadReport = await runLoad({
    url: t.url,
    adminToken: ADMIN,
    secret: SECRET,
    sink,
    signal,
    seed,
    keepSamples: false,
    progressIntervalMs: 3_600_000,
    onProgress: (p) => {
      if (p.phase === 'judging' && end === null) end = takeEnd();
    },
    ...w,
  });
  const e = end ?? takeEnd();
  const { wallMs, self, machineBusyMs, batonMs, byProcess, redisRawMs, pgMs, wire } = e;
  const loadgenMs = (self.user + self.system) / 1000;
  const redisMs = Math.max(0, redisRawMs - redisIdleRate * wallMs);
  const messages = Math.round((report.messagesPerSec * report.durationMs) / 1000);
  const v = report.verdict;
  return {
    messages,
    durationMs: report.durationMs,
    msgsPerSec: report.messagesPerSec,
    ackP50: report.ack.p50,
    ackP99: report.ack.p99,
    replyP50: report.reply.p50,
    replyP99: report.reply.p99,
    verdict: {
      clean: v.clean,
      users: v.users,
      usersCompleted: v.usersCompleted,
      lost: v.lost,
      duplicated: v.duplicated,
      outOfOrder: v.outOfOrder,
      duplicatePrompts: v.duplicatePrompts,
      problems: v.problems.slice(0, 3),
    },
    cpu: {
      wallMs,
      batonMs,
      byProcess,
      redisRawMs,
      redisMs,
      pgMs,
      loadgenMs,
      machineBusyMs,
      othersMs: Math.max(0, machineBusyMs - batonMs - redisRawMs - pgMs - loadgenMs),
    },
    wire,
  };
}

async function measureConfig(
  scenario: Scenario,
  config: Config,
  redis: number | null,
): Promise<ConfigResult> {
  const repeats = config.baseline && scenario.baselineOnce ? 1 : REPEAT;
  const base: Omit<ConfigResult, 'runs'> = {
    scenario: scenario.id,
    config: config.id,
    name: config.name,
    contrastOnly: config.baseline,
  };
  const sink = await startReplySink();
  let target: Target | undefined;
  const runs: RunResult[] = [];
  const began = Date.now();
  try {
    note(`${scenario.id} / ${config.name}: starting`);
    target = await config.boot(sink, scenario.bufferMs);
    booted.add(target);
    const t = target;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), RUN_TIMEOUT_MS);
    try {
      note(`${scenario.id} / ${config.name}: warm-up (${scenario.warmupUsers} users)`);
      await runLoad({
        url: t.url,
        adminToken: ADMIN,
        secret: SECRET,
        sink,
        signal: abort.signal,
        seed: 1,
        ...scenario.workload,
        bufferMs: scenario.bufferMs,
        users: scenario.warmupUsers,
      });
    } finally {
      clearTimeout(timer);
    }
    for (let i = 0; i < repeats; i += 1) {
      const ac = new AbortController();
      const tm = setTimeout(() => ac.abort(), RUN_TIMEOUT_MS);
      try {
        note(`${scenario.id} / ${config.name}: run ${i + 1}/${repeats} (${scenario.workload.users} users)`);
        runs.push(
          await measureOnce(
            t,
            sink,
            { ...scenario.workload, bufferMs: scenario.bufferMs },
            42 + i,
            redis,
            ac.signal,
          ),
        );
        if (ac.signal.aborted) throw new Error(`a run did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
      } finally {
        clearTimeout(tm);
      }
      const dead = t.procs.find((p) => p.exitedWith !== null);
      if (dead) throw new Error(`${dead.name} exited during the run: ${lastWords(dead)}`);
    }
    const rssBytes = t.procs.map((p) => peakRss(p.pid) ?? 0);
    const warnings: Record<string, number> = {};
    for (const p of t.procs) {
      for (const [msg, n] of p.warnings) {
        if (!msg.startsWith('DURABILITY WARNING')) warnings[msg] = (warnings[msg] ?? 0) + n;
      }
    }
    note(`${scenario.id} / ${config.name}: done in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    return { ...base, runs, rssBytes, warnings };
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!;
    note(`${scenario.id} / ${config.name}: n/a (${reason})`);
    return { ...base, runs, reason };
  } finally {
    if (target) {
      booted.delete(target);
      await target.cleanup().catch(() => undefined);
    }
    await sink.close();
  }
}

/** One configuration's open-loop result (the `rate` scenario). */
interface RateResult {
  readonly config: string;
  readonly name: string;
  readonly runs: Array<{
    report: OpenLoopReport;
    /** How long the run waited for the one before to drain (see drainBacklog). */
    backlogWaitMs: number;
    cpuUsPerWebhook: number;
    byProcess: Record<string, number>;
  }>;
  readonly reason?: string;
}

/** Longest wait for a rate run's backlog to drain before the next run. */
const DRAIN_MAX_MS = 180_000;

/** Waits until Baton holds no pending message, up to {@link DRAIN_MAX_MS}. */
async function drainBacklog(url: string): Promise<{ waitedMs: number; depth: number }> {
  const start = performance.now();
  for (;;) {
    const depth = (await queueDepth(url, ADMIN)) ?? 0;
    const waitedMs = performance.now() - start;
    if (depth === 0 || waitedMs >= DRAIN_MAX_MS) return { waitedMs, depth };
    await sleep(500);
  }
}

/**
 * The open-loop scenario on one configuration: boots it (BATON_BUFFER_MS=0), warms it up with
 * closed-loop users (half the steady scenario's), then offers {@link RATE} webhooks/s for
 * {@link RATE_SECONDS} s, `REPEAT` times. Baton's CPU is counted over the offer window and the drain that follows.
 */
async function measureRate(config: Config): Promise<RateResult> {
  const sink = await startReplySink();
  let target: Target | undefined;
  const runs: RateResult['runs'] = [];
  try {
    note(`rate / ${config.name}: starting`);
    target = await config.boot(sink, 0);
    booted.add(target);
    const t = target;
    const warm = new AbortController();
    const timer = setTimeout(() => warm.abort(), RUN_TIMEOUT_MS);
    try {
      await runLoad({
        url: t.url,
        adminToken: ADMIN,
        secret: SECRET,
        sink,
        signal: warm.signal,
        seed: 1,
        // As the steady scenario's warm-up: V8 optimises the hot path before the first run.
        users: Math.max(20, Math.round(STEADY_USERS / 2)),
      });
    } finally {
      clearTimeout(timer);
    }
    for (let i = 0; i < REPEAT; i += 1) {
      // Each run starts from an empty queue: a configuration that cannot keep up leaves a
      // backlog, which would otherwise take the next run's processing (its users unanswered).
      const backlog = await drainBacklog(t.url);
      if (backlog.depth > 0)
        note(`rate / ${config.name}: ${backlog.depth} messages still pending after ${DRAIN_MAX_MS / 1000} s`);
      else if (backlog.waitedMs > 2000)
        note(
          `rate / ${config.name}: waited ${(backlog.waitedMs / 1000).toFixed(0)} s for the backlog to drain`,
        );
      note(`rate / ${config.name}: run ${i + 1}/${REPEAT} (${RATE} webhooks/s for ${RATE_SECONDS} s)`);
      await sleep(1000);
      const pids = withDescendants(t.procs.map((p) => p.pid));
      const cpu0 = snapshot(pids);
      const ac = new AbortController();
      const tm = setTimeout(() => ac.abort(), RUN_TIMEOUT_MS);
      try {
        const report = await runOpenLoop({
          url: t.url,
          secret: SECRET,
          sink,
          ratePerSec: RATE,
          durationMs: RATE_SECONDS * 1000,
          signal: ac.signal,
        });
        const after = snapshot(withDescendants(t.procs.map((p) => p.pid)));
        const byProcess = Object.fromEntries(
          t.procs.map((p) => [p.name, cpuBetween(cpu0, snapshot(withDescendants([p.pid])))]),
        );
        const perWebhook = (ms: number): number => (report.answered > 0 ? (ms * 1000) / report.answered : 0);
        runs.push({
          report,
          backlogWaitMs: backlog.waitedMs,
          cpuUsPerWebhook: perWebhook(cpuBetween(cpu0, after)),
          byProcess: Object.fromEntries(Object.entries(byProcess).map(([k, v]) => [k, perWebhook(v)])),
        });
      } finally {
        clearTimeout(tm);
      }
      const dead = t.procs.find((p) => p.exitedWith !== null);
      if (dead) throw new Error(`${dead.name} exited during the run: ${lastWords(dead)}`);
    }
    return { config: config.id, name: config.name, runs };
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!;
    note(`rate / ${config.name}: n/a (${reason})`);
    return { config: config.id, name: config.name, runs, reason };
  } finally {
    if (target) {
      booted.delete(target);
      await target.cleanup().catch(() => undefined);
    }
    await sink.close();
  }
}

/** The `rate` scenario's table: median (min-max) over the repeats. */
function formatRate(results: readonly RateResult[]): string[] {
  if (results.length === 0) return [];
  const cell = (r: RateResult, pick: (run: RateResult['runs'][number]) => number, digits = 0): string => {
    const s = spread(r.runs.map(pick));
    if (s === null) return r.reason ? 'n/a' : '-';
    const f = (v: number): string => v.toFixed(digits);
    return r.runs.length === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}-${f(s.max)})`;
  };
  const total = (r: RateResult, pick: (run: RateResult['runs'][number]) => number): string =>
    r.runs.length === 0 ? 'n/a' : String(r.runs.reduce((n, x) => n + pick(x), 0));
  const head = [
    'mode',
    'offered/s',
    'ack p50 ms',
    'ack p99 ms',
    'ack max ms',
    'replies/s',
    'answered/s',
    'drain ms',
    'reply p99 ms',
    'CPU us/webhook',
    'send lag p99 ms',
    'not 200',
    'unanswered',
  ];
  const rows = results.map((r) => [
    r.name,
    cell(r, (x) => x.report.offeredPerSec),
    cell(r, (x) => x.report.ack.p50, 1),
    cell(r, (x) => x.report.ack.p99, 1),
    cell(r, (x) => x.report.ack.max),
    cell(r, (x) => x.report.repliesPerSec),
    cell(r, (x) => x.report.answeredPerSec),
    cell(r, (x) => x.report.drainMs),
    cell(r, (x) => x.report.reply.p99),
    cell(r, (x) => x.cpuUsPerWebhook),
    cell(r, (x) => x.report.sendLag.p99, 1),
    total(r, (x) => x.report.failed),
    total(r, (x) => x.report.offered - x.report.answered),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `== open loop, BATON_BUFFER_MS=0: ${RATE} webhooks/s offered for ${RATE_SECONDS} s, each a new user's first message`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    ...results.filter((r) => r.reason).map((r) => `${r.name}: n/a (${r.reason})`),
    "ack: from the webhook handed to the load generator's client (256 warm keep-alive connections) to its",
    'answer. replies/s: replies at the sink during the offer window. answered/s: users whose first reply came,',
    'from the first webhook to the last such reply. drain: last webhook to last first reply. CPU: Baton processes',
    'over window + drain, per answered webhook. not 200: webhooks answered otherwise or not at all. unanswered:',
    'users with no reply 15 s after the last webhook. send lag: the generator behind its schedule (a starved',
    'generator). Counts are summed over the runs.',
  ];
}

function chart(results: readonly ConfigResult[]): string {
  const bars = (scenario: ScenarioId, pick: (r: RunResult) => number) =>
    results
      .filter((r) => r.scenario === scenario && r.runs.length > 0)
      .map((r) => {
        const s = spread(r.runs.map(pick))!;
        return { label: r.name, median: s.median, min: s.min, max: s.max };
      });
  return barChart(
    [
      { title: 'throughput, BUFFER_MS=0', unit: 'msgs/s', bars: bars('steady', (r) => r.msgsPerSec) },
      { title: 'reply p99, BUFFER_MS=0', unit: 'ms', bars: bars('steady', (r) => r.replyP99) },
      { title: 'reply p99, bursts, BUFFER_MS=500', unit: 'ms', bars: bars('bursts', (r) => r.replyP99) },
    ],
    `Baton bench ${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} CPUs, ` +
      `median of ${REPEAT} run(s), whiskers min-max; see bench/results/latest.json`,
  );
}

async function main(): Promise<number> {
  const killAll = (): void => {
    for (const p of live) p.child.kill('SIGKILL');
  };
  const guard = setTimeout(() => {
    note(`the whole bench exceeded ${TOTAL_TIMEOUT_MS / 1000} s; stopping`);
    killAll();
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  guard.unref();
  process.once('SIGINT', () => {
    note('interrupted: stopping and deleting what this run created');
    const cleanups = Promise.all([...booted].map((t) => t.cleanup().catch(() => undefined)));
    void Promise.race([cleanups, sleep(15_000)]).finally(() => {
      killAll();
      process.exit(130);
    });
  });

  const began = Date.now();
  const load0 = loadavg();
  const redis = await redisPid();
  if (redis === null) note('Redis server pid unknown: Redis CPU not counted');
  const results: ConfigResult[] = [];
  for (const scenario of SCENARIOS) {
    if (flags.only !== undefined && flags.only !== scenario.id) continue;
    for (const config of CONFIGS.filter((c) => ONLY_CONFIGS === null || ONLY_CONFIGS.includes(c.id)))
      results.push(await measureConfig(scenario, config, redis));
  }
  const rate: RateResult[] = [];
  if (flags.only === undefined || flags.only === 'rate') {
    for (const config of CONFIGS.filter(
      (c) => !c.baseline && (ONLY_CONFIGS === null || ONLY_CONFIGS.includes(c.id)),
    ))
      rate.push(await measureRate(config));
  }
  clearTimeout(guard);
  const load1 = loadavg();

  const meta = {
    date: new Date().toISOString(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    repeat: REPEAT,
    quick: QUICK,
    loadavgBefore: load0,
    loadavgAfter: load1,
    totalSeconds: Math.round((Date.now() - began) / 1000),
    /** Names of the `evalsha:<sha>` keys in `wire.redisByCommand`. */
    scripts: SCRIPT_NAMES,
    scenarios: SCENARIOS.map((s) => ({ id: s.id, title: s.title, bufferMs: s.bufferMs, ...s.workload })),
  };
  const header = [
    `Baton bench, ${meta.date}: ${meta.cpus} CPUs (${meta.cpuModel}), Node ${meta.node}, all processes ` +
      `on this machine (loopback), shared with other work: load average ${load0[0]!.toFixed(1)} before, ` +
      `${load1[0]!.toFixed(1)} after.`,
    `Each configuration booted once per scenario, warmed up, then measured ${REPEAT} time(s) with fresh users: ` +
      `median (min-max). Closed loop, 64 webhooks in flight at most; workers --concurrency ${WORKER_CONCURRENCY} --nice ${WORKER_NICE}.${SEED_IDLE > 0 ? ` Distributed stores seeded with ${SEED_IDLE} idle sessions first.` : ''}`,
    `All users start at once and each sends its next message when the reply it waits for arrives: ` +
      `latencies include queueing at saturation (the first messages wait behind the initial backlog).`,
  ];
  const lines = [
    ...header,
    '',
    ...formatReport(results, SCENARIOS, SCRIPT_NAMES),
    '',
    ...formatRate(rate),
    ...(rate.length > 0 ? [''] : []),
    `total ${meta.totalSeconds} s`,
  ];
  for (const line of lines) process.stdout.write(`${line}\n`);

  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'latest.json'), `${JSON.stringify({ meta, results, rate }, null, 2)}\n`);
  writeFileSync(join(RESULTS, 'latest.svg'), chart(results));
  writeFileSync(join(RESULTS, 'latest.txt'), `${lines.join('\n')}\n`);
  note(`wrote bench/results/latest.json, latest.txt and latest.svg`);

  const dirty =
    results.some(
      (r) => !r.contrastOnly && (r.reason !== undefined || r.runs.some((run) => !run.verdict.clean)),
    ) || rate.some((r) => r.reason !== undefined);
  return dirty ? 1 : 0;
}

process.exitCode = await main();
