/**
 * The Lua script loader. Each script lives in `scripts/<name>-<numkeys>.lua` with a contract
 * header; `-- @include <file>` pulls a helper from `scripts/includes/`. Scripts run with
 * EVALSHA and fall back to EVAL when Redis has forgotten them (a restart empties the script
 * cache), including inside pipelines.
 * @module
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { ChainableCommander, Redis } from 'ioredis';

export const SCRIPT_NAMES = [
  'intake',
  'lease-acquire',
  'lease-renew',
  'lease-release',
  'lease-clear',
  'reap',
  'commit',
  'state-restore',
  'outbound-update',
  'outbound-restore',
  'outbound-read',
  'ready-claim',
  'ready-cas',
  'journal-trim',
  'session-stats',
  'pending',
] as const;

export type ScriptName = (typeof SCRIPT_NAMES)[number];

export type Arg = string | number;

interface LoadedScript {
  readonly name: ScriptName;
  readonly numberOfKeys: number;
  readonly lua: string;
  readonly sha: string;
}

/** One step of a pipeline: a script or a plain command. */
export type PipelineOp =
  | { readonly script: ScriptName; readonly keys: readonly string[]; readonly args: readonly Arg[] }
  | { readonly command: string; readonly args: readonly Arg[] };

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url);

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
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
      const file = files.find((f) => new RegExp(`^${name}-\\d+\\.lua$`).test(f));
      if (file === undefined) throw new Error(`Lua script ${name}-<numkeys>.lua is missing`);
      const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)![1]);
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
    if (keys.length !== s.numberOfKeys) {
      throw new Error(`script ${name} takes ${s.numberOfKeys} keys, got ${keys.length}`);
    }
    return s;
  }

  /** Loads every script into Redis's cache (at start, so pipelines rarely meet NOSCRIPT). */
  async preload(redis: Redis): Promise<void> {
    const pipe = redis.pipeline();
    for (const s of this.scripts.values()) pipe.script('LOAD', s.lua);
    await pipe.exec();
  }

  /** Runs one script: EVALSHA, then EVAL if Redis does not have it. */
  async run(redis: Redis, name: ScriptName, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    const s = this.get(name, keys);
    try {
      return await redis.evalsha(s.sha, s.numberOfKeys, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return redis.eval(s.lua, s.numberOfKeys, ...keys, ...args);
    }
  }

  private queue(pipe: ChainableCommander, op: PipelineOp): void {
    if ('script' in op) {
      const s = this.get(op.script, op.keys);
      pipe.evalsha(s.sha, s.numberOfKeys, ...op.keys, ...op.args);
    } else {
      pipe.call(op.command, ...op.args);
    }
  }

  /**
   * Sends the ops in one round trip and returns their replies in order. Scripts Redis had
   * forgotten are run again (in their original order) with EVAL. Rejects with the first
   * other error.
   */
  async pipeline(redis: Redis, ops: readonly PipelineOp[]): Promise<unknown[]> {
    if (ops.length === 0) return [];
    const pipe = redis.pipeline();
    for (const op of ops) this.queue(pipe, op);
    const replies = await pipe.exec();
    if (replies === null) throw new Error('pipeline was discarded');
    const out: unknown[] = [];
    for (let i = 0; i < ops.length; i++) {
      const [err, value] = replies[i]!;
      const op = ops[i]!;
      if (err !== null && isNoScript(err) && 'script' in op) {
        out.push(await this.run(redis, op.script, op.keys, op.args));
      } else if (err !== null) {
        throw err;
      } else {
        out.push(value);
      }
    }
    return out;
  }
}
