/**
 * Wires a Baton instance from a validated config: backend, flows, senders, engine, HTTP server.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { existsSync, statSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { EmbeddedBackend, type EmbeddedOptions } from './backends/embedded/index.ts';
import { AlertWatcher } from './alerts/index.ts';
import { loopbackUrl, writeLocalHandle } from './admin/local-handle.ts';
import type { Backend, BackendStats, ServedFlow } from './backends/types.ts';
import type { DistributedBackendOptions } from './backends/distributed/options.ts';
import { orderFlow } from './bots/order.ts';
import type { Config } from './config/index.ts';
import { Engine, type EngineOptions } from './engine/engine.ts';
import { LocalIntakeGate, QueuePosition, type IntakeGate, type IntakeTracker } from './engine/intake-gate.ts';
import { importModule } from './config/module.ts';
import { ConfigError } from './errors.ts';
import type { Flow } from './flow/define.ts';
import { flowGraph } from './graph/index.ts';
import { buildHealthServer } from './ingress/health.ts';
import type { FlowRouter } from './flow/router.ts';
import { buildServer, webhookJson, type HttpLimits } from './ingress/server.ts';
import { AmqpIntake, type IntakeHandler } from './ingress/amqp-intake.ts';
import { keepUnreadable, unreadableLetters } from './ingress/unreadable.ts';
import { Metrics } from './metrics.ts';
import { cachedStats } from './backends/stats-cache.ts';
import { within } from './sleep.ts';
import {
  createCloudApiProvider,
  createCloudApiSender,
  createWasenderProvider,
  createWasenderSender,
} from './providers/index.ts';

export interface BatonOptions {
  /** Which roles this process plays. */
  readonly roles?: { readonly ingress: boolean; readonly worker: boolean };
  readonly concurrency?: number;
  readonly logger?: Logger;
  readonly backend?: Backend;
  readonly flows?: readonly Flow[];
  /** Picks the flow of a new session (default: the first flow). */
  readonly router?: FlowRouter;
  readonly now?: () => number;
  /** Overrides for the engine (tests: fast send backoff). */
  readonly engine?: Partial<Pick<EngineOptions, 'maxSendAttempts' | 'sendBackoffMs' | 'workerId'>>;
  /** HTTP timeouts and connection cap (default: SPEC section 3's 30 s / 10 s). */
  readonly http?: Partial<HttpLimits>;
}

export interface Baton {
  readonly config: Config;
  readonly backend: Backend;
  readonly engine: Engine;
  readonly server: FastifyInstance;
  readonly adminToken: string;
  readonly adminTokenGenerated: boolean;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The queue alerts (`BATON_ALERT_*`), when a webhook URL is configured. */
  readonly alerts: AlertWatcher | null;
  /** The RabbitMQ intake (`AMQP_URL`), when configured and this process serves or works. */
  readonly queue: AmqpIntake | null;
  /** Starts workers (if a worker) and listens (if an ingress). Returns the listen URL. */
  start(): Promise<string | null>;
  /** Graceful: stop listening, stop claiming, finish batches in hand, close stores. */
  stop(): Promise<void>;
}

/**
 * How long the figures wait for the store before RabbitMQ's count is given with the store's last
 * figures, ms (under `/metrics`' own wait).
 */
const QUEUE_FIGURES_WAIT_MS = 1000;

/** The figures before any was read. */
const NO_FIGURES: BackendStats = {
  queueDepth: 0,
  oldestPendingMs: 0,
  locksHeld: 0,
  deadLetters: 0,
  workers: 0,
  messagesPerSecond: 0,
  unsent: 0,
  oldestUnsentMs: 0,
};
/**
 * pino's error serializer, but an error whose message already says its cause's (Baton's errors
 * name what they wrap) keeps its own message: pino appends every cause's message, and a throwing
 * handler was logged as "...: Error: kaboom: kaboom" (outside test A7).
 */
