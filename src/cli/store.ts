/**
 * The store of a one-shot command (`session show|reset`, `lock clear`, `migrate`): its logger,
 * and, for the commands that only read or change sessions, a store that must already be migrated
 * (opened without migrating). Such a command creates nothing: a mistyped `BATON_PG_SCHEMA` is one error line
 * naming it, not an empty new deployment answering "no session".
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createBackend, createLogger, distributedOptions, embeddedOptions } from '../app.ts';
import { EMBEDDED_FILE, EmbeddedBackend } from '../backends/embedded/index.ts';
import type { Backend } from '../backends/types.ts';
import type { Config } from '../config/index.ts';
import { connectOnce } from '../backends/distributed/migrate.ts';
import { loadMigrations } from '../backends/distributed/sql.ts';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * A one-shot command's logger: on stderr (its stdout is the answer), warnings and errors only
 * (or quieter, as `LOG_LEVEL` says). A server's start-up notices (Redis persistence, the intake
 * log) are no answer to "show me this session", even under the `LOG_LEVEL=info` of a `.env`.
 */
export function oneShotLogger(config: Config): Logger {
  const level = LEVELS.indexOf(config.logLevel) > LEVELS.indexOf('warn') ? config.logLevel : 'warn';
  return createLogger(level, 2);
}

/** The store is not there, or older than this Baton: `baton migrate` makes it. */
export class StoreNotMigratedError extends Error {
  override readonly name = 'StoreNotMigratedError';
}

/**
 * Checks, without changing anything, that `schema` holds every migration of this Baton.
 * @throws StoreNotMigratedError naming the schema when it does not.
 */
export async function assertMigrated(databaseUrl: string, schema: string): Promise<void> {
  const client = await connectOnce(databaseUrl);
  try {
    const found = await client.query<{ ledger: string | null }>(
      'SELECT to_regclass(quote_ident(nspname) || $2) AS ledger FROM pg_namespace WHERE nspname = $1',
      [schema, '.baton_migrations'],
    );
    if (found.rows.length === 0)
      throw new StoreNotMigratedError(
        `schema "${schema}" does not exist (run baton migrate, or check BATON_PG_SCHEMA)`,
      );
    const applied = new Set(
      found.rows[0]!.ledger === null
        ? []
        : (await client.query<{ id: number }>(`SELECT id FROM ${schema}.baton_migrations`)).rows.map(
            (r) => r.id,
          ),
    );
    const missing = loadMigrations().filter((m) => !applied.has(m.id));
    if (missing.length > 0)
      throw new StoreNotMigratedError(
        `schema "${schema}" lacks ${missing.length} migration(s) of this Baton (run baton migrate)`,
      );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The store a session command opens, without migrating: in distributed mode, checked to be
 * migrated; in embedded mode, the data directory's, refused at `init` when its schema is older.
 */
export async function sessionStore(config: Config, logger: Logger): Promise<Backend> {
  const distributed = distributedOptions(config, logger);
  if (distributed === null) {
    // Nor an embedded one: a mistyped BATON_DATA_DIR is no new, empty store answering "no session".
    if (!existsSync(join(config.dataDir, EMBEDDED_FILE)))
      throw new StoreNotMigratedError(
        `no Baton store in "${config.dataDir}" (check BATON_DATA_DIR, or start Baton there first)`,
      );
    // Opened as it is, as a distributed one: an older store was upgraded by a mere read, without
    // a word, and the older Baton then refused to start on it (outside test QA66-F1).
    return new EmbeddedBackend({ ...embeddedOptions(config), migrate: false });
  }
  await assertMigrated(distributed.databaseUrl, config.pgSchema);
  return createBackend(config, logger, { distributed: { migrate: false } });
}
