/**
 * Small numeric helpers of the load generator: latency summaries and a seeded PRNG, so a
 * scenario with the same seed makes the same choices.
 * @module
 */
/** A latency distribution, milliseconds. */
export interface LatencySummary {
    readonly count: number;
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
    readonly mean: number;
}
/** The `q` quantile (0..1) of `sorted` by the nearest-rank method; 0 when empty. */
export declare function quantile(sorted: readonly number[], q: number): number;
/**
 * Summarises samples (milliseconds).
 *
 * @example
 * ```ts
 * summarize([1, 2, 3, 100]).p50; // 2
 * ```
 */
export declare function summarize(samples: readonly number[]): LatencySummary;
/** A seeded generator of floats in [0, 1) (mulberry32). */
export type Random = () => number;
/**
 * A deterministic PRNG for `seed`.
 *
 * @example
 * ```ts
 * const rnd = seededRandom(42);
 * rnd(); // always the same first value for seed 42
 * ```
 */
export declare function seededRandom(seed: number): Random;
/** A copy of `items` in an order drawn from `rnd` (Fisher-Yates). */
export declare function shuffled<T>(items: readonly T[], rnd: Random): T[];