export function serializeError(err: unknown): ReturnType<typeof pino.stdSerializers.err> {
  const out = pino.stdSerializers.err(err as Error);
  if (err instanceof Error && err.cause instanceof Error && err.message.includes(err.cause.message))
    out.message = err.message;
  return withoutCommandArgs(out) as typeof out;
}

/**
 * `value` without the arguments of the Redis commands its errors name: an error Redis answers
 * (OOM, CROSSSLOT, a script's) carries its `command` with every argument, the stored message
 * and its text among them, and message texts never appear in logs at `info` or above (SPEC 4;
 * outside test QA37-F2: a Redis full to `maxmemory` put users' texts in 503 log lines). The
 * command's name stays.
 */
function withoutCommandArgs(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (Array.isArray(value)) return value.map((v) => withoutCommandArgs(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'command' && v !== null && typeof v === 'object' && 'args' in v) {
      const { args, ...rest } = v as { args: unknown };
      out[k] = { ...rest, args: Array.isArray(args) ? `[${args.length} arguments]` : '[arguments]' };
    } else out[k] = withoutCommandArgs(v, depth + 1);
  }
  return out;
}

/** Baton's logger at `level`, on stdout, or on stderr (`fd` 2) for commands whose stdout is data. */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      serializers: { err: serializeError },
      redact: {
        paths: [
          'req.headers.authorization',
          'headers.authorization',
          '*.accessToken',
          '*.appSecret',
          'config.adminToken',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd, sync: true }),
  );
}

/** Loads the flows module named by BATON_FLOWS: its default export or every exported Flow. */
export async function loadFlows(modulePath: string | undefined, namedBy = 'BATON_FLOWS'): Promise<Flow[]> {
  return (await loadFlowModule(modulePath, namedBy)).flows;
}

/**
 * Loads the flows module named by BATON_FLOWS: its flows (the default export first: the default
 * flow of new sessions) and, if it exports a function named `router`, the router that picks the
 * flow of a new session. `namedBy`: what named the module (a variable or a CLI flag), for errors.
 */
export async function loadFlowModule(
  modulePath: string | undefined,
  namedBy = 'BATON_FLOWS',
): Promise<{ flows: Flow[]; router?: FlowRouter }> {
  if (modulePath === undefined) return { flows: [orderFlow] };
  const file = flowModuleFile(modulePath);
  // Not Node's error for a path mistyped: for a `.ts` file it was a hint about package.json
  // (outside test QA18-F4).
  if (!existsSync(file))
    throw new ConfigError(namedBy, `cannot load "${modulePath}": no such file (${file})`);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(pathToFileURL(file).href);
  } catch (err) {
    throw new ConfigError(namedBy, `cannot load "${modulePath}": ${oneLine((err as Error).message)}`);
  }
  const isFlow = (v: unknown): v is Flow =>
    typeof v === 'object' && v !== null && 'steps' in v && v.steps instanceof Map;
  const candidates = [mod.default, ...Object.values(mod)].flatMap((v): unknown[] =>
    Array.isArray(v) ? v : [v],
  );
  const flows = [...new Set(candidates.filter(isFlow))];
  if (flows.length === 0)
    throw new ConfigError(namedBy, `"${modulePath}" exports no flow made with defineFlow`);
  const twice = repeatedFlowId(flows);
  if (twice !== undefined)
    throw new ConfigError(
      namedBy,
      `"${modulePath}" exports two flows with the id "${twice}": give each flow its own id`,
    );
  const router = typeof mod.router === 'function' ? (mod.router as FlowRouter) : undefined;
  const served = new Set(flows.map((f) => f.id));
  const unserved = (router?.names ?? []).filter((id) => !served.has(id));
  if (unserved.length > 0) {
    throw new ConfigError(
      namedBy,
      `"${modulePath}": its router names flow${unserved.length > 1 ? 's' : ''} ${unserved.map((f) => `"${f}"`).join(', ')}, which it does not export (it serves ${[...served].map((f) => `"${f}"`).join(', ')})`,
    );
  }
  return router ? { flows, router } : { flows };
}

