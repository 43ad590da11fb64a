/**
 * A Redis Cluster of a suite's own: three masters (no replicas) on free loopback ports, each
 * `redis-server --cluster-enabled yes` in its own temporary directory with the AOF on (fsync
 * always), joined with `redis-cli --cluster create`, ready once every node reports
 * `cluster_state:ok`. Stopped by PID; its directories are removed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { freePortWith } from '../../loadgen/ports.ts';
import { childEnv } from '../support/procs.ts';

const run = promisify(execFile);

/** A running private Redis Cluster. */
export interface PrivateCluster {
  readonly ports: readonly number[];
  /** The seed nodes, comma-separated (`redis://127.0.0.1:<p1>,redis://127.0.0.1:<p2>,...`). */
  readonly url: string;
  /** SIGKILLs the node on `port` by PID, as a crashed master. */
  kill(port: number): Promise<void>;
  /**
   * SIGKILLs the node on `port` and starts it again without its data (its AOF removed, its
   * cluster identity kept): a master that lost everything rejoins, serving its slots empty.
   * Resolves once every node reports `cluster_state:ok` again.
   */
  restartEmpty(port: number): Promise<void>;
  /** SIGKILLs every node by PID and removes their directories. */
  stop(): Promise<void>;
}

interface Node {
  readonly port: number;
  readonly dir: string;
  readonly proc: ChildProcess;
}

/** Starts a 3-master cluster and resolves once every node serves every slot. */
export async function startPrivateCluster(masters = 3): Promise<PrivateCluster> {
  const nodes: Node[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => killHard(n.proc)));
    for (const n of nodes) rmSync(n.dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(await spawnNode());
    const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 30_000,
    });
    await waitClusterOk(nodes.map((n) => n.port));
  } catch (err) {
    await stop();
    throw err;
  }
  const ports = nodes.map((n) => n.port);
  const at = (port: number): number => nodes.findIndex((n) => n.port === port);
  const kill = (port: number) => killHard(nodes[at(port)]!.proc);
  const restartEmpty = async (port: number): Promise<void> => {
    const i = at(port);
    const old = nodes[i]!;
    await killHard(old.proc);
    rmSync(join(old.dir, 'appendonlydir'), { recursive: true, force: true });
    nodes[i] = await spawnNode({ port: old.port, dir: old.dir });
    await waitClusterOk(ports);
  };
  return { ports, url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','), kill, restartEmpty, stop };
}

async function spawnNode(again?: { port: number; dir: string }): Promise<Node> {
  const dir = again?.dir ?? mkdtempSync(join(tmpdir(), 'baton-cluster-'));
  // Its cluster bus listens on the port plus 10000: both free.
  const port = again?.port ?? (await freePortWith(10_000));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    join(dir, 'nodes.conf'),
    '--cluster-node-timeout',
    '5000',
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    '--save',
    '',
    '--dir',
    dir,
  ];
  try {
    const proc = await new Promise<ChildProcess>((resolve, reject) => {
      const p = spawn('redis-server', args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) resolve(p);
      });
      p.once('error', reject);
      p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
    return { port, dir, proc };
  } catch (err) {
    if (again === undefined) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function waitClusterOk(ports: readonly number[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(
      ports.map(async (port) => {
        const { stdout } = await run('redis-cli', ['-p', String(port), 'cluster', 'info']);
        return /cluster_state:ok/.test(stdout);
      }),
    );
    if (states.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error('Redis Cluster did not reach cluster_state:ok');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function killHard(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    process.kill(p.pid!, 'SIGKILL');
  });
}

/**
 * A private cluster for the enclosing suite: started before its tests, stopped after them. The
 * returned object reads through to it (use it inside tests and hooks only).
 */
export function usePrivateCluster(): PrivateCluster {
  let cluster: PrivateCluster | undefined;
  beforeAll(async () => {
    cluster = await startPrivateCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  const started = (): PrivateCluster => {
    if (cluster === undefined) throw new Error('the private cluster is not started yet');
    return cluster;
  };
  return {
    get ports() {
      return started().ports;
    },
    get url() {
      return started().url;
    },
    kill: (port) => started().kill(port),
    restartEmpty: (port) => started().restartEmpty(port),
    stop: () => started().stop(),
  };
}
