/**
 * A harness on one of {@link HARNESS_BACKENDS}, started before a suite's tests and closed (its
 * isolated stores dropped) after them.
 *
 * @example
 * ```ts
 * describe.each(HARNESS_BACKENDS)('x on the %s backend', (_name, available, setup) => {
 *   const harness = harnessOn(available, setup, { BATON_BUFFER_MS: '300' });
 *   it.skipIf(!available)('...', async () => {
 *     const h = harness();
 *   });
 * });
 * ```
 */
import { afterAll, beforeAll } from 'vitest';
import type { BatonOptions } from '../../src/app.ts';
import { startHarness, type Harness } from './harness.ts';
import type { HarnessBackend } from './services.ts';

export function harnessOn(
  available: HarnessBackend[1],
  setup: HarnessBackend[2],
  env: Record<string, string> = {},
  opts: BatonOptions = {},
): () => Harness {
  let h: Harness | undefined;
  let drop: () => Promise<void> = async () => undefined;
  beforeAll(async () => {
    if (!available) return;
    const s = setup();
    drop = s.drop;
    h = await startHarness({ ...s.env, ...env }, opts);
  });
  afterAll(async () => {
    await h?.close();
    await drop();
  });
  return () => {
    if (h === undefined) throw new Error('the harness is not running (backend unavailable?)');
    return h;
  };
}
