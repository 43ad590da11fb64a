/**
 * The Backend conformance suite against the embedded backend (a real SQLite file per test).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { CONFORMANCE_BUFFER_MS, describeBackendConformance } from './backend-conformance.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describeBackendConformance('embedded (SQLite)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-conf-'));
  dirs.push(dir);
  return new EmbeddedBackend({ dataDir: dir, bufferMs: CONFORMANCE_BUFFER_MS, dedupeTtlSec: 3600 });
});
