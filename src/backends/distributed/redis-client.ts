/**
 * The Redis connection of the distributed backend: one standalone node, or a Redis Cluster
 * (`BATON_REDIS_CLUSTER=true`; `REDIS_URL` then lists one or more seed nodes, comma-separated).
 *
 * Both are built fail-fast (no offline queue, no per-command retries), so intake answers 503
 * instead of hanging while Redis is away. This module also holds what differs between the two:
 * the nodes to run node-level commands on (SCAN, SCRIPT LOAD, CONFIG GET, PING), the hash slot
 * of a key, and the node serving it.
 * @module
 */
import { Cluster, Redis } from 'ioredis';
import { coalesceWrites } from './coalesce.ts';
import { dropWhenSilent, type SilenceWatch } from './silent-connection.ts';
import { installStallSafeCommandTimeout } from './stall-safe-timeout.ts';

installStallSafeCommandTimeout();

/** A standalone Redis or a Redis Cluster client. */
export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** One `redis://` URL, or (cluster) seed-node URLs separated by commas. */
  readonly url: string;
  readonly cluster: boolean;
  /** Per-command timeout, ms. */
  readonly commandTimeoutMs: number;
  /**
   * A connection that hears nothing from Redis for about this long while a command waits is
   * dropped and made again (`./silent-connection.ts`); default the command timeout + 1 s.
   */
  readonly silentMs?: number;
  /** Told of each connection dropped that way. */
  readonly onSilent?: (address: string, silentMs: number) => void;
}

const CONNECT_TIMEOUT_MS = 3000;

function retryStrategy(times: number): number {
  return Math.min(50 * times, 1000);
}

/** Host, port and credentials of each seed node; the first one's credentials and TLS apply to all. */
export function parseClusterSeeds(url: string): {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
} {
  const urls = url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => new URL(s));
  if (urls.length === 0) throw new Error('no Redis Cluster seed node given');
  const first = urls[0]!;
  return {
    nodes: urls.map((u) => ({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) })),
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    tls: first.protocol === 'rediss:',
  };
}

/**
 * Coalesces the writes of `node`'s connection (see `./coalesce.ts`); a reconnect makes a new
 * socket, wrapped on `connect`.
 */
export function coalesceNodeWrites(node: Redis): void {
  node.on('connect', () => coalesceWrites((node as unknown as { stream?: unknown }).stream));
}

/** Drops the connections of `client` (each node's, on a cluster) that go silent (`./silent-connection.ts`). */
function watchSilence(client: RedisClient, watch: SilenceWatch): void {
  if (client instanceof Redis) dropWhenSilent(client, watch);
  else client.on('+node', (node: Redis) => dropWhenSilent(node, watch));
}

/**
 * Calls `fn` when a cluster's topology moved in a way that may have lost writes, which the
 * client's own 'ready' does not tell: a node's connection ready again (a master restarted,
 * perhaps empty), or another set of masters after a slots refresh (a replica promoted, which may
 * lack the old master's last writes). Nothing on a single node: its 'ready' says it all.
 */
export function onNodeChange(client: RedisClient, fn: () => void): void {
  if (client instanceof Redis) return;
  const mastersOf = (): string => masterNodes(client).map(nodeAddress).sort().join(',');
  let masters = mastersOf();
  client.on('refresh', () => {
    const now = mastersOf();
    if (now === masters) return;
    masters = now;
    fn();
  });
  const watchNode = (node: Redis): void => void node.on('ready', fn);
  for (const node of client.nodes('all')) watchNode(node);
  client.on('+node', watchNode);
}

/** A lazily connecting, fail-fast client. */
export function createRedisClient(opts: RedisClientOptions): RedisClient {
  const watch = {
    silentMs: opts.silentMs ?? opts.commandTimeoutMs + 1000,
    ...(opts.onSilent ? { onDead: opts.onSilent } : {}),
  };
  if (!opts.cluster) {
    const node = new Redis(opts.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy,
    });
    coalesceNodeWrites(node);
    watchSilence(node, watch);
    return node;
  }
  const seeds = parseClusterSeeds(opts.url);
  const cluster = new Cluster(seeds.nodes, {
    lazyConnect: true,
    enableOfflineQueue: false,
    clusterRetryStrategy: retryStrategy,
    redisOptions: {
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: CONNECT_TIMEOUT_MS,
      ...(seeds.username !== undefined ? { username: seeds.username } : {}),
      ...(seeds.password !== undefined ? { password: seeds.password } : {}),
      ...(seeds.tls ? { tls: {} } : {}),
    },
  });
  cluster.on('+node', (node: Redis) => coalesceNodeWrites(node));
  watchSilence(cluster, watch);
  return cluster;
}

