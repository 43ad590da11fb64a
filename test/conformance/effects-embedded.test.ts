/**
 * The effects suite against the embedded backend (a real SQLite file per test).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { describeEffectsConformance, EFFECTS_BUFFER_MS } from './effects.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describeEffectsConformance('embedded (SQLite)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-fx-'));
  dirs.push(dir);
  return new EmbeddedBackend({ dataDir: dir, bufferMs: EFFECTS_BUFFER_MS, dedupeTtlSec: 3600 });
});
