/**
 * A Redis of a test's own, for tests that kill and restart it: `redis-server` on a free
 * loopback port, in a fresh temporary directory, with the AOF on (fsync always) and RDB
 * snapshots off, so a restart replays exactly what was acknowledged; or, with `persist:
 * false`, keeping nothing on disk, so a restart comes back empty. Stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv, freePort } from './procs.ts';

/** A running private Redis. */
export interface PrivateRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** SIGKILLs the server by PID and waits for its exit (at once when it is not running). */
  kill(): Promise<void>;
  /**
   * Starts it again on the same port and directory: it replays its AOF. With `persist`, with
   * those settings instead (a supervisor restarting it with another configuration); with `wipe`,
   * with its directory emptied first (its AOF lost: back empty, though it persists again).
   */
  restart(o?: { persist?: boolean; wipe?: boolean }): Promise<void>;
  /** Kills it and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts a private Redis and resolves once it accepts connections: on `port` when given (the
 * caller found it free), otherwise on one the OS picks.
 */
export async function startPrivateRedis(o: { persist?: boolean; port?: number } = {}): Promise<PrivateRedis> {
  const persist = o.persist ?? true;
  const dir = mkdtempSync(join(tmpdir(), 'baton-redis-'));
  const port = o.port ?? (await freePort());
  let server: ChildProcess;
  try {
    server = await spawnRedis(port, dir, persist);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: () => killHard(server),
    async restart(again = {}) {
      if (again.wipe === true) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
      }
      server = await spawnRedis(port, dir, again.persist ?? persist);
    },
    async stop() {
      await killHard(server);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function spawnRedis(port: number, dir: string, persist: boolean): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const args = ['--port', String(port), '--bind', '127.0.0.1'];
    const durability = persist
      ? ['--appendonly', 'yes', '--appendfsync', 'always', '--save', '']
      : ['--appendonly', 'no', '--save', ''];
    const p = spawn('redis-server', [...args, ...durability, '--dir', dir], {
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve(p);
    });
    p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
}

function killHard(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    process.kill(p.pid!, 'SIGKILL');
  });
}
