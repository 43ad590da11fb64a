/**
 * The Backend conformance suite against the distributed backend (real Redis + PostgreSQL),
 * in both sync modes.
 */
import { makeBackend, useCleanup } from '../distributed/harness.ts';
import { describeServices } from '../support/services.ts';
import { CONFORMANCE_BUFFER_MS, describeBackendConformance } from './backend-conformance.ts';

describeServices('distributed backend', () => {
  useCleanup();
  describeBackendConformance('distributed, write-through', async () => {
    const { backend } = await makeBackend({ bufferMs: CONFORMANCE_BUFFER_MS, syncMode: 'write-through' });
    return backend;
  });
  describeBackendConformance('distributed, write-behind', async () => {
    const { backend } = await makeBackend({ bufferMs: CONFORMANCE_BUFFER_MS, syncMode: 'write-behind' });
    return backend;
  });
});
