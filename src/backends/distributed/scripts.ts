/**
 * The Lua script loader. Each script lives in `scripts/<name>-<numkeys>.lua` with a contract
 * header (`<name>-n.lua` takes any number of keys, at least one); `-- @include <file>` pulls a helper from `scripts/includes/`. Scripts run with
 * EVALSHA and fall back to EVAL when Redis has forgotten them (a restart empties the script
 * cache), including inside pipelines.
 * @module
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Redis, type ChainableCommander, type Cluster } from 'ioredis';
import { masterNodes, nodeGroupOfKey, type RedisClient } from './redis-client.ts';

export const SCRIPT_NAMES = [
  'intake',
  'lease-acquire',
  'lease-renew',
  'lease-release',
  'lease-release-or-take',
  'lease-clear',
  'reap',
  'commit',
  'state-restore',
  'outbound-update',
  'outbound-claim',
  'outbound-restore',
  'outbound-read',
  'ready-claim',
  'ready-cas',
  'journal-trim',
  'stats-pending',
  'pending',
  'session-idle',
  'session-era',
  'alerts-lead',
  'user-bind',
] as const;

export type ScriptName = (typeof SCRIPT_NAMES)[number];

export type Arg = string | number;

interface LoadedScript {
  readonly name: ScriptName;
  /** null: any number of keys, at least one. */
  readonly numberOfKeys: number | null;
  readonly lua: string;
  readonly sha: string;
}

/**
 * One step of a pipeline: a script or a plain command. A command's key is its first argument,
 * except PUBLISH's (a channel, no key).
 */
export type PipelineOp = ScriptOp | { readonly command: string; readonly args: readonly Arg[] };

/** A script call, in a pipeline or alone. */
export interface ScriptOp {
  readonly script: ScriptName;
  readonly keys: readonly string[];
  readonly args: readonly Arg[];
}

/** The key that decides which cluster node runs `op`, or null for a keyless one. */
function keyOf(op: PipelineOp): string | null {
  if ('script' in op) return op.keys[0] ?? null;
  if (op.command.toUpperCase() === 'PUBLISH') return null;
  return op.args.length > 0 ? String(op.args[0]) : null;
}

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url);

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/**
 * A cluster refusal that means the op did not run there (the slot moved, is migrating, or the
 * cluster is momentarily down): the op can be sent again on its own, which follows redirections.
 */
function isRefusedByCluster(err: unknown): boolean {
  return err instanceof Error && /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/.test(err.message);
}

export class ScriptSet {
  private readonly scripts: ReadonlyMap<ScriptName, LoadedScript>;

  private constructor(scripts: ReadonlyMap<ScriptName, LoadedScript>) {
    this.scripts = scripts;
  }

  /** Reads every script of `scripts/` once; fails if one named in SCRIPT_NAMES is missing. */
  static load(): ScriptSet {
    const files = readdirSync(SCRIPTS_DIR).filter((f) => f.endsWith('.lua'));
    const found = new Map<ScriptName, LoadedScript>();
    for (const name of SCRIPT_NAMES) {
      const file = files.find((f) => new RegExp(`^${name}-(\\d+|n)\\.lua$`).test(f));
      if (file === undefined) throw new Error(`Lua script ${name}-<numkeys>.lua is missing`);
      const count = /-(\d+|n)\.lua$/.exec(file)![1]!;
      const numberOfKeys = count === 'n' ? null : Number(count);
      const lua = readFileSync(new URL(file, SCRIPTS_DIR), 'utf8').replace(
        /^-- @include ([\w-]+)$/gm,
        (_m, inc: string) => readFileSync(new URL(`includes/${inc}.lua`, SCRIPTS_DIR), 'utf8'),
      );
      found.set(name, { name, numberOfKeys, lua, sha: createHash('sha1').update(lua).digest('hex') });
    }
    return new ScriptSet(found);
  }

  private get(name: ScriptName, keys: readonly string[]): LoadedScript {
    const s = this.scripts.get(name)!;
    if (s.numberOfKeys === null ? keys.length === 0 : keys.length !== s.numberOfKeys) {
      throw new Error(`script ${name} takes ${s.numberOfKeys ?? 'one or more'} keys, got ${keys.length}`);
    }
    return s;
  }

  /**
   * Loads every script into Redis's cache, on every master of a cluster (at start, so
   * pipelines rarely meet NOSCRIPT).
   */
  async preload(redis: RedisClient): Promise<void> {
    await Promise.all(
      masterNodes(redis).map(async (node) => {
        const pipe = node.pipeline();
        for (const s of this.scripts.values()) pipe.script('LOAD', s.lua);
        await pipe.exec();
      }),
    );
  }

  /** Runs one script: EVALSHA, then EVAL if Redis does not have it. */
  async run(
    redis: RedisClient,
    name: ScriptName,
    keys: readonly string[],
    args: readonly Arg[],
  ): Promise<unknown> {
    const s = this.get(name, keys);
    try {
      return await redis.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return redis.eval(s.lua, keys.length, ...keys, ...args);
    }
  }

