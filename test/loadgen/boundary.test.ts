import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('the load generator is not product code', () => {
  it('src/ imports loadgen/ only lazily (a dynamic import by URL, which the build does not follow) or for types', () => {
    const eager: string[] = [];
    let lazy = 0;
    for (const file of tsFiles(SRC)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)) {
        if (m[2]!.includes('loadgen/') && m[1] === undefined) eager.push(`${file}: ${m[0]}`);
      }
      lazy += [...text.matchAll(/new URL\('[./]*loadgen\//g)].length;
    }
    expect(eager).toEqual([]);
    expect(lazy).toBeGreaterThan(0);
  });
});
