/**
 * Stats for readers that poll (`/metrics` scrapers, `/admin/api/stats`, the dashboard, the
 * alert watcher): one read of the store serves every caller for `maxAgeMs`, and callers that
 * arrive while a read is running share it. However often they poll, the store answers at most
 * about once per `maxAgeMs`: a scraper adds no store work. The process it asks still serves each
 * request (about 2 ms of CPU for a `/metrics` page, above a bare route's): a scraper polling many
 * times a second on a small machine takes that from the workers beside it (outside test QA107-F2).
 * @module
 */
import type { BackendStats } from './types.ts';

/** How long one read of the stats serves, ms. */
export const STATS_MAX_AGE_MS = 1000;

/**
 * Wraps `read` so that its answer is reused for `maxAgeMs` (default {@link STATS_MAX_AGE_MS})
 * and concurrent callers share one read. A failed read is not kept.
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
  return () => {
    if (last !== null && now() - last.at < maxAgeMs) return Promise.resolve(last.value);
    if (running !== null) return running;
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
}