/** `flowGraph(flow).hints`, or none when the flow cannot be probed (its map says so itself). */
function flowHints(flow: Flow): readonly string[] {
  try {
    return flowGraph(flow).hints.map((h) => `flow ${flow.id}: ${h}`);
  } catch {
    return [];
  }
}

/**
 * The id two different flows share, if any: the one exported last took the other's place, so the
 * users talked to one flow while the map and the console showed the other (outside test QA18-F1).
 */
function repeatedFlowId(flows: readonly Flow[]): string | undefined {
  const seen = new Set<string>();
  for (const f of flows) {
    if (seen.has(f.id)) return f.id;
    seen.add(f.id);
  }
  return undefined;
}

/** A module path, or a folder holding `index.ts` (or `index.js`). */
function flowModuleFile(modulePath: string): string {
  const full = resolve(modulePath);
  if (!existsSync(full) || !statSync(full).isDirectory()) return full;
  const index = ['index.ts', 'index.mts', 'index.js', 'index.mjs']
    .map((f) => resolve(full, f))
    .find(existsSync);
  return index ?? resolve(full, 'index.ts');
}

/** Says that an embedded store was upgraded, as a distributed start says which migrations it applied (outside test QA66-F4). */
function logSchemaUpgrade(backend: Backend, config: Config, logger: Logger): void {
  if (!(backend instanceof EmbeddedBackend) || backend.schemaChange === null) return;
  const { from, to } = backend.schemaChange;
  // A missing or empty file is a new store: said, since it knows no session and no message (a
  // store lost or emptied by mistake went unnoticed: outside test QA94-F4).
  if (from === 0)
    logger.info({ schema: to }, `created a new SQLite store in ${config.dataDir}: no session or message yet`);
  if (from > 0 && from < to)
    logger.info(
      { from, to },
      `upgraded the SQLite store in ${config.dataDir} from schema ${from} to ${to}: a Baton older than this one no longer opens it`,
    );
}

