/**
 * The SQL loader: one statement per file in `sql/`, each with a comment naming its `$n`
 * parameters; numbered migrations in `migrations/`. Files are read once, at start.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';

export const STATEMENT_NAMES = [
  'migrations-ledger-create',
  'migrations-lock',
  'migrations-applied',
  'migrations-record',
  'ping',
  'fence-block-reserve',
  'fence-block-sessions',
  'sessions-lock',
  'entries-refused',
  'sessions-upsert',
  'transitions-insert',
  'outbound-insert',
  'outbound-state-update',
  'outbound-status-by-provider-id',
  'inbound-insert',
  'inbound-get',
  'inbound-any',
  'inbound-by-session',
  'dead-letters-insert',
  'dead-letters-list',
  'dead-letter-get',
  'dead-letter-mark-replayed',
  'dead-letters-count',
  'session-get',
  'sessions-find',
  'sessions-by-bsuid',
  'sessions-list',
  'sessions-count',
  'transitions-by-session',
  'outbound-by-session',
  'outbound-failed',
  'outbound-get',
  'outbound-by-provider-ids',
  'retention-transitions-purge',
  'retention-outbound-purge',
  'retention-outbound-redact',
  'retention-outbound-failed-purge',
  'retention-inbound-purge',
  'retention-inbound-redact',
  'retention-dead-letters-purge',
  'retention-sessions-page',
  'retention-vacuum',
  'autovacuum-off',
  'store-identity',
  'intake-log-insert',
  'intake-log-sweep',
  'intake-log-page',
  'intake-log-fence-wait',
  'intake-log-floor',
  'intake-log-consumed',
  'outbound-unsent-sessions',
  'outbound-unsent-count',
  'alerts-firing-list',
  'alerts-firing-set',
  'alerts-firing-clear',
  'signed-out-insert',
  'signed-out-get',
] as const;

export type StatementName = (typeof STATEMENT_NAMES)[number];

export type Statements = Readonly<Record<StatementName, string>>;

export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
}

const SQL_DIR = new URL('./sql/', import.meta.url);
const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

let statements: Statements | undefined;

/** Every statement of `sql/`, by file name (without `.sql`). */
export function loadStatements(): Statements {
  if (statements) return statements;
  const loaded = {} as Record<StatementName, string>;
  for (const name of STATEMENT_NAMES) {
    loaded[name] = readFileSync(new URL(`${name}.sql`, SQL_DIR), 'utf8');
  }
  statements = Object.freeze(loaded);
  return statements;
}

/** The migrations, ordered by their number (`NNN_name.sql`). Numbers must be unique. */
export function loadMigrations(): Migration[] {
  const migrations = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f))
    .map((f) => ({
      id: Number(f.slice(0, 3)),
      name: f,
      sql: readFileSync(new URL(f, MIGRATIONS_DIR), 'utf8'),
    }))
    .sort((a, b) => a.id - b.id);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.id === migrations[i - 1]!.id)
      throw new Error(`duplicate migration number ${migrations[i]!.id}`);
  }
  return migrations;
}
