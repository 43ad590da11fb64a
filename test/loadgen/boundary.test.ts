import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadgenEntry } from '../../src/cli/load.ts';

const SRC = resolve(import.meta.dirname, '../../src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('the load generator is not product code', () => {
  it('src/ never imports loadgen/, not even for types: the product build does not see it', () => {
    const imports: string[] = [];
    for (const file of tsFiles(SRC)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)'([^']+)'/g)) {
        if (m[1]!.includes('loadgen/')) imports.push(`${file}: ${m[0]}`);
      }
    }
    expect(imports).toEqual([]);
  });

  it('baton load finds the generator beside the sources, or beside the compiled CLI', () => {
    expect(loadgenEntry('file:///repo/src/cli/load.ts')).toBe('file:///repo/loadgen/cli.ts');
    expect(loadgenEntry('file:///pkg/dist/cli/load.js')).toBe('file:///pkg/dist/loadgen/cli.js');
    expect(loadgenEntry()).toBe(new URL('../../loadgen/cli.ts', import.meta.url).href);
  });
});