export async function createBaton(config: Config, opts: BatonOptions = {}): Promise<Baton> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const metrics = new Metrics({ defaultMetrics: opts.logger === undefined });
  const roles = opts.roles ?? { ingress: true, worker: true };
  const loaded = opts.flows ? { flows: [...opts.flows] } : await loadFlowModule(config.flows);
  const flowList = loaded.flows;
  const twice = repeatedFlowId(flowList);
  if (twice !== undefined) throw new Error(`two flows have the id "${twice}": give each flow its own id`);
  const router = opts.router ?? ('router' in loaded ? loaded.router : undefined);
  const flows = new Map(flowList.map((f) => [f.id, f]));
  // What `baton flow graph` hints at (a choice id misspelt in `on`), said where the flow runs:
  // a tap otherwise took the wrong branch without a word (outside test QA41-F3).
  if (roles.worker)
    for (const f of flowList) for (const hint of flowHints(f)) logger.warn({ flow: f.id }, hint);
  const backend = opts.backend ?? (await createBackend(config, logger, opts.now ? { now: opts.now } : {}));
  try {
    await backend.init();
  } catch (err) {
    // Its connections would keep the process alive, reconnecting, after the error is reported.
    await backend.close().catch(() => undefined);
    throw err;
  }
  logSchemaUpgrade(backend, config, logger);
  // One clock for every process that shares the store (a distributed backend's is Redis's):
  // storage times, due times and watermarks are stamped by one process and compared by another.
  const now = opts.now ?? backend.clock;

  // Batches wait for webhooks of their window still being stored: those of any ingress process
  // when the backend is shared (its watermarks), else those of the ingress in this process.
  let intake: { tracker?: IntakeTracker; gate?: IntakeGate } = {};
  let localIntake: LocalIntakeGate | null = null;
  if (backend.intake) {
    intake = {
      ...(roles.ingress ? { tracker: backend.intake.tracker() } : {}),
      ...(roles.worker ? { gate: backend.intake.gate() } : {}),
    };
  } else if (roles.ingress && roles.worker) {
    localIntake = new LocalIntakeGate(now ? { now } : {});
    intake = { tracker: localIntake, gate: localIntake };
  }
  const engine = new Engine({
    backend,
    ...(intake.gate ? { intake: intake.gate } : {}),
    flows,
    defaultFlow: flowList[0]!.id,
    ...(router ? { router } : {}),
    senders: {
      'cloud-api': createCloudApiSender({
        baseUrl: config.whatsapp.apiBaseUrl,
        timeoutMs: config.sendTimeoutMs,
        ...(config.whatsapp.accessToken !== undefined ? { accessToken: config.whatsapp.accessToken } : {}),
      }),
      wasender: createWasenderSender({
        baseUrl: config.wasender.apiBaseUrl,
        timeoutMs: config.sendTimeoutMs,
        ...(config.wasender.apiKey !== undefined ? { apiKey: config.wasender.apiKey } : {}),
      }),
    },
    bufferMs: config.bufferMs,
    lockTtlMs: config.lockTtlMs,
    sendTimeoutMs: config.sendTimeoutMs,
    sessionTtlSec: config.sessionTtlSec,
    maxRetries: config.maxRetries,
    dedupeTtlSec: config.dedupeTtlSec,
    logger,
    metrics,
    ...(now ? { now } : {}),
    ...opts.engine,
  });

  const adminTokenGenerated = config.adminToken === undefined;
  const adminToken = config.adminToken ?? randomBytes(18).toString('base64url');
  const providers = {
    whatsapp: createCloudApiProvider({
      appSecret: config.whatsapp.appSecret,
      enabled: config.whatsapp.enabled,
    }),
    wasender: createWasenderProvider({ webhookSecret: config.wasender.webhookSecret }),
  };
  const queue =
    config.amqpUrl !== undefined && (roles.ingress || roles.worker)
      ? new AmqpIntake({
          url: config.amqpUrl,
          queue: config.amqpQueue,
          logger,
          ...(now ? { now } : {}),
          count: (outcome) => metrics.queued.inc({ outcome }),
        })
      : null;
  // The store's figures, webhooks waiting in RabbitMQ counted in the queue depth: acknowledged to
  // the gateway, not processed yet (the queue alerts must see a backlog there too).
  // While the store is away (Redis down or hung) webhooks keep going into RabbitMQ: their count
  // stands, beside the store's last figures marked stale (outside test QA126-F1: the queue depth
  // read 0 through a Redis outage while 623 webhooks waited, and the alert fired only after).
  let lastStore: BackendStats | null = null;
  const figures = async (): Promise<BackendStats> => {
    if (!queue) return backend.stats();
    const store = backend.stats().then((s) => (lastStore = s));
    const [s, waiting] = await Promise.all([
      within(
        QUEUE_FIGURES_WAIT_MS,
        store.catch(() => null),
        null,
      ),
      queue.waiting(),
    ]);
    if (s !== null) return waiting ? { ...s, queueDepth: s.queueDepth + waiting } : s;
    if (waiting === null) return store;
    const last = lastStore ?? NO_FIGURES;
    return { ...last, queueDepth: last.queueDepth + waiting, stale: ['queue', 'deadLetters', 'unsent'] };
  };
  // Polling readers (scrapers, dashboards) share one read per second.
  const stats = cachedStats(figures);
  // A consumer stores what an ingress queued; its webhooks hold batches back until stored, as an
  // ingress's do (the window counts from their arrival at the ingress).
  const queueTracker = intake.tracker ?? (roles.worker ? backend.intake?.tracker() : undefined);
  const position = queueTracker && queue ? new QueuePosition(queueTracker) : undefined;
  const storeQueued: IntakeHandler = async (w) => {
    const provider = w.provider === 'wasender' ? providers.wasender : providers.whatsapp;
    let parsedBody;
    try {
      parsedBody = provider.parse(webhookJson(w.body));
    } catch {
      return 'unreadable';
    }
    const { batch, skipped } = parsedBody;
    const late = w.readLateMs ?? 0;
    const stored = position?.take(w.receivedAt, late);
    try {
      await keepUnreadable(backend, unreadableLetters(provider.name, skipped, Date.now()));
      const result = await backend.ingest({ ...batch, receivedAt: w.receivedAt, readLateMs: late });
      metrics.stored(result);
      backend.countStored(result.accepted);
      return 'stored';
    } finally {
      stored?.();
    }
  };
  // Stopping with BATON_DRAIN_MS: not ready, still serving (see stop below).
  let draining = false;
  const server = buildServer({
    backend,
    stats,
    draining: () => draining,
    ...(intake.tracker ? { intake: intake.tracker } : {}),
    ...(now ? { now } : {}),
    metrics,
    logger,
    providers,
    ...(queue ? { queue } : {}),
    verifyToken: config.whatsapp.verifyToken,
    ...(opts.http ? { limits: opts.http } : {}),
    trustProxy: config.trustProxy,
    unsignedFrom: config.allowUnsigned ? 'anywhere' : 'loopback',
    adminToken,
    flows,
    resetSession: (key, agent, anyway) => engine.adminReset(key, agent, anyway),
    flowForMessage: (s, m) => engine.flowForMessage(s, m),
    sessionTtlSec: config.sessionTtlSec,
    agents: {
      take: (key, agent, takeOver, seenVersion, seenAgent) =>
        engine.takeSession(key, agent, takeOver, seenVersion, seenAgent),
      message: (key, text, agent, anyway) => engine.agentMessage(key, text, agent, anyway),
      handback: (key, step, agent, data, anyway) => engine.handback(key, step, agent, data, anyway),
    },
  });

  const alerts =
    config.alert.webhookUrl !== undefined
      ? new AlertWatcher({
          webhookUrl: config.alert.webhookUrl,
          queueDepth: config.alert.queueDepth,
          oldestMs: config.alert.oldestMs,
          unsentMs: config.alert.unsentMs,
          heartbeat: config.alert.workers,
          // Its own reads, every few seconds: what it reports must be current.
          stats: figures,
          // Shared by every process and kept across restarts: an episode is announced once.
          store: backend.alerts,
          logger,
        })
      : null;

  let started = false;
  let forgetHandle = (): void => undefined;
  /** A worker-only process's probe server (`BATON_HEALTH_PORT`). */
  const health =
    !roles.ingress && roles.worker && config.healthPort !== undefined
      ? buildHealthServer(
          backend,
          metrics,
          stats,
          (): Record<string, boolean> => (queue ? { rabbitmq: queue.connected } : {}),
          () => draining,
        )
      : null;
  return {
    config,
    backend,
    engine,
    server,
    adminToken,
    adminTokenGenerated,
    logger,
    metrics,
    alerts,
    queue,
    async start() {
      started = true;
      await queue?.ready();
      if (roles.worker) {
        engine.start(opts.concurrency ?? 32);
        void tellOtherFlows(backend, engine.workerId, flowList, logger);
        queue?.consume(storeQueued, {
          healthy: async () => Object.values(await backend.health()).every(Boolean),
        });
      }
      if (health) await health.listen({ port: config.healthPort!, host: config.host });
      alerts?.start();
      if (!roles.ingress) return null;
      const url = await server.listen({ port: config.port, host: config.host });
      // The CLI on this machine reaches an embedded Baton through its admin API (local-handle.ts).
      if (backend.kind === 'embedded') {
        forgetHandle = writeLocalHandle(config.dataDir, {
          url: loopbackUrl(server.server.address() as AddressInfo),
          token: adminToken,
        });
      }
      return url;
    },
    async stop() {
      forgetHandle();
      // The workers stop taking sessions at once and finish those in hand, beside the drain, not
      // after it (outside test QA62-F1: a worker took a new session during the drain, its send
      // was then cut at the stop's grace and the next holder sent that prompt again; the stop
      // took the drain, then the batches and the grace, 11.8 s). What the drain still takes in
      // is stored for the next process.
      const engineStopped = started && roles.worker ? engine.stop() : null;
      engineStopped?.catch(() => undefined); // awaited (and its error thrown) below
      // The agents' sends in flight get the same grace, from the same moment (it ran after the
      // drain: a stop with a few seconds of it overran Docker's 10 s, outside test QA136-F2).
      const graceOver = started && roles.ingress ? engine.sendsGrace() : null;
      // From here every answer closes its connection: the server's close waits for the requests
      // in hand, and a keep-alive connection one of them leaves open held the stop for the
      // keep-alive timeout, 72 s (an agent's message at a slow gateway when the stop came).
      draining = started;
      if (config.drainMs > 0 && started && (roles.ingress || health)) {
        // A load balancer sees /readyz fail and stops sending here while requests still get
        // answered (each answer closing its connection), instead of meeting a closed port and
        // reset keep-alive connections (outside test QA45-F2).
        logger.info({ drainMs: config.drainMs }, 'stopping: not ready, still serving for BATON_DRAIN_MS');
        await new Promise((r) => setTimeout(r, config.drainMs));
      }
      await alerts?.stop();
      if (roles.ingress) await server.close();
      localIntake?.close();
      graceOver?.();
      // The webhooks in the consumer's hand are stored (or go back to the queue) first.
      await queue?.close();
      await health?.close();
      await engineStopped;
      if (started && roles.worker) await tellLeftOver(backend, logger);
      await backend.close();
    },
  };
}

