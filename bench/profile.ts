/**
 * A CPU profile of Baton under the bench's steady load, read for you.
 *
 *   node --import tsx bench/profile.ts [--mode embedded|distributed] [--users 400]
 *   node --import tsx bench/profile.ts --read <file.cpuprofile>
 *
 * Boots Baton (`node --cpu-prof bin/baton.mjs start`, or `ingress` + one `worker` with
 * `--mode distributed`, isolated by key prefix and schema like the bench), runs the steady
 * workload (BATON_BUFFER_MS=0, a quarter of messages twice), stops Baton with SIGTERM so Node
 * writes the `.cpuprofile` into bench/results/profiles/, then prints where the time went:
 * the top frames by inclusive time (a sample counts once for every distinct frame on its
 * stack) and by self time, the same grouped by package or source file, and by Baton caller
 * (the innermost Baton function on each sample's stack: which of Baton's own calls the library
 * and runtime work is done for). Open the file in Chrome DevTools (Performance tab, "Load
 * profile") or speedscope for the flame graph.
 * @module
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { runLoad, startReplySink } from '../loadgen/index.ts';
import {
  childEnv,
  freePort,
  lastWords,
  spawnNode,
  stop,
  waitForHttp,
  waitForOutput,
  type Proc,
} from './procs.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench', 'results', 'profiles');

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
/** The `.cpuprofile` format Node writes (the Chrome DevTools protocol's Profile). */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** A frame's share of the profile. */
export interface FrameShare {
  readonly key: string;
  readonly ms: number;
  readonly share: number;
}

/** What a profile says: total sampled time and the top frames and groups. */
export interface ProfileReading {
  readonly totalMs: number;
  readonly idleShare: number;
  readonly inclusive: FrameShare[];
  readonly self: FrameShare[];
  readonly groupsInclusive: FrameShare[];
  /**
   * Busy time by the innermost Baton function on the stack (`src/` or `dist/`), library and
   * runtime work below it included: which of Baton's own calls the time goes to. Samples with
   * no Baton frame count under their leaf frame, marked `(outside Baton)`.
   */
  readonly byBatonCaller: FrameShare[];
}

/** The package (`fastify`, `better-sqlite3`), Baton source file (`src/engine/x.ts`) or `node:` area of a frame. */
export function groupOf(f: CallFrame): string {
  const url = f.url;
  if (url === '') return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:'))
    return url
      .replace(/^node:(internal\/)?/, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  const own = /\/(src|dist|bench|loadgen)\/(.*)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  return url;
}

function frameKey(f: CallFrame): string {
  const where = groupOf(f);
  return `${f.functionName === '' ? '(anonymous)' : f.functionName} ${where}${f.url !== '' ? `:${f.lineNumber + 1}` : ''}`;
}

/**
 * Reads a `.cpuprofile`: inclusive and self time per frame and inclusive time per group.
 *
 * @example
 * ```ts
 * const r = readProfile(JSON.parse(readFileSync('x.cpuprofile', 'utf8')), 20);
 * r.inclusive[0]; // { key: 'processTicksAndRejections node:process/task_queues:95', ms: ..., share: ... }
 * ```
 */
export function readProfile(p: CpuProfile, top = 20): ProfileReading {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const inclusive = new Map<string, number>();
  const self = new Map<string, number>();
  const groups = new Map<string, number>();
  const callers = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i += 1) {
    // timeDeltas[i] is the time before sample i; attribute the gap after it to it.
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    const leaf = byId.get(p.samples[i]!);
    if (leaf === undefined) continue;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const k = frameKey(leaf.callFrame);
    self.set(k, (self.get(k) ?? 0) + dt);
    const seenKeys = new Set<string>();
    const seenGroups = new Set<string>();
    let caller: string | null = null;
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (f.functionName === '(root)') break;
      const key = frameKey(f);
      const group = groupOf(f);
      seenKeys.add(key);
      seenGroups.add(group);
      if (caller === null && /^(src|dist)\//.test(group)) caller = key;
    }
    caller ??= `(outside Baton) ${k}`;
    callers.set(caller, (callers.get(caller) ?? 0) + dt);
    for (const key of seenKeys) inclusive.set(key, (inclusive.get(key) ?? 0) + dt);
    for (const g of seenGroups) groups.set(g, (groups.get(g) ?? 0) + dt);
  }
  const rank = (m: Map<string, number>): FrameShare[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, ms]) => ({ key, ms, share: total > 0 ? ms / total : 0 }));
  return {
    totalMs: total,
    idleShare: total > 0 ? idle / total : 0,
    inclusive: rank(inclusive),
    self: rank(self),
    groupsInclusive: rank(groups),
    byBatonCaller: rank(callers),
  };
}

