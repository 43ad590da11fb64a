/**
 * Prometheus metrics, `baton_` prefix (SPEC section 4). One registry per app instance.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackendStats } from './backends/types.ts';
import { buildInfo } from './build-info.ts';
import { within } from './sleep.ts';

/** Buckets of the latency histograms, seconds. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

export class Metrics {
  readonly registry = new Registry();
  readonly webhooks = this.#counter('baton_webhooks_total', 'Webhook POSTs by provider and outcome', [
    'provider',
    'outcome',
  ]);
  readonly messages = this.#counter(
    'baton_messages_total',
    'Inbound messages by outcome (transition kind, duplicate, dead_letter)',
    ['outcome'],
  );
  readonly queueDepth = this.#gauge('baton_queue_depth', 'Messages stored and not yet processed');
  readonly oldestPending = this.#gauge(
    'baton_oldest_pending_seconds',
    'Age of the oldest unprocessed message',
  );
  readonly unsent = this.#gauge(
    'baton_unsent',
    'Sends committed and not done: replies not yet accepted by the provider, effect calls not yet answered',
  );
  readonly oldestUnsent = this.#gauge('baton_oldest_unsent_seconds', 'Age of the oldest unsent send');
  readonly lockWait = this.#histogram(
    'baton_lock_wait_seconds',
    'Time a worker waits for the lease of a session it claimed to be granted (how long sessions wait to be claimed is baton_oldest_pending_seconds)',
  );
  readonly batch = this.#histogram('baton_batch_seconds', 'Time to run and commit one batch');
  readonly outbound = this.#counter(
    'baton_outbound_total',
    'Outbound sends by outcome (sent, retry, failed)',
    ['outcome'],
  );
  readonly late = this.#counter('baton_late_messages_total', 'Messages recorded as late');
  readonly stale = this.#counter(
    'baton_stale_inputs_total',
    'Taps on buttons of another step or an earlier visit',
  );
  readonly duplicates = this.#counter('baton_duplicates_total', 'Redelivered messages recognised by id');
  readonly effects = this.#counter(
    'baton_effects_total',
    'Effect attempts by effect name and outcome (ok, retry, failed)',
    ['effect', 'outcome'],
  );
  readonly queued = this.#counter(
    'baton_amqp_intake_total',
    'Webhooks taken from the RabbitMQ intake by outcome (stored, retry, rejected)',
    ['outcome'],
  );
  readonly figuresUp = new Gauge({
    name: 'baton_figures_up',
    help: "1 when this scrape read the deployment's figures from the store, 0 when the store did not answer within 2 s (the gauges then keep the last values read). queue: queue depth, oldest pending, live workers (Redis, or SQLite); durable: unsent and oldest unsent (PostgreSQL in distributed mode)",
    labelNames: ['figures'] as const,
    registers: [this.registry],
  });
  readonly liveWorkers = this.#gauge(
    'baton_live_workers',
    'Worker processes whose heartbeat is current (0: nothing processes messages)',
  );

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    // Which build serves: `count by (commit) (baton_build_info)` tells old processes from new
    // ones during a rolling upgrade (outside test QA66-F3).
    const { version, commit } = buildInfo();
    new Gauge({
      name: 'baton_build_info',
      help: 'Always 1: the version of Baton this process runs, and the commit it was built from',
      labelNames: ['version', 'commit'],
      registers: [this.registry],
    }).set({ version, commit: commit ?? 'unknown' }, 1);
    if (!opts.defaultMetrics) return;
    // Node's and the process's own figures: baton_process_cpu_seconds_total, baton_nodejs_*.
    collectDefaultMetrics({ register: this.registry, prefix: 'baton_' });
    // prom-client names three gauges `..._total`, which Prometheus keeps for counters
    // (`promtool check metrics` refuses them); `baton_nodejs_active_resources` (a gauge by
    // resource type) says the same.
    for (const name of ['handles', 'requests', 'resources'])
      this.registry.removeSingleMetric(`baton_nodejs_active_${name}_total`);
  }

  /** Counts what storing one webhook did: new messages, duplicates. */
  stored(result: { readonly accepted: number; readonly duplicates: number }): void {
    this.messages.inc({ outcome: 'stored' }, result.accepted);
    if (result.duplicates > 0) {
      this.duplicates.inc(result.duplicates);
      this.messages.inc({ outcome: 'duplicate' }, result.duplicates);
    }
  }

  /** A counter in this instance's registry. */
  #counter<T extends string = string>(name: string, help: string, labelNames: readonly T[] = []): Counter<T> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  /** A gauge in this instance's registry. */
  #gauge(name: string, help: string): Gauge {
    return new Gauge({ name, help, registers: [this.registry] });
  }

  /** A latency histogram ({@link LATENCY_BUCKETS}) in this instance's registry. */
  #histogram(name: string, help: string): Histogram {
    return new Histogram({ name, help, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  }
}

/** What `/metrics` needs of the store: the deployment-wide figures (maintained counters, no scan). */
export type MetricsStats = Pick<
  BackendStats,
  'queueDepth' | 'oldestPendingMs' | 'workers' | 'unsent' | 'oldestUnsentMs' | 'stale'
>;

/** How long `/metrics` waits for the store's figures, ms (a scraper's default timeout is 10 s). */
export const METRICS_STATS_WAIT_MS = 2000;

/**
 * `GET /metrics` on any process, ingress or worker: its own counters (a worker's are the
 * engine's: batches, sends, late and stale inputs, dead letters), and the deployment's queue
 * gauges read fresh from the store, waited for at most {@link METRICS_STATS_WAIT_MS}: if it does
 * not answer, they are left as they were and `baton_figures_up` says so (outside tests QA116-F2,
 * QA118-F2: during an outage the gauges kept their last values with nothing to tell, and a stalled
 * PostgreSQL held the page for 13-15 s).
 */
export function metricsRoute(
  app: FastifyInstance,
  metrics: Metrics,
  stats: () => Promise<MetricsStats>,
): void {
  app.get('/metrics', async (_req, reply) => {
    const s = await within(
      METRICS_STATS_WAIT_MS,
      stats().catch(() => null),
      null,
    );
    if (s) {
      metrics.queueDepth.set(s.queueDepth);
      metrics.oldestPending.set(s.oldestPendingMs / 1000);
      metrics.liveWorkers.set(s.workers);
      // Stale counts are the last read; the oldest one's age still grows with the clock.
      metrics.unsent.set(s.unsent);
      metrics.oldestUnsent.set(s.oldestUnsentMs / 1000);
    }
    metrics.figuresUp.set({ figures: 'queue' }, s !== null && s.stale?.includes('queue') !== true ? 1 : 0);
    metrics.figuresUp.set({ figures: 'durable' }, s !== null && s.stale?.includes('unsent') !== true ? 1 : 0);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