/**
 * Warns, as a worker starts, when the live workers beside it run other flows: a new user's
 * session starts in the first flow of whichever worker takes it, so a worker started with another
 * `BATON_FLOWS` gave 119 of 400 new users another bot without a word (outside test QA130-F1), and
 * so did one with the same flows in another order (QA132-F1); a session of a flow a worker does
 * not run waits for one that does.
 */
async function tellOtherFlows(
  backend: Backend,
  me: string,
  flows: readonly Flow[],
  logger: Logger,
): Promise<void> {
  const live = await backend.liveFlows?.().catch(() => undefined);
  if (live === undefined) return;
  const ids = (list: readonly { id: string }[]): string =>
    [...new Set(list.map((f) => f.id))].sort().join(', ');
  const mine = ids(flows);
  const first = flows[0]!.id;
  // A worker of a version that does not mark its first flow starts where nobody can tell.
  const firstOf = (served: readonly ServedFlow[]): string | undefined => served.find((f) => f.starts)?.id;
  const startsElsewhere = (served: readonly ServedFlow[]): boolean => (firstOf(served) ?? first) !== first;
  const differ = [...live].filter(
    ([worker, served]) => worker !== me && (startsElsewhere(served) || ids(served) !== mine),
  );
  if (differ.length === 0) return;
  const named = differ.map(
    ([worker, served]) =>
      `${worker} runs ${ids(served)}${firstOf(served) === undefined ? '' : `, new sessions in ${firstOf(served)}`}`,
  );
  logger.warn(
    { flows: 'differ', workers: differ.map(([worker]) => worker) },
    `live workers run other flows than this one (${mine}, new sessions in ${first}): ${named.join('; ')}. ` +
      (differ.some(([, served]) => startsElsewhere(served))
        ? `A new user's session starts in the first flow of whichever worker takes it, so new users meet different bots`
        : `A session of a flow a worker does not run waits for a worker that runs it`) +
      '; give every worker the same BATON_FLOWS, in the same order',
  );
}

