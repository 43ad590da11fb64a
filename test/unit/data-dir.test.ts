/**
 * The data directory (BATON_DATA_DIR) is created with its missing parents, or refused in one line
 * naming the variable: a path through a file, a directory the system will not create.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureDataDir } from '../../src/backends/embedded/dir-lock.ts';
import { ConfigError } from '../../src/errors.ts';

let root: string;
afterEach(() => rmSync(root, { recursive: true, force: true }));

function refusal(dir: string): ConfigError {
  try {
    ensureDataDir(dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`${dir} was accepted`);
}

describe('the data directory', () => {
  it('is created with its missing parents, and an existing one is taken as is', () => {
    root = mkdtempSync(join(tmpdir(), 'baton-data-'));
    const dir = join(root, 'a', 'b', 'c');
    ensureDataDir(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    ensureDataDir(dir);
  });

  it('a path that is, or goes through, a file is refused naming BATON_DATA_DIR, in one line', () => {
    root = mkdtempSync(join(tmpdir(), 'baton-data-'));
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    for (const dir of [file, join(file, 'below')]) {
      const err = refusal(dir);
      expect(err.variable).toBe('BATON_DATA_DIR');
      expect(err.message).toContain(dir);
      expect(err.message).not.toContain('\n');
    }
  });
});
