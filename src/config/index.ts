/**
 * Configuration: read from the environment once, validated, frozen, passed down.
 * A bad value stops start-up with one line naming the variable.
 * @module
 */
import { closest } from '../spelling.ts';
import { isIP } from 'node:net';
import type { IntakeLogMode } from '../backends/distributed/options.ts';
import { ConfigError } from '../errors.ts';
import { DEFAULT_SEND_TIMEOUT_MS } from '../providers/http.ts';

export type SyncMode = 'write-through' | 'write-behind';

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly whatsapp: {
    readonly appSecret: string | undefined;
    readonly verifyToken: string | undefined;
    readonly accessToken: string | undefined;
    readonly apiBaseUrl: string;
    /**
     * Whether `POST /webhooks/whatsapp` takes webhooks. Off (404) only under `NODE_ENV=production`
     * with no app secret, no `BATON_ALLOW_UNSIGNED`, and a WASender webhook secret: a deployment
     * on WASender alone (outside test QA96-F6: it could start only by opening the Cloud API
     * route to unsigned posts from anywhere).
     */
    readonly enabled: boolean;
  };
  readonly wasender: {
    readonly apiKey: string | undefined;
    readonly webhookSecret: string | undefined;
    readonly apiBaseUrl: string;
  };
  readonly adminToken: string | undefined;
  readonly redisUrl: string | undefined;
  /** `BATON_REDIS_CLUSTER`: `redisUrl` lists seed nodes of a Redis Cluster. */
  readonly redisCluster: boolean;
  readonly databaseUrl: string | undefined;
  /** `AMQP_URL`: the RabbitMQ intake (webhooks queued there, stored by the consumers). */
  readonly amqpUrl: string | undefined;
  /** `BATON_AMQP_QUEUE`: the intake queue's name (its unreadable bodies go to `<name>.rejected`). */
  readonly amqpQueue: string;
  readonly dataDir: string;
  readonly bufferMs: number;
  readonly lockTtlMs: number;
  /** Seconds. */
  readonly sessionTtlSec: number;
  /** Seconds. */
  readonly dedupeTtlSec: number;
  readonly maxRetries: number;
  readonly flows: string | undefined;
  readonly syncMode: SyncMode;
  /** Distributed mode: `BATON_INTAKE_LOG` (see backends/distributed/intake-log.ts). */
  readonly intakeLog: IntakeLogMode;
  /** Distributed mode: Redis key prefix (several Batons can share one Redis). */
  readonly redisPrefix: string;
  /** Distributed mode: PostgreSQL schema. */
  readonly pgSchema: string;
  readonly alert: {
    readonly webhookUrl: string | undefined;
    readonly queueDepth: number | undefined;
    readonly oldestMs: number | undefined;
    /** `BATON_ALERT_UNSENT_MS`: the oldest unsent send's age above which `oldest_unsent` fires. */
    readonly unsentMs: number | undefined;
    /** `BATON_ALERT_WORKERS`: also alert when no live worker is seen. */
    readonly workers: boolean;
  };
  readonly logLevel: string;
  /**
   * `BATON_ALLOW_UNSIGNED`: without an app secret, take unsigned Cloud API webhooks from anywhere
   * (else from this machine only), and start under `NODE_ENV=production`.
   */
  readonly allowUnsigned: boolean;
  /** `BATON_RETENTION`, seconds: transitions and outbound records older than this are purged. */
  readonly retentionSec: number;
  /** `BATON_MESSAGE_RETENTION`, seconds: message texts older than this are deleted. */
  readonly messageRetentionSec: number;
  /** `BATON_HEALTH_PORT`: where a worker-only process serves /healthz and /readyz (none). */
  readonly healthPort: number | undefined;
  /**
   * `BATON_DRAIN_MS`: on SIGTERM, how long a process keeps serving with `/readyz` answering 503
   * (and every answer closing its connection) before it closes its listener, so a load balancer
   * takes it out first (0: none).
   */
  readonly drainMs: number;
  /**
   * `BATON_SEND_TIMEOUT_MS`: how long one send request (a reply to the Graph API or WASender) may
   * take before it counts as failed and is retried; while it waits, that user's later replies
   * wait behind it (others do not).
   */
  readonly sendTimeoutMs: number;
  /**
   * `BATON_TRUST_PROXY`: behind a TLS-terminating proxy, believe its `X-Forwarded-Proto` (and
   * `-For`), so the dashboard's cookie is `Secure` and sign-in throttling sees client addresses.
   * `false`; a number of proxy hops in front of Baton (`true` is 1); or the proxies' addresses
   * (IPs or CIDR ranges, comma-separated). The client is the nearest address not trusted, so a
   * client cannot choose its own by sending an `X-Forwarded-For` of its own (the proxy appends).
   */
  readonly trustProxy: TrustProxy;
}

