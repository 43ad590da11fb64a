/**
 * Aggregates of repeated bench runs: median with min and max, and how they are printed.
 * @module
 */

/** The median and range of repeated measurements of one figure. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

/**
 * The median (mean of the two middle values for an even count), min and max of `values`;
 * null when there are none. Non-finite values are left out.
 *
 * @example
 * ```ts
 * spread([3, 1, 2]); // { median: 2, min: 1, max: 3, n: 3 }
 * ```
 */
export function spread(values: readonly number[]): Spread | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

/**
 * `median (min-max)` with `fmt` applied to each; only the median when all runs agree or there
 * was one run; `n/a` for null.
 *
 * @example
 * ```ts
 * formatSpread(spread([410, 380, 455]), (x) => x.toFixed(0)); // '410 (380-455)'
 * ```
 */
export function formatSpread(s: Spread | null, fmt: (x: number) => string): string {
  if (s === null) return 'n/a';
  const m = fmt(s.median);
  if (s.n === 1) return m;
  const lo = fmt(s.min);
  const hi = fmt(s.max);
  return lo === hi ? m : `${m} (${lo}-${hi})`;
}

/** Milliseconds: one decimal under 100. */
export const fmtMs = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/** Microseconds from milliseconds, whole. */
export const fmtUs = (ms: number): string => (ms * 1000).toFixed(0);
