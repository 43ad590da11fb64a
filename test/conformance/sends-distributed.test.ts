/**
 * The sends suite (SPEC 1.6) against the distributed backend (real Redis + PostgreSQL), in both
 * sync modes.
 */
import { uninitialisedBackends, useCleanup } from '../distributed/harness.ts';
import { describeServices } from '../support/services.ts';
import { describeSendsConformance } from './sends.ts';

describeServices('distributed backend', () => {
  useCleanup();
  describeSendsConformance('distributed, write-through', uninitialisedBackends('write-through', 0));
  describeSendsConformance('distributed, write-behind', uninitialisedBackends('write-behind', 0));
});