type Env = Readonly<Record<string, string | undefined>>;

/** How far `X-Forwarded-*` headers are believed: not at all, so many hops, or these proxies. */
export type TrustProxy = false | number | readonly string[];

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Parses `90`, `90s`, `30m`, `24h`, `7d` into seconds. */
/** The longest duration a variable takes: a hundred years (a bigger one is a typo). */
const MAX_DURATION_SEC = 36_500 * 86_400;

export function parseDurationSeconds(name: string, raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(raw);
  if (!m) throw new ConfigError(name, `"${raw}" is not a duration (use seconds, or 90s, 30m, 24h, 7d)`);
  const value = Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!;
  if (value <= 0) throw new ConfigError(name, `must be greater than zero, got "${raw}"`);
  if (value < 1) throw new ConfigError(name, `must be at least a second, got "${raw}"`);
  if (value > MAX_DURATION_SEC)
    throw new ConfigError(name, `must be at most 36500d (100 years), got "${raw}"`);
  return value;
}

function int(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!/^\s*-?\d+\s*$/.test(raw)) throw new ConfigError(name, `"${raw}" is not a whole number`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `${n} is out of range ${min}..${max}`);
  return n;
}

/** A duration variable in seconds; unset or blank: `fallback` (as a blank number is). */
function duration(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? fallback : parseDurationSeconds(name, raw);
}

function optInt(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  return int(env, name, 0, min);
}

function str(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

/**
 * A secret or token: unset, or something to check against. Spaces around it are a copy-paste
 * slip no sender reproduces, and a blank one would check nothing, so both are refused.
 */
function secret(env: Env, key: string): string | undefined {
  const raw = str(env, key);
  if (raw === undefined) return undefined;
  if (raw.trim() === '') throw new ConfigError(key, 'is blank (unset it, or give the real value)');
  if (raw.trim() !== raw) throw new ConfigError(key, 'has spaces around it (copy the value alone)');
  return raw;
}

/** Shortest `ADMIN_TOKEN` accepted under NODE_ENV=production (the dashboard's only lock). */
export const MIN_PRODUCTION_ADMIN_TOKEN = 16;

function name(env: Env, key: string, fallback: string): string {
  const raw = str(env, key) ?? fallback;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) {
    throw new ConfigError(key, `"${raw}" must be lower-case letters, digits and _ (at most 63)`);
  }
  return raw;
}

/**
 * A PostgreSQL schema of Baton's own: not one PostgreSQL keeps for itself (`pg_*` it refuses
 * with its own words; `information_schema` it took, and Baton's tables went into it: outside
 * test QA42-F5).
 */
function schemaName(env: Env, key: string, fallback: string): string {
  const raw = name(env, key, fallback);
  if (raw.startsWith('pg_') || raw === 'information_schema') {
    throw new ConfigError(
      key,
      `"${raw}" is a schema PostgreSQL keeps for itself: name one of Baton's own (default baton)`,
    );
  }
  return raw;
}

const HTTP = ['http:', 'https:'] as const;

