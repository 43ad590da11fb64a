/**
 * Spawns real `baton` processes (the CLI, as an operator runs it, from the TypeScript
 * sources through `scripts/baton-dev.mjs`) and stops them. A child gets an explicit
 * environment: nothing of the test runner's own (no REDIS_URL, DATABASE_URL, BATON_*...)
 * leaks into it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { signMetaBody } from '../../src/providers/index.ts';

export { freePort } from '../../loadgen/ports.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** The launcher that runs `baton` from src/ (no build needed). */
export const BATON_DEV = resolve(ROOT, 'scripts/baton-dev.mjs');

/** What a child process may take from the runner's environment: where things are, no config. */
const PASSED = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT'];

/** An explicit environment for a child: the few variables in {@link PASSED}, then `extra`. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASSED) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs `baton <args>` to its end and returns its exit code and output. */
export function runBaton(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BATON_DEV, ...args], {
    cwd: ROOT,
    env: childEnv({ LOG_LEVEL: 'warn', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`baton ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

export interface BatonProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** What it wrote to stderr alone. */
  readonly stderr: () => string;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `baton <args>` and resolves once it printed `readyLine`. */
export function spawnBaton(
  args: string[],
  env: Record<string, string>,
  readyLine = /listening on|worker .* started/,
): Promise<BatonProcess> {
  const child = spawn(process.execPath, [BATON_DEV, ...args], {
    cwd: ROOT,
    // Test payloads carry fixed timestamps (T0 = 2025-06-15): a ten-year dedupe window keeps
    // them inside it, so they are not recorded `late` for being older than the window.
    env: childEnv({ LOG_LEVEL: 'warn', BATON_DEDUPE_TTL: '3650d', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const proc: BatonProcess = {
    child,
    output: () => out,
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`baton ${args.join(' ')} did not start:\n${out}`)), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (readyLine.test(out)) {
        clearTimeout(timer);
        res(proc);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
      err += d.toString();
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`baton ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

/**
 * POSTs a Cloud API webhook body to a Baton process at `base`, signed with `secret` as Meta signs
 * it; resolves with the answer's status, 0 when there was none (refused, reset, timed out).
 */
export async function postSigned(
  base: string,
  body: unknown,
  secret: string,
  timeoutMs = 10_000,
): Promise<number> {
  const raw = Buffer.from(JSON.stringify(body));
  try {
    const r = await fetch(`${base}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaBody(raw, secret) },
      body: new Uint8Array(raw),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return r.status;
  } catch {
    return 0;
  }
}
