/**
 * A harness on one of {@link HARNESS_BACKENDS}, started before a suite's tests and closed (its
 * isolated stores dropped) after them: the set-up every two-store suite shares.
 *
 * It returns the harness at once, bound late: its properties are the running harness's, read
 * when a test (or a helper a test calls) uses them. Using it while the backend is unavailable,
 * or outside the suite's tests, throws.
 *
 * @example
 * ```ts
 * describe.each(HARNESS_BACKENDS)('x on the %s backend', (_name, available, setup) => {
 *   const h = harnessOn(available, setup, { BATON_BUFFER_MS: '300' });
 *   it.skipIf(!available)('...', async () => {
 *     expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
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
  /** Baton's options, or a function that makes them when the harness starts (after the suite's earlier `beforeAll`s). */
  opts: BatonOptions | (() => BatonOptions) = {},
): Harness {
  let h: Harness | undefined;
  let drop: () => Promise<void> = async () => undefined;
  beforeAll(async () => {
    if (!available) return;
    const s = setup();
    drop = s.drop;
    h = await startHarness({ ...s.env, ...env }, typeof opts === 'function' ? opts() : opts);
  });
  afterAll(async () => {
    await h?.close();
    h = undefined;
    await drop();
  });
  return new Proxy({} as Harness, {
    get(_target, property) {
      if (h === undefined) throw new Error('the harness is not running (backend unavailable?)');
      const value: unknown = Reflect.get(h, property, h);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(h) : value;
    },
  });
}