/** A URL of one of `protocols` (`['http:', 'https:']`), without its trailing slashes. */
function url(env: Env, name: string, protocols: readonly string[], fallback?: string): string | undefined {
  const raw = str(env, name) ?? fallback;
  if (raw === undefined) return undefined;
  // Its credentials (user:password@) stay out of the message, which goes to logs.
  const shown = raw.replace(/\/\/[^/]*@/, '//***@');
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `"${shown}" is not a URL`);
  }
  if (!protocols.includes(parsed.protocol) || parsed.hostname === '') {
    const kinds = protocols.map((p) => `${p}//`).join(' or ');
    throw new ConfigError(name, `"${shown}" must start with ${kinds}`);
  }
  return raw.replace(/\/+$/, '');
}

/**
 * The base URL of an API Baton appends paths to (`/<phone_number_id>/messages`,
 * `/api/send-message`): a query or a fragment would take those paths, so that every send went
 * to the wrong URL without a word at start (outside test QA54-F2). `appended` is the path Baton
 * adds, refused as the base's own last segment too (`…/api` + `/api/send-message`).
 */
function apiBase(env: Env, name: string, fallback: string, appended?: string): string {
  const base = url(env, name, HTTP, fallback)!;
  const parsed = new URL(base);
  // The raw string is tested too: `URL` drops an empty query or fragment ("…/v21.0?" has
  // `search === ''`), yet Baton appending to the string would put its path after the "?".
  if (parsed.search !== '' || parsed.hash !== '' || /[?#]/.test(base)) {
    throw new ConfigError(
      name,
      `"${parsed.origin}${parsed.pathname}…" carries a query or fragment: Baton appends paths to this URL, so give it without "?…" or "#…"`,
    );
  }
  if (appended !== undefined && parsed.pathname.replace(/\/+$/, '').endsWith(appended)) {
    throw new ConfigError(
      name,
      `"${base}" ends in ${appended}: Baton appends ${appended}/… itself, so give it without ${appended}`,
    );
  }
  return base;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(env: Env): string {
  const v = str(env, 'LOG_LEVEL')?.toLowerCase() ?? 'info';
  if (!LOG_LEVELS.includes(v))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}; got "${v}"`);
  return v;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (raw !== 'true' && raw !== 'false') throw new ConfigError(name, `"${raw}" must be true or false`);
  return raw === 'true';
}

function trustProxy(env: Env, name: string): TrustProxy {
  const raw = str(env, name);
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true') return 1;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 16) throw new ConfigError(name, `"${raw}" hops: at most 16`);
    return hops;
  }
  const proxies = raw.split(',').map((p) => p.trim());
  for (const p of proxies) {
    const [address, bits, extra] = p.split('/');
    const family = isIP(address ?? '');
    const maxBits = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > maxBits))
    ) {
      throw new ConfigError(
        name,
        `"${p}" must be true, false, a number of proxy hops, or proxy addresses (IPs or CIDR ranges, comma-separated)`,
      );
    }
  }
  return proxies;
}

function amqpUrl(env: Env, key: string): string | undefined {
  return url(env, key, ['amqp:', 'amqps:']);
}

/** A RabbitMQ queue name: printable, short, and not in the broker's reserved `amq.` space. */
function queueName(env: Env, key: string, fallback: string): string {
  const raw = str(env, key) ?? fallback;
  if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(raw) || raw.startsWith('amq.')) {
    throw new ConfigError(
      key,
      `"${raw}" must be letters, digits and _ . : - (at most 200), not starting with "amq."`,
    );
  }
  return raw;
}

/** A Redis Cluster's seed nodes: one URL or several separated by commas. */
function seedUrls(env: Env, name: string): string {
  const raw = str(env, name);
  if (raw === undefined) throw new ConfigError(name, 'must be set when BATON_REDIS_CLUSTER is true');
  const seeds = raw.split(',').map((s) => s.trim());
  for (const seed of seeds) {
    let ok = false;
    try {
      const u = new URL(seed);
      ok = (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(name, `"${seed}" is not a redis:// or rediss:// URL of a cluster node`);
  }
  return seeds.join(',');
}