/**
 * Says, as a worker stops, what it leaves committed and not done: replies not yet sent (the next
 * start sends them, or another worker) and messages stored and not yet handled (outside test
 * QA94-F6: a stop with a slow gateway said nothing of the replies it left). At most a second: a
 * store that does not answer does not hold the stop up.
 */
async function tellLeftOver(backend: Backend, logger: Logger): Promise<void> {
  try {
    const stats = await within(1000, backend.stats(), null);
    if (stats === null || (stats.unsent === 0 && stats.queueDepth === 0)) return;
    // One process alone (embedded): nothing happens to them until it starts again.
    const alone = backend.kind === 'embedded';
    const who = alone ? 'the next start' : 'the other workers or the next start';
    logger[alone ? 'warn' : 'info'](
      { unsent: stats.unsent, queueDepth: stats.queueDepth },
      alone
        ? `stopped with ${stats.unsent} replies or effect calls committed and not done, and ${stats.queueDepth} messages stored and not handled: ${who} takes them on`
        : `stopped; the store holds ${stats.unsent} replies or effect calls committed and not done, and ${stats.queueDepth} messages stored and not handled, this process's and others' alike: ${who} take them on`,
    );
  } catch {
    // The store is going or gone: nothing to say about it here.
  }
}

/**
 * An error message on one line: its lines joined with "; ". A compiler's first line is often
 * only "Transform failed with 1 error:", the file, line and reason following on the next.
 */
function oneLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const text = lines.join('; ').replace(/:;/g, ':');
  return text.length > 500 ? `${text.slice(0, 500)}...` : text;
}

/** The distributed backend's options as `config` gives them; null in embedded mode. */
export function distributedOptions(
  config: Config,
  logger: Logger,
  now?: () => number,
): DistributedBackendOptions | null {
  if (config.redisUrl === undefined || config.databaseUrl === undefined) return null;
  return {
    redisUrl: config.redisUrl,
    cluster: config.redisCluster,
    databaseUrl: config.databaseUrl,
    bufferMs: config.bufferMs,
    dedupeTtlSec: config.dedupeTtlSec,
    syncMode: config.syncMode,
    intakeLog: config.intakeLog,
    prefix: config.redisPrefix,
    schema: config.pgSchema,
    logger,
    ...(now ? { now } : {}),
    retentionSec: config.retentionSec,
    messageRetentionSec: config.messageRetentionSec,
    sessionTtlSec: config.sessionTtlSec,
    // Redis keeps an idle session's replies and data no longer than texts may be kept at all.
    idleTtlSec: Math.min(config.sessionTtlSec, config.messageRetentionSec),
  };
}

/** The embedded backend's options as `config` gives them. */
export function embeddedOptions(config: Config, now?: () => number, logger?: Logger): EmbeddedOptions {
  return {
    ...(logger ? { onWarning: (m: string) => logger.warn(m), onInfo: (m: string) => logger.info(m) } : {}),
    dataDir: config.dataDir,
    bufferMs: config.bufferMs,
    dedupeTtlSec: config.dedupeTtlSec,
    ...(now ? { now } : {}),
    retentionSec: config.retentionSec,
    messageRetentionSec: config.messageRetentionSec,
    sessionTtlSec: config.sessionTtlSec,
  };
}

/**
 * The store `config` names: distributed when Redis and PostgreSQL are both set, else embedded.
 * `distributed` adds to (or overrides) the distributed backend's options.
 */
export async function createBackend(
  config: Config,
  logger: Logger,
  o: { now?: () => number; distributed?: Partial<DistributedBackendOptions> } = {},
): Promise<Backend> {
  const distributed = distributedOptions(config, logger, o.now);
  if (distributed) {
    const { DistributedBackend } = await import('./backends/distributed/index.ts');
    return new DistributedBackend({ ...distributed, ...o.distributed });
  }
  return new EmbeddedBackend(embeddedOptions(config, o.now, logger));
}
