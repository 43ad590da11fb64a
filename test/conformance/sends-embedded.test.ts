/**
 * The sends suite (SPEC 1.6) against the embedded backend (a real SQLite file per test).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { describeSendsConformance } from './sends.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describeSendsConformance('embedded (SQLite)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-sends-'));
  dirs.push(dir);
  return new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600 });
});