/** Reads and validates the configuration. Throws `ConfigError` naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const syncMode = str(env, 'BATON_SYNC_MODE') ?? 'write-through';
  if (syncMode !== 'write-through' && syncMode !== 'write-behind') {
    throw new ConfigError('BATON_SYNC_MODE', `"${syncMode}" must be write-through or write-behind`);
  }
  const intakeLog = str(env, 'BATON_INTAKE_LOG') ?? 'auto';
  if (intakeLog !== 'auto' && intakeLog !== 'on' && intakeLog !== 'off') {
    throw new ConfigError('BATON_INTAKE_LOG', `"${intakeLog}" must be auto, on or off`);
  }
  const redisCluster = bool(env, 'BATON_REDIS_CLUSTER', false);
  const redisUrl = redisCluster ? seedUrls(env, 'REDIS_URL') : url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  if (redisUrl !== undefined && databaseUrl === undefined) {
    throw new ConfigError('DATABASE_URL', 'must be set when REDIS_URL is (distributed mode needs both)');
  }
  if (databaseUrl !== undefined && redisUrl === undefined) {
    // Else each process would run embedded on a file of its own: state split between hosts.
    throw new ConfigError(
      'REDIS_URL',
      'must be set when DATABASE_URL is (distributed mode needs both; unset DATABASE_URL for embedded mode)',
    );
  }
  const appSecret = secret(env, 'WHATSAPP_APP_SECRET');
  const allowUnsigned = bool(env, 'BATON_ALLOW_UNSIGNED', false);
  // `Production` and `production ` mean what they say.
  const production = env.NODE_ENV?.trim().toLowerCase() === 'production';
  const adminToken = secret(env, 'ADMIN_TOKEN');
  // A Bearer token is one word (RFC 6750): one with a space could sign in but never call the API.
  if (adminToken !== undefined && /\s/.test(adminToken))
    throw new ConfigError('ADMIN_TOKEN', 'has a space or a line break in it (a Bearer token is one word)');
  if (production && adminToken !== undefined && adminToken.length < MIN_PRODUCTION_ADMIN_TOKEN) {
    throw new ConfigError(
      'ADMIN_TOKEN',
      `must be at least ${MIN_PRODUCTION_ADMIN_TOKEN} characters under NODE_ENV=production (or unset: one is generated)`,
    );
  }
  const wasenderSecret = secret(env, 'WASENDER_WEBHOOK_SECRET');
  // Under production a Cloud API route without a secret is off for a deployment on WASender alone.
  const cloudApiOff = appSecret === undefined && production && !allowUnsigned;
  if (cloudApiOff && wasenderSecret === undefined) {
    throw new ConfigError(
      'WHATSAPP_APP_SECRET',
      'must be set under NODE_ENV=production (unsigned webhooks could reach any user; on WASender alone, set WASENDER_WEBHOOK_SECRET and the Cloud API route stays off; BATON_ALLOW_UNSIGNED=true accepts unsigned ones anyway)',
    );
  }
  const config: Config = {
    port: int(env, 'PORT', 3000, 0, 65535),
    host: str(env, 'HOST') ?? '0.0.0.0',
    whatsapp: {
      appSecret,
      verifyToken: secret(env, 'WHATSAPP_VERIFY_TOKEN'),
      accessToken: secret(env, 'WHATSAPP_ACCESS_TOKEN'),
      apiBaseUrl: apiBase(env, 'WHATSAPP_API_BASE_URL', 'https://graph.facebook.com/v21.0'),
      enabled: !cloudApiOff,
    },
    wasender: {
      apiKey: secret(env, 'WASENDER_API_KEY'),
      webhookSecret: wasenderSecret,
      apiBaseUrl: apiBase(env, 'WASENDER_API_BASE_URL', 'https://www.wasenderapi.com', '/api'),
    },
    adminToken,
    redisUrl,
    redisCluster,
    databaseUrl,
    amqpUrl: amqpUrl(env, 'AMQP_URL'),
    amqpQueue: queueName(env, 'BATON_AMQP_QUEUE', 'baton.intake'),
    dataDir: str(env, 'BATON_DATA_DIR') ?? './data',
    bufferMs: int(env, 'BATON_BUFFER_MS', 500, 0, 60_000),
    lockTtlMs: int(env, 'BATON_LOCK_TTL_MS', 5000, 100, 600_000),
    sessionTtlSec: duration(env, 'BATON_SESSION_TTL', 86400),
    dedupeTtlSec: duration(env, 'BATON_DEDUPE_TTL', 7 * 86400),
    maxRetries: int(env, 'BATON_MAX_RETRIES', 3, 0, 100),
    flows: str(env, 'BATON_FLOWS'),
    syncMode,
    intakeLog,
    redisPrefix: name(env, 'BATON_REDIS_PREFIX', 'baton'),
    pgSchema: schemaName(env, 'BATON_PG_SCHEMA', 'baton'),
    alert: {
      webhookUrl: url(env, 'BATON_ALERT_WEBHOOK_URL', HTTP),
      queueDepth: optInt(env, 'BATON_ALERT_QUEUE_DEPTH', 0),
      oldestMs: optInt(env, 'BATON_ALERT_OLDEST_MS', 0),
      unsentMs: optInt(env, 'BATON_ALERT_UNSENT_MS', 0),
      workers: bool(env, 'BATON_ALERT_WORKERS', false),
    },
    logLevel: logLevel(env),
    allowUnsigned,
    retentionSec: duration(env, 'BATON_RETENTION', 30 * 86400),
    messageRetentionSec: duration(env, 'BATON_MESSAGE_RETENTION', 30 * 86400),
    healthPort: env.BATON_HEALTH_PORT?.trim() ? int(env, 'BATON_HEALTH_PORT', 0, 0, 65535) : undefined,
    drainMs: int(env, 'BATON_DRAIN_MS', 0, 0, 60_000),
    sendTimeoutMs: int(env, 'BATON_SEND_TIMEOUT_MS', DEFAULT_SEND_TIMEOUT_MS, 1000, 120_000),
    trustProxy: trustProxy(env, 'BATON_TRUST_PROXY'),
  };
  // The WASender route on: its replies are sent with the key, and WASenderApi refuses them without.
  if (config.wasender.webhookSecret !== undefined && config.wasender.apiKey === undefined) {
    throw new ConfigError(
      'WASENDER_API_KEY',
      'must be set when WASENDER_WEBHOOK_SECRET is (replies to WASender users are sent with it; unset the secret to turn the route off)',
    );
  }
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The variables {@link loadConfig} reads from `env` (some only when others are set) or from none. */
function variablesRead(env: Env): Set<string> {
  const read = new Set<string>();
  for (const from of [env, {}]) {
    const recording = new Proxy(from, {
      get(target, name) {
        if (typeof name === 'string') read.add(name);
        return Reflect.get(target, name) as unknown;
      },
    });
    try {
      loadConfig(recording);
    } catch {
      // what it read before it stopped counts all the same
    }
  }
  return read;
}

/** The families of variables Baton reads; a name of these it does not read may be a misspelling. */
const FAMILIES = /^(BATON|WHATSAPP|WASENDER)_/;

/**
 * Variables set in `env` that Baton does not read but that look like one it does:
 * `BATON_ALERT_QUEUE_DEPT` left alerting silently off (outside test QA32-F3).
 */
export function misspeltVariables(env: Env): Array<{ name: string; near: string }> {
  const known = variablesRead(env);
  const found: Array<{ name: string; near: string }> = [];
  for (const name of Object.keys(env)) {
    if (!FAMILIES.test(name) || known.has(name) || env[name] === undefined) continue;
    const near = closest(name, known);
    if (near !== undefined) found.push({ name, near });
  }
  return found;
}