function print(file: string): void {
  const r = readProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, 25);
  const pct = (s: number): string => `${(100 * s).toFixed(1).padStart(5)}%`;
  const out = [
    `${file}: ${(r.totalMs / 1000).toFixed(1)} s sampled, ${pct(r.idleShare).trim()} idle`,
    '',
    'by group (inclusive):',
    ...r.groupsInclusive.map((f) => `  ${pct(f.share)}  ${f.key}`),
    '',
    'top frames, inclusive:',
    ...r.inclusive.map((f) => `  ${pct(f.share)}  ${f.key}`),
    '',
    'top frames, self:',
    ...r.self.map((f) => `  ${pct(f.share)}  ${f.key}`),
    '',
    'by Baton caller (the innermost Baton function on the stack, what it calls included):',
    ...r.byBatonCaller.map((f) => `  ${pct(f.share)}  ${f.key}`),
  ];
  for (const l of out) process.stdout.write(`${l}\n`);
}

async function profile(mode: 'embedded' | 'distributed', users: number): Promise<string> {
  const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const pgUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const dir = mkdtempSync(join(tmpdir(), 'baton-profile-'));
  mkdirSync(OUT, { recursive: true });
  const before = new Set(readdirSync(OUT));
  const sink = await startReplySink();
  const port = await freePort();
  const name = `bench_prof_${process.pid}`;
  const env = childEnv({
    PORT: String(port),
    HOST: '127.0.0.1',
    WHATSAPP_APP_SECRET: 's',
    WHATSAPP_API_BASE_URL: sink.url,
    ADMIN_TOKEN: 'a',
    BATON_BUFFER_MS: '0',
    LOG_LEVEL: 'warn',
    BATON_DATA_DIR: dir,
    ...(mode === 'distributed'
      ? { REDIS_URL: redisUrl, DATABASE_URL: pgUrl, BATON_REDIS_PREFIX: name, BATON_PG_SCHEMA: name }
      : {}),
  });
  const prof = ['--cpu-prof', `--cpu-prof-dir=${OUT}`];
  const procs: Proc[] = [];
  try {
    if (mode === 'embedded') {
      procs.push(spawnNode('baton start', [...prof, 'bin/baton.mjs', 'start'], env, ROOT));
    } else {
      const m = spawnNode('baton migrate', ['bin/baton.mjs', 'migrate'], env, ROOT);
      if ((await m.exited) !== '0') throw new Error(`migrate failed: ${lastWords(m)}`);
      procs.push(spawnNode('baton ingress', [...prof, 'bin/baton.mjs', 'ingress'], env, ROOT));
      procs.push(
        spawnNode(
          'baton worker',
          [...prof, 'bin/baton.mjs', 'worker', '--concurrency', process.env.BENCH_WORKER_CONCURRENCY ?? '32'],
          env,
          ROOT,
        ),
      );
    }
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/readyz`, 30_000, procs);
    if (mode === 'distributed') await waitForOutput(procs[1]!, /worker .* started/, 30_000);
    const r = await runLoad({
      url,
      adminToken: 'a',
      secret: 's',
      sink,
      users,
      seed: 7,
      chaos: { duplicates: 0.25 },
      maxInflight: 64,
    });
    process.stderr.write(
      `profile: ${r.messagesPerSec.toFixed(0)} msgs/s over ${(r.durationMs / 1000).toFixed(1)} s, verdict ${r.verdict.clean ? 'clean' : 'NOT clean'}\n`,
    );
    for (const problem of r.verdict.problems.slice(0, 5))
      process.stderr.write(`profile:   e.g. ${problem}\n`);
  } finally {
    for (const p of procs) await stop(p, 15_000);
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
    if (mode === 'distributed') {
      const c = new pg.Client({ connectionString: pgUrl });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`).finally(() => c.end());
      const redis = new Redis(redisUrl);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${name}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    }
  }
  const made = readdirSync(OUT)
    .filter((f) => f.endsWith('.cpuprofile') && !before.has(f))
    .map((f) => join(OUT, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  if (made.length === 0) throw new Error('no .cpuprofile was written (did Baton exit on SIGTERM?)');
  return made.join('\n');
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string', default: 'embedded' },
      users: { type: 'string', default: '400' },
      read: { type: 'string' },
    },
  });
  if (values.read !== undefined) print(values.read);
  else {
    const mode = values.mode === 'distributed' ? 'distributed' : 'embedded';
    const files = (await profile(mode, Number(values.users))).split('\n');
    for (const f of files) print(f);
  }
}
