/**
 * CPU accounting from the operating system, for the bench: `/proc/<pid>/stat` utime+stime of
 * every process of a run (Baton's processes and their descendants, the Redis server, the
 * PostgreSQL backends serving Baton), the machine's busy time from `/proc/stat`, and the wire
 * counts the preload `bench/hooks/wire-count.mjs` leaves in a directory.
 * @module
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Clock ticks per second of `/proc` times (USER_HZ; 100 on Linux everywhere that matters). */
const HZ = 100;

/** utime+stime of `pid` in milliseconds, or null when the process is gone or unreadable. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): utime is field 14, stime field 15.
    return ((Number(f[11]) + Number(f[12])) * 1000) / HZ;
  } catch {
    return null;
  }
}

/** The parent pid of `pid`, or null. */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** `roots` and every live descendant of them. */
export function withDescendants(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [...roots];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    const ppid = parentOf(pid);
    if (ppid === null) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU milliseconds of a set of processes at one instant. */
export type CpuSnapshot = ReadonlyMap<number, number>;

/** Reads the CPU time of each pid that is alive. */
export function snapshot(pids: readonly number[]): CpuSnapshot {
  const m = new Map<number, number>();
  for (const pid of pids) {
    const v = cpuMs(pid);
    if (v !== null) m.set(pid, v);
  }
  return m;
}

/**
 * CPU milliseconds spent between two snapshots: pids only in `after` count in full (they
 * started during the interval), pids gone from `after` are lost (not counted).
 */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let total = 0;
  for (const [pid, v] of after) total += v - (before.get(pid) ?? 0);
  return total;
}

/** Busy and total CPU milliseconds of the whole machine (all cores) from `/proc/stat`. */
export function machineCpu(): { busyMs: number; totalMs: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busyMs: ((total - idle) * 1000) / HZ, totalMs: (total * 1000) / HZ };
  } catch {
    return { busyMs: 0, totalMs: 0 };
  }
}

/** What the processes of a run wrote to Redis and PostgreSQL (see bench/hooks/wire-count.mjs). */
export interface WireCounts {
  redisWrites: number;
  redisCommands: number;
  pgWrites: number;
  pgStatements: number;
  pgRoundTrips: number;
  /** Redis commands by name; EVALSHA as `evalsha:<sha>` (see {@link scriptNamesBySha}). */
  redisByCommand: Record<string, number>;
}

const NUMERIC = ['redisWrites', 'redisCommands', 'pgWrites', 'pgStatements', 'pgRoundTrips'] as const;

/** No counts. */
export function noWire(): WireCounts {
  return {
    redisWrites: 0,
    redisCommands: 0,
    pgWrites: 0,
    pgStatements: 0,
    pgRoundTrips: 0,
    redisByCommand: {},
  };
}

/** The sum of every count file in `dir`. */
export function readWire(dir: string): WireCounts {
  const sum = noWire();
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return sum;
  }
  for (const f of files) {
    try {
      const c = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Partial<WireCounts>;
      for (const k of NUMERIC) sum[k] += Number(c[k] ?? 0);
      for (const [cmd, n] of Object.entries(c.redisByCommand ?? {})) {
        sum.redisByCommand[cmd] = (sum.redisByCommand[cmd] ?? 0) + n;
      }
    } catch {
      // a file gone with its process (files are replaced whole, never read half written)
    }
  }
  return sum;
}

/** `after - before`, field by field. */
export function wireBetween(before: WireCounts, after: WireCounts): WireCounts {
  const d = noWire();
  for (const k of NUMERIC) d[k] = after[k] - before[k];
  for (const [cmd, n] of Object.entries(after.redisByCommand)) {
    const delta = n - (before.redisByCommand[cmd] ?? 0);
    if (delta > 0) d.redisByCommand[cmd] = delta;
  }
  return d;
}

/**
 * The SHA1 of each of Baton's Lua scripts as the distributed backend loads them (includes
 * expanded), so `evalsha:<sha>` counts can be named. Mirrors `ScriptSet.load` in
 * src/backends/distributed/scripts.ts; an empty map when the directory is missing.
 */
export function scriptNamesBySha(scriptsDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  let files: string[] = [];
  try {
    files = readdirSync(scriptsDir).filter((f) => f.endsWith('.lua'));
  } catch {
    return out;
  }
  for (const f of files) {
    const lua = readFileSync(join(scriptsDir, f), 'utf8').replace(
      /^-- @include ([\w-]+)$/gm,
      (_m, inc: string) => readFileSync(join(scriptsDir, 'includes', `${inc}.lua`), 'utf8'),
    );
    out[createHash('sha1').update(lua).digest('hex')] = f.replace(/\.lua$/, '');
  }
  return out;
}
