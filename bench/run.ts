/**
 * `npm run bench` (SPEC section 7): one run, on this machine, of the same workload against
 * embedded Baton, distributed Baton with 1 and with 2 worker processes, and the seed article's
 * own algorithm (bench/baseline/server.ts). Prints one table: messages/s end to end (webhook in
 * to reply at the sink), webhook ack p50/p99, reply latency p50/p99 (BATON_BUFFER_MS=0), peak
 * RSS of the server processes (VmHWM), and the load generator's verdict counts.
 *
 * Each row spawns its processes (`node bin/baton.mjs ...`) on loopback, warms up, runs the
 * workload, reads peak RSS and tears down. Distributed rows use Redis db 5 (FLUSHDB'd) and a
 * fresh PostgreSQL database (dropped after); the baseline uses Redis db 6. Every row and the
 * whole run are bounded in time. A row that cannot run prints "n/a (reason)".
 *
 * Environment: `BENCH_REDIS_URL` (default redis://127.0.0.1:6379), `BENCH_DATABASE_URL`
 * (an existing database to connect to for CREATE/DROP DATABASE; default
 * postgres://postgres@127.0.0.1:5432/test), `BENCH_USERS` (default 200).
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { runLoad, startReplySink, type LoadReport, type ReplySink } from '../loadgen/index.ts';
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
import { formatTable, type Row } from './table.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SECRET = 'bench-app-secret';
const ADMIN = 'bench-admin-token';
const REDIS_BASE = (process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379').replace(/\/\d*$/, '');
const PG_ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const USERS = Number(process.env.BENCH_USERS ?? 200);
const DISTRIBUTED_DB = 5;
const BASELINE_DB = 6;
const ROW_TIMEOUT_MS = 100_000;
const TOTAL_TIMEOUT_MS = 300_000;

/** The fixed workload: the order flow, [hi, name] bursts, a quarter of messages delivered twice. */
const WORKLOAD = {
  users: USERS,
  seed: 42,
  chaos: { duplicates: 0.25, shuffle: false, splitTexts: false, concurrentBursts: false },
  replyTimeoutMs: 10_000,
  maxInflight: 64,
  settleTimeoutMs: 8_000,
  keepSamples: true,
} as const;
const WARMUP = { ...WORKLOAD, users: 20, seed: 1 };

const live = new Set<Proc>();

function note(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

interface Target {
  readonly url: string;
  readonly procs: Proc[];
  readonly cleanup: () => Promise<void>;
}

function start(name: string, args: string[], env: Record<string, string>): Proc {
  const p = spawnNode(name, args, env, ROOT);
  live.add(p);
  void p.exited.then(() => live.delete(p));
  return p;
}

async function flushRedisDb(db: number): Promise<void> {
  const r = new Redis(`${REDIS_BASE}/${db}`, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
  });
  try {
    await r.connect();
    await r.flushdb();
  } finally {
    r.disconnect();
  }
}

async function pgAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function batonEnv(sink: ReplySink, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return childEnv({
    PORT: String(port),
    HOST: '127.0.0.1',
    WHATSAPP_APP_SECRET: SECRET,
    WHATSAPP_API_BASE_URL: sink.url,
    ADMIN_TOKEN: ADMIN,
    BATON_BUFFER_MS: '0',
    LOG_LEVEL: 'warn',
    ...extra,
  });
}

