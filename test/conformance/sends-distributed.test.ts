/**
 * The sends suite (SPEC 1.6) against the distributed backend (real Redis + PostgreSQL), in both
 * sync modes.
 */
import { DistributedBackend } from '../../src/backends/distributed/index.ts';
import { useCleanup, afterThisTest } from '../distributed/harness.ts';
import {
  DATABASE_URL,
  describeServices,
  dropIsolation,
  isolation,
  memoryLogger,
  REDIS_URL,
} from '../support/services.ts';
import { describeSendsConformance } from './sends.ts';

function make(syncMode: 'write-through' | 'write-behind'): () => Promise<DistributedBackend> {
  return async () => {
    const iso = isolation();
    afterThisTest(() => dropIsolation(iso.prefix, iso.schema));
    return new DistributedBackend({
      redisUrl: REDIS_URL,
      databaseUrl: DATABASE_URL,
      bufferMs: 0,
      dedupeTtlSec: 3600,
      syncMode,
      ...iso,
      logger: memoryLogger(),
    });
  };
}

describeServices('distributed backend', () => {
  useCleanup();
  describeSendsConformance('distributed, write-through', make('write-through'));
  describeSendsConformance('distributed, write-behind', make('write-behind'));
});
