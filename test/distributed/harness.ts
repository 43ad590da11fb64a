/**
 * Building distributed backends for tests: isolated, quiet, cleaned up after each test.
 */
import { afterEach } from 'vitest';
import { DistributedBackend, type DistributedBackendOptions } from '../../src/backends/distributed/index.ts';
import { DATABASE_URL, REDIS_URL, dropIsolation, isolation, memoryLogger } from '../support/services.ts';

type Overrides = Partial<DistributedBackendOptions>;

const cleanups: Array<() => Promise<void>> = [];

/** Registers the per-test cleanup; call once at the top of a test file. */
export function useCleanup(): void {
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
}

/** Runs `fn` after the current test, after the backends are closed. */
export function afterThisTest(fn: () => Promise<void>): void {
  cleanups.unshift(fn);
}

/**
 * A backend on fresh storage (its own prefix and schema), or on the prefix and/or schema of
 * another one named in `shared`. What this call created is dropped after the test.
 */
export async function makeBackend(
  overrides: Overrides = {},
  shared: { prefix?: string; schema?: string } = {},
): Promise<{
  backend: DistributedBackend;
  prefix: string;
  schema: string;
  logger: ReturnType<typeof memoryLogger>;
}> {
  const fresh = isolation();
  const iso = { prefix: shared.prefix ?? fresh.prefix, schema: shared.schema ?? fresh.schema };
  const logger = memoryLogger();
  const backend = new DistributedBackend({
    redisUrl: REDIS_URL,
    databaseUrl: DATABASE_URL,
    bufferMs: 50,
    dedupeTtlSec: 3600,
    syncMode: 'write-through',
    prefix: iso.prefix,
    schema: iso.schema,
    logger,
    ...overrides,
  });
  cleanups.push(async () => {
    await backend.close();
  });
  const dropPrefix = shared.prefix === undefined ? iso.prefix : null;
  const dropSchema = shared.schema === undefined ? iso.schema : null;
  // Keys are dropped through the machine's Redis: a test pointing the backend at a proxy of it
  // has closed the proxy by then, and a test's private Redis is thrown away whole.
  afterThisTest(() => dropIsolation(dropPrefix, dropSchema, REDIS_URL));
  await backend.init();
  return { backend, ...iso, logger };
}

/**
 * A factory of backends on fresh storage, not initialised (the conformance suites call `init`),
 * dropped after the test: for the suites run against both sync modes.
 */
export function uninitialisedBackends(
  syncMode: 'write-through' | 'write-behind',
  bufferMs: number,
): () => Promise<DistributedBackend> {
  return async () => {
    const iso = isolation();
    afterThisTest(() => dropIsolation(iso.prefix, iso.schema));
    return new DistributedBackend({
      redisUrl: REDIS_URL,
      databaseUrl: DATABASE_URL,
      bufferMs,
      dedupeTtlSec: 3600,
      syncMode,
      ...iso,
      logger: memoryLogger(),
    });
  };
}
