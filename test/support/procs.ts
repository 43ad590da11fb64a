/**
 * Spawns real `baton` processes (the CLI, as an operator runs it) and stops them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

export interface BatonProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function freePort(): Promise<number> {
  return new Promise((res) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/** Starts `baton <args>` and resolves once it printed `readyLine`. */
export function spawnBaton(
  args: string[],
  env: Record<string, string>,
  readyLine = /listening on|worker .* started/,
): Promise<BatonProcess> {
  const child = spawn(process.execPath, [resolve(ROOT, 'bin/baton.mjs'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const proc: BatonProcess = {
    child,
    output: () => out,
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
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`baton ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}
