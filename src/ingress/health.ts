/**
 * The probe server of a process that serves no webhooks (`baton worker` with
 * `BATON_HEALTH_PORT`): `GET /healthz` (the process runs), `GET /readyz` (its stores answer:
 * 503 while Redis or PostgreSQL, or the RabbitMQ intake it consumes, is away; 200 again once
 * the worker has reconnected) and
 * `GET /metrics` (the worker's own counters: what the engine counts lives only there).
 * @module
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Backend } from '../backends/types.ts';
import { DEFAULT_HTTP_LIMITS, drainingAnswers, guardServer, limitedServerOptions } from './server.ts';
import { metricsRoute, type Metrics, type MetricsStats } from '../metrics.ts';

export function buildHealthServer(
  backend: Backend,
  metrics: Metrics,
  stats: () => Promise<MetricsStats> = () => backend.stats(),
  /** More readiness checks (the RabbitMQ intake's connection). */
  extraChecks: () => Record<string, boolean> = () => ({}),
  /** The process is stopping (`BATON_DRAIN_MS`): not ready. */
  draining: () => boolean = () => false,
): FastifyInstance {
  // The same limits as the webhook server's (slow clients, connection caps, error shape): a probe
  // port held 19,800 idle connections and answered dribbled headers after 37 s (QA42-F4).
  const app = Fastify({ logger: false, ...limitedServerOptions(DEFAULT_HTTP_LIMITS) });
  guardServer(app, DEFAULT_HTTP_LIMITS, DEFAULT_HTTP_LIMITS.maxPerAddress);
  metricsRoute(app, metrics, stats);
  app.get('/healthz', async () => ({ ok: true }));
  drainingAnswers(app, draining);
  app.get('/readyz', async (_req, reply) => {
    const checks = { ...(await backend.health().catch(() => ({ store: false }))), ...extraChecks() };
    if (draining()) return reply.code(503).send({ ok: false, draining: true, checks });
    const ok = Object.values(checks).every(Boolean);
    return reply.code(ok ? 200 : 503).send({ ok, checks });
  });
  return app;
}
