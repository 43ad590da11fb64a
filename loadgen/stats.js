/**
 * Small numeric helpers of the load generator: latency summaries and a seeded PRNG, so a
 * scenario with the same seed makes the same choices.
 * @module
 */
/** The `q` quantile (0..1) of `sorted` by the nearest-rank method; 0 when empty. */
export function quantile(sorted, q) {
    if (sorted.length === 0)
        return 0;
    const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
    return sorted[rank - 1];
}
/**
 * Summarises samples (milliseconds).
 *
 * @example
 * ```ts
 * summarize([1, 2, 3, 100]).p50; // 2
 * ```
 */
export function summarize(samples) {
    const sorted = [...samples].sort((a, b) => a - b);
    const sum = sorted.reduce((a, b) => a + b, 0);
    return {
        count: sorted.length,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.length === 0 ? 0 : sorted[sorted.length - 1],
        mean: sorted.length === 0 ? 0 : sum / sorted.length,
    };
}
/**
 * A deterministic PRNG for `seed`.
 *
 * @example
 * ```ts
 * const rnd = seededRandom(42);
 * rnd(); // always the same first value for seed 42
 * ```
 */
export function seededRandom(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
/** A copy of `items` in an order drawn from `rnd` (Fisher-Yates). */
export function shuffled(items, rnd) {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i -= 1) {
        const j = Math.floor(rnd() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
}
