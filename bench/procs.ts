/**
 * Child processes for the bench: spawn with a clean environment, wait until ready, read peak
 * RSS from `/proc/<pid>/status`, stop (SIGTERM, then SIGKILL).
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export { freePort } from '../loadgen/ports.ts';

/** A spawned process and what it printed. */
export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last lines of stdout and stderr. */
  readonly tail: string[];
  /** Log messages at warn level or above (pino JSON lines), with how often each came. */
  readonly warnings: Map<string, number>;
  /** Resolves with the exit code (or signal name) when it exits. */
  readonly exited: Promise<string>;
  exitedWith: string | null;
}

/** Environment variables a bench child must not inherit from the shell. */
const SCRUB =
  /^(REDIS_URL|DATABASE_URL|AMQP_URL|ADMIN_TOKEN|PORT|HOST|LOG_LEVEL|BATON_.*|WHATSAPP_.*|WASENDER_.*)$/;

/** `process.env` without Baton's own variables, plus `extra`. */
export function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !SCRUB.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** The message of a pino JSON line at warn level or above, else null. */
function pinoWarning(line: string): string | null {
  if (!line.startsWith('{')) return null;
  try {
    const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
    return typeof entry.level === 'number' && entry.level >= 40 ? String(entry.msg).slice(0, 120) : null;
  } catch {
    return null;
  }
}

/** Spawns `node <args>` in `cwd`. */
export function spawnNode(name: string, args: string[], env: Record<string, string>, cwd: string): Proc {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const warnings = new Map<string, number>();
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      const warning = pinoWarning(line);
      if (warning !== null) warnings.set(warning, (warnings.get(warning) ?? 0) + 1);
      tail.push(line.slice(0, 400));
      if (tail.length > 30) tail.shift();
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const proc: Proc = {
    name,
    child,
    pid: child.pid ?? -1,
    tail,
    warnings,
    exitedWith: null,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        proc.exitedWith = signal ?? String(code);
        resolve(proc.exitedWith);
      });
    }),
  };
  return proc;
}

/** Resolves once a line of `proc`'s output matches `pattern`; rejects on exit or timeout. */
export function waitForOutput(proc: Proc, pattern: RegExp, timeoutMs: number): Promise<void> {
  if (proc.tail.some((l) => pattern.test(l))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      if (pattern.test(chunk.toString('utf8'))) finish();
    };
    const onExit = (): void => {
      finish(new Error(`${proc.name} exited (${proc.exitedWith ?? '?'}): ${lastWords(proc)}`));
    };
    const timer = setTimeout(
      () => finish(new Error(`${proc.name} not ready within ${timeoutMs} ms: ${lastWords(proc)}`)),
      timeoutMs,
    );
    function finish(err?: Error): void {
      clearTimeout(timer);
      proc.child.stdout?.off('data', onData);
      proc.child.stderr?.off('data', onData);
      proc.child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    }
    proc.child.stdout?.on('data', onData);
    proc.child.stderr?.on('data', onData);
    proc.child.once('exit', onExit);
  });
}

/** The most telling of the last output lines (an error if there is one), shortened. */
export function lastWords(proc: Proc): string {
  const lines = proc.tail.filter((l) => !/^\s+at /.test(l));
  const err = lines.find((l) => /error|Error|refused|ECONN|cannot|Cannot/.test(l));
  const pick = err ?? lines[lines.length - 1] ?? '(no output)';
  return pick.replace(/\s+/g, ' ').slice(0, 160);
}

/** Polls `url` until it answers 200. */
export async function waitForHttp(url: string, timeoutMs: number, procs: readonly Proc[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((p) => p.exitedWith !== null);
    if (dead) throw new Error(`${dead.name} exited (${dead.exitedWith ?? '?'}): ${lastWords(dead)}`);
    try {
      const r = await fetch(url);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Peak resident set size of `pid` in bytes (`VmHWM`), or null when unreadable. */
export function peakRss(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Stops `proc`: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(proc: Proc, graceMs = 5000): Promise<void> {
  if (proc.exitedWith !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
}
