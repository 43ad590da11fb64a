/**
 * The effects suite against the distributed backend (real Redis + PostgreSQL), in both sync modes.
 */
import { uninitialisedBackends, useCleanup } from '../distributed/harness.ts';
import { describeServices } from '../support/services.ts';
import { describeEffectsConformance, EFFECTS_BUFFER_MS } from './effects.ts';

describeServices('distributed backend', () => {
  useCleanup();
  describeEffectsConformance(
    'distributed, write-through',
    uninitialisedBackends('write-through', EFFECTS_BUFFER_MS),
  );
  describeEffectsConformance(
    'distributed, write-behind',
    uninitialisedBackends('write-behind', EFFECTS_BUFFER_MS),
  );
});
