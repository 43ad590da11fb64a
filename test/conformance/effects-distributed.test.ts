/**
 * The effects suite against the distributed backend (real Redis + PostgreSQL), in both sync modes.
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
import { describeEffectsConformance, EFFECTS_BUFFER_MS } from './effects.ts';

function make(syncMode: 'write-through' | 'write-behind'): () => Promise<DistributedBackend> {
  return async () => {
    const iso = isolation();
    afterThisTest(() => dropIsolation(iso.prefix, iso.schema));
    return new DistributedBackend({
      redisUrl: REDIS_URL,
      databaseUrl: DATABASE_URL,
      bufferMs: EFFECTS_BUFFER_MS,
      dedupeTtlSec: 3600,
      syncMode,
      ...iso,
      logger: memoryLogger(),
    });
  };
}

describeServices('distributed backend', () => {
  useCleanup();
  describeEffectsConformance('distributed, write-through', make('write-through'));
  describeEffectsConformance('distributed, write-behind', make('write-behind'));
});
