/**
 * Upgrading an embedded store (outside test QA66-F1, F4): a one-shot command that reads or changes
 * a session opens the store as it is, and refuses one of an older schema with one line saying how
 * to upgrade it, instead of upgrading it without a word (after which the older Baton the operator
 * still ran refused to start, with no backup made). `baton migrate` and `baton start` say what
 * they did to the schema.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/backends/embedded/schema.ts';
import { runBaton } from '../support/procs.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-upgrade-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OLDER = MIGRATIONS.length - 2;

/** The schema version of the store in `dir`. */
function schemaOf(): number {
  const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

it('a session command refuses a store of an older schema and leaves it as it is; migrate upgrades it and says so', async () => {
  // A store as an older Baton left it: its migrations only.
  const db = new Database(join(dir, 'baton.sqlite'));
  for (const m of MIGRATIONS.slice(0, OLDER)) db.exec(m);
  db.pragma(`user_version = ${OLDER}`);
  db.close();
  const env = { BATON_DATA_DIR: dir, LOG_LEVEL: 'info' };

  for (const args of [
    ['session', 'show', '15550001111'],
    ['lock', 'clear', '15550001111'],
  ]) {
    const r = await runBaton(args, env);
    expect(r.code, args.join(' ')).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `baton: the SQLite store in ${dir} has schema ${OLDER}, older than this Baton's ${MIGRATIONS.length}: upgrade it with baton migrate (or by starting Baton there), after copying the directory if you may go back to the older Baton\n`,
    );
  }
  expect(schemaOf()).toBe(OLDER);

  expect(await runBaton(['migrate'], env)).toMatchObject({
    code: 0,
    stdout: `migrated (embedded): upgraded from schema ${OLDER} to ${MIGRATIONS.length}\n`,
  });
  expect(schemaOf()).toBe(MIGRATIONS.length);
  expect(await runBaton(['migrate'], env)).toMatchObject({
    code: 0,
    stdout: `migrated (embedded): already up to date (schema ${MIGRATIONS.length})\n`,
  });
  const s = await runBaton(['session', 'show', '15550001111'], env);
  expect(s).toMatchObject({ code: 1, stdout: '', stderr: 'baton: No session for 15550001111\n' });
}, 90_000);