  private queue(pipe: ChainableCommander, op: PipelineOp): void {
    if ('script' in op) {
      const s = this.get(op.script, op.keys);
      pipe.evalsha(s.sha, op.keys.length, ...op.keys, ...op.args);
    } else {
      pipe.call(op.command, ...op.args);
    }
  }

  /** Runs one op on its own (a cluster client routes it and follows redirections). */
  private runOne(redis: RedisClient, op: PipelineOp): Promise<unknown> {
    return 'script' in op ? this.run(redis, op.script, op.keys, op.args) : redis.call(op.command, ...op.args);
  }

  /**
   * Sends the ops in one round trip and returns their replies in order. Scripts Redis had
   * forgotten are run again (in their original order) with EVAL. Rejects with the first
   * other error.
   *
   * `after` holds ops that must reach Redis after `ops` have run (a notice of what `ops`
   * wrote): a single node gets them at the end of the same pipeline; a cluster gets them once
   * `ops` have answered, since `ops` and `after` may live on different nodes. On a cluster,
   * each stage is split into one pipeline per node, all sent at once: the ops of one node
   * (so all ops of one session, whose keys share a slot) keep their order, ops of different
   * nodes run concurrently. A keyless op (PUBLISH) goes with the op before it.
   */
  async pipeline(
    redis: RedisClient,
    ops: readonly PipelineOp[],
    after: readonly PipelineOp[] = [],
  ): Promise<unknown[]> {
    if (redis instanceof Redis) return this.nodePipeline(redis, [...ops, ...after]);
    const first = await this.clusterStage(redis, ops);
    return after.length === 0 ? first : [...first, ...(await this.clusterStage(redis, after))];
  }

  private async clusterStage(cluster: Cluster, ops: readonly PipelineOp[]): Promise<unknown[]> {
    const groups = new Map<string, number[]>();
    let current: number[] | undefined;
    ops.forEach((op, i) => {
      const key = keyOf(op);
      if (key !== null) {
        const group = nodeGroupOfKey(cluster, key);
        current = groups.get(group);
        if (!current) groups.set(group, (current = []));
      } else if (!current) {
        groups.set('', (current = []));
      }
      current.push(i);
    });
    const out: unknown[] = new Array(ops.length);
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const replies = await this.nodePipeline(
          cluster,
          indexes.map((i) => ops[i]!),
        );
        indexes.forEach((i, j) => (out[i] = replies[j]));
      }),
    );
    return out;
  }

  /**
   * The ops as an ioredis pipeline: a cluster client routes it to the node serving its keys, and
   * follows a slot's move.
   */
  private async piped(
    redis: RedisClient,
    ops: readonly PipelineOp[],
  ): Promise<Array<[Error | null, unknown]>> {
    const pipe = redis.pipeline();
    for (const op of ops) this.queue(pipe, op);
    const replies = await pipe.exec();
    if (replies === null) throw new Error('pipeline was discarded');
    return replies;
  }

  /**
   * The ops as commands of their own on a single node's connection, which keeps their order, and
   * whose writes of one event-loop turn leave as one flush anyway (coalesce.ts): an ioredis
   * `Pipeline` object cost the process more than the commands it carried (about 12 us a use,
   * measured with one script, against 12 us for the script itself), and a turn uses several.
   */
  private commands(redis: Redis, ops: readonly PipelineOp[]): Promise<Array<[Error | null, unknown]>> {
    const shas = ops.map((op) => ('script' in op ? this.get(op.script, op.keys).sha : null));
    return Promise.all(
      ops.map((op, i) => {
        const sent =
          'script' in op
            ? redis.evalsha(shas[i]!, op.keys.length, ...op.keys, ...op.args)
            : redis.call(op.command, ...op.args);
        return sent.then(
          (value): [null, unknown] => [null, value],
          (err: unknown): [Error, null] => [err instanceof Error ? err : new Error(String(err)), null],
        );
      }),
    );
  }

  /** One pipeline to one node (on a cluster, every op's key is served by the same node). */
  private async nodePipeline(redis: RedisClient, ops: readonly PipelineOp[]): Promise<unknown[]> {
    if (ops.length === 0) return [];
    const replies = redis instanceof Redis ? await this.commands(redis, ops) : await this.piped(redis, ops);
    const out: unknown[] = [];
    for (let i = 0; i < ops.length; i++) {
      const [err, value] = replies[i]!;
      const op = ops[i]!;
      if (err !== null && isNoScript(err) && 'script' in op) {
        out.push(await this.run(redis, op.script, op.keys, op.args));
      } else if (err !== null && !(redis instanceof Redis) && isRefusedByCluster(err)) {
        out.push(await this.runOne(redis, op));
      } else if (err !== null) {
        throw err;
      } else {
        out.push(value);
      }
    }
    return out;
  }
}