async function embedded(sink: ReplySink): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const port = await freePort();
  const p = start('baton start', ['bin/baton.mjs', 'start'], batonEnv(sink, port, { BATON_DATA_DIR: dir }));
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async (): Promise<void> => {
    await stop(p);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(`${url}/readyz`, 30_000, [p]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { url, procs: [p], cleanup };
}

async function distributed(sink: ReplySink, workers: number): Promise<Target> {
  const database = `baton_bench_${process.pid}_${workers}`;
  const redisUrl = `${REDIS_BASE}/${DISTRIBUTED_DB}`;
  await flushRedisDb(DISTRIBUTED_DB);
  await pgAdmin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${database}`);
  });
  const dbUrl = new URL(PG_ADMIN_URL);
  dbUrl.pathname = `/${database}`;
  const port = await freePort();
  const env = batonEnv(sink, port, { REDIS_URL: redisUrl, DATABASE_URL: dbUrl.toString() });
  const procs: Proc[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.all(procs.map((p) => stop(p)));
    await pgAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => undefined);
    await flushRedisDb(DISTRIBUTED_DB).catch(() => undefined);
  };
  try {
    const migrate = start('baton migrate', ['bin/baton.mjs', 'migrate'], env);
    const timer = setTimeout(() => migrate.child.kill('SIGKILL'), 60_000);
    const code = await migrate.exited;
    clearTimeout(timer);
    if (code !== '0') throw new Error(`baton migrate exited ${code}: ${lastWords(migrate)}`);
    procs.push(start('baton ingress', ['bin/baton.mjs', 'ingress'], env));
    for (let i = 0; i < workers; i += 1) {
      procs.push(start(`baton worker ${i + 1}`, ['bin/baton.mjs', 'worker', '--concurrency', '8'], env));
    }
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/readyz`, 30_000, procs);
    await Promise.all(procs.slice(1).map((p) => waitForOutput(p, /worker .* started/, 30_000)));
    return { url, procs, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function baseline(sink: ReplySink): Promise<Target> {
  await flushRedisDb(BASELINE_DB);
  const port = await freePort();
  const env = childEnv({
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_URL: `${REDIS_BASE}/${BASELINE_DB}`,
    WHATSAPP_APP_SECRET: SECRET,
    WHATSAPP_API_BASE_URL: sink.url,
    ADMIN_TOKEN: ADMIN,
    BASELINE_WORKERS: '8',
  });
  const p = start('baseline', ['--import', 'tsx', 'bench/baseline/server.ts'], env);
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async (): Promise<void> => {
    await stop(p);
    await flushRedisDb(BASELINE_DB).catch(() => undefined);
  };
  try {
    await waitForHttp(`${url}/healthz`, 30_000, [p]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { url, procs: [p], cleanup };
}

/** Runs one row within ROW_TIMEOUT_MS. */
async function measure(name: string, boot: (sink: ReplySink) => Promise<Target>): Promise<Row> {
  const began = Date.now();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ROW_TIMEOUT_MS);
  const sink = await startReplySink();
  let target: Target | undefined;
  try {
    note(`${name}: starting`);
    target = await boot(sink);
    const t = target;
    const run = (w: typeof WORKLOAD | typeof WARMUP): Promise<LoadReport> =>
      runLoad({ url: t.url, adminToken: ADMIN, secret: SECRET, sink, signal: abort.signal, ...w });
    note(`${name}: warm-up (${WARMUP.users} users)`);
    await run(WARMUP);
    note(`${name}: measuring (${WORKLOAD.users} users)`);
    const report = await run(WORKLOAD);
    if (abort.signal.aborted) throw new Error(`row did not finish within ${ROW_TIMEOUT_MS / 1000} s`);
    const dead = t.procs.find((p) => p.exitedWith !== null);
    if (dead) throw new Error(`${dead.name} exited during the run: ${lastWords(dead)}`);
    const rss = t.procs.map((p) => peakRss(p.pid) ?? 0);
    note(`${name}: done in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    const warnings = new Map<string, number>();
    for (const p of t.procs) {
      for (const [msg, n] of p.warnings) {
        if (!msg.startsWith('DURABILITY WARNING')) warnings.set(msg, (warnings.get(msg) ?? 0) + n);
      }
    }
    return { name, report, rssBytes: rss, warnings };
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]!;
    note(`${name}: n/a (${reason})`);
    return { name, reason };
  } finally {
    clearTimeout(timer);
    if (target) await target.cleanup().catch(() => undefined);
    await sink.close();
  }
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
    killAll();
    process.exit(130);
  });

  const began = Date.now();
  const rows: Row[] = [];
  rows.push(await measure('embedded', embedded));
  rows.push(await measure('distributed, 1 worker', (s) => distributed(s, 1)));
  rows.push(await measure('distributed, 2 workers', (s) => distributed(s, 2)));
  rows.push(await measure('baseline (article)', baseline));
  clearTimeout(guard);

  const header = [
    `Baton bench, ${new Date().toISOString()}: ${cpus().length} CPUs, Node ${process.version}, ` +
      `all processes on this machine (loopback).`,
    `Workload per row: ${WORKLOAD.users} users x 5 messages through the order flow (hi+name as a burst, ` +
      `product button, address, confirm), ${WORKLOAD.chaos.duplicates * 100}% of messages delivered twice ` +
      `(same wamid), after a ${WARMUP.users}-user warm-up; BATON_BUFFER_MS=0; workers --concurrency 8.`,
    `Closed loop: all users start at once and each sends its next message when the reply it waits for ` +
      `arrives, so latencies include queueing at saturation. Peak RSS: VmHWM of the server processes ` +
      `(ingress+workers). lost/duplicated/out of order/dup prompts: the load generator's verdict.`,
    '',
  ];
  for (const line of [
    ...header,
    ...formatTable(rows),
    '',
    `total ${((Date.now() - began) / 1000).toFixed(0)} s`,
  ]) {
    process.stdout.write(`${line}\n`);
  }
  const batonDirty = rows.some((r) => r.name !== 'baseline (article)' && r.report && !r.report.verdict.clean);
  return batonDirty ? 1 : 0;
}

process.exitCode = await main();