/**
 * A second connection like `client`, for the journal flusher's blocking reads: it retries its
 * commands instead of failing fast. A standalone one queues while disconnected. A cluster one
 * does not (a Cluster client keeps commands queued after `disconnect()` forever, which would
 * hang the flusher's stop): it is connected here, and its reader retries on errors.
 */
export async function readerClient(client: RedisClient, commandTimeoutMs: number): Promise<RedisClient> {
  // Its blocking reads answer within their block time, well inside the timeout: a connection
  // silent that long while a read waits is dead, and dropped.
  const watch = { silentMs: commandTimeoutMs };
  if (client instanceof Redis) {
    const node = client.duplicate({
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: commandTimeoutMs,
    });
    watchSilence(node, watch);
    return node;
  }
  const conn = client.duplicate([], {
    enableOfflineQueue: false,
    redisOptions: { maxRetriesPerRequest: null, commandTimeout: commandTimeoutMs },
  });
  watchSilence(conn, watch);
  await conn.connect().catch(() => undefined); // not there yet: the reader's retries connect it
  return conn;
}

/**
 * A second connection like `client` for the wake-up subscription: it queues while
 * disconnected and re-subscribes after a reconnect (on a cluster, classic SUBSCRIBE hears
 * PUBLISHes made on any node).
 */
export function subscriberClient(client: RedisClient): RedisClient {
  if (client instanceof Redis) {
    return client.duplicate({
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      commandTimeout: undefined,
    });
  }
  return client.duplicate([], {
    enableOfflineQueue: true,
    redisOptions: { maxRetriesPerRequest: null, commandTimeout: undefined },
  });
}

/** The nodes that hold data: the client itself, or every master of the cluster. */
export function masterNodes(client: RedisClient): Redis[] {
  return client instanceof Redis ? [client] : client.nodes('master');
}

/** `host:port` of a node, for log lines. */
export function nodeAddress(node: Redis): string {
  return `${node.options.host ?? '?'}:${node.options.port ?? '?'}`;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster hash slot of a key (CRC16 of its hash tag, or of the whole key, mod 16384). */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % 16384;
  }
  return crc16(bytes) % 16384;
}

/**
 * Which nodes serve `key`, as the client knows them: keys with the same answer can share one
 * pipeline (it is the test ioredis applies to a cluster pipeline, so both always agree).
 * A slot the client knows no nodes for gets a group of its own.
 */
export function nodeGroupOfKey(cluster: Cluster, key: string): string {
  const slot = keySlot(key);
  const group = cluster._groupsBySlot[slot];
  return group === undefined ? `slot:${slot}` : `group:${group}`;
}

/**
 * With `BATON_REDIS_CLUSTER=true`, whether the first seed node answers as a Redis that is not a
 * cluster: its `host:port` if so, else null (it is one, or does not answer). A cluster client
 * facing a plain Redis only says "None of startup nodes is available", which reads like an
 * address that is wrong (outside test QA11-F4).
 */
export async function plainRedisAt(url: string): Promise<string | null> {
  const seeds = parseClusterSeeds(url);
  const first = seeds.nodes[0];
  if (first === undefined) return null;
  const node = new Redis({
    ...first,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: () => null,
    ...(seeds.username !== undefined ? { username: seeds.username } : {}),
    ...(seeds.password !== undefined ? { password: seeds.password } : {}),
    ...(seeds.tls ? { tls: {} } : {}),
  });
  node.on('error', () => undefined);
  try {
    await node.connect();
    const info = await node.info('cluster');
    return /^cluster_enabled:0\s*$/m.test(info) ? `${first.host}:${first.port}` : null;
  } catch {
    return null;
  } finally {
    node.disconnect();
  }
}
