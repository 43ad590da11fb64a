/**
 * "Did you mean": the known word closest to a misspelt one, for errors and warnings that name a
 * flow's field or a configuration variable.
 * @module
 */

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const row = [i];
    for (let j = 1; j <= b.length; j += 1)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The known word closest to `word` (any case), if one is close: 2 edits, or a third of its length. */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d <= Math.max(2, Math.floor(k.length / 3)) && (best === undefined || d < best.d)) best = { k, d };
  }
  return best?.k;
}
