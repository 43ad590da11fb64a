/**
 * Stats for readers that poll (`/metrics` scrapers, `/admin/api/stats`, the dashboard, the
 * alert watcher): one read of the store serves every caller for `maxAgeMs`, and callers that
 * arrive while a read is running share it. However often they poll, the store answers at most
 * about once per three quarters of `maxAgeMs`: a scraper adds no store work. The process it asks still serves each
 * request (about 2 ms of CPU for a `/metrics` page, above a bare route's): a scraper polling many
 * times a second on a small machine takes that from the workers beside it (outside test QA107-F2).
 * @module
 */
import type { BackendStats } from './types.ts';

/** How long one read of the stats serves, ms. */
export const STATS_MAX_AGE_MS = 1000;

/** Share of `maxAgeMs` after which a caller's answer also starts the next read, in the background. */
const REFRESH_AHEAD = 0.75;

/**
 * Wraps `read` so that its answer is reused for `maxAgeMs` (default {@link STATS_MAX_AGE_MS})
 * and concurrent callers share one read. A caller that finds the answer in the last quarter of its
 * age gets it at once and starts the next read, so a reader polling more often than `maxAgeMs`
 * never waits for the store: with webhooks arriving, a stale answer's caller waited for a whole
 * read on a busy event loop (outside test QA114-F2: `/admin/api/stats` p95 212-249 ms, 3x
 * `/healthz`). A failed read is not kept (one in the background leaves the last answer to age out).
 *
 * @example
 * const stats = cachedStats(() => backend.stats());
 * const { queueDepth } = await stats();
 */
export function cachedStats(
  read: () => Promise<BackendStats>,
  maxAgeMs: number = STATS_MAX_AGE_MS,
  now: () => number = Date.now,
): () => Promise<BackendStats> {
  let last: { at: number; value: BackendStats } | null = null;
  let running: Promise<BackendStats> | null = null;
  const start = (): Promise<BackendStats> => {
    const at = now();
    running = read().then(
      (value) => {
        last = { at, value };
        running = null;
        return value;
      },
      (err: unknown) => {
        running = null;
        throw err;
      },
    );
    return running;
  };
  return () => {
    const age = last === null ? Number.POSITIVE_INFINITY : now() - last.at;
    if (last !== null && age < maxAgeMs) {
      if (age >= REFRESH_AHEAD * maxAgeMs && running === null) start().catch(() => undefined);
      return Promise.resolve(last.value);
    }
    return running ?? start();
  };
}
