/**
 * Prometheus metrics, `baton_` prefix (SPEC section 4). One registry per app instance.
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly webhooks = new Counter({
    name: 'baton_webhooks_total',
    help: 'Webhook POSTs by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly messages = new Counter({
    name: 'baton_messages_total',
    help: 'Inbound messages by outcome (transition kind, duplicate, dead_letter)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'baton_queue_depth',
    help: 'Messages stored and not yet processed',
    registers: [this.registry],
  });
  readonly oldestPending = new Gauge({
    name: 'baton_oldest_pending_seconds',
    help: 'Age of the oldest unprocessed message',
    registers: [this.registry],
  });
  readonly lockWait = new Histogram({
    name: 'baton_lock_wait_seconds',
    help: 'Time from a session being due to its lease being granted',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly batch = new Histogram({
    name: 'baton_batch_seconds',
    help: 'Time to run and commit one batch',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly outbound = new Counter({
    name: 'baton_outbound_total',
    help: 'Outbound sends by outcome (sent, retry, failed)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly late = new Counter({
    name: 'baton_late_messages_total',
    help: 'Messages recorded as late',
    registers: [this.registry],
  });
  readonly stale = new Counter({
    name: 'baton_stale_inputs_total',
    help: 'Taps on buttons of another step or an earlier visit',
    registers: [this.registry],
  });
  readonly duplicates = new Counter({
    name: 'baton_duplicates_total',
    help: 'Redelivered messages recognised by id',
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'baton_process_' });
  }
}
