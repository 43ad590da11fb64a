/**
 * Schema migrations of the distributed backend: numbered files, applied once each, in order,
 * inside one transaction holding `pg_advisory_xact_lock`, recorded in `baton_migrations`.
 * Used by `baton migrate` and by `DistributedBackend.init`.
 * @module
 */
import pg from 'pg';
import { StorageUnavailableError } from '../../errors.ts';
import { isPgUnavailable } from './pg-errors.ts';
import { loadMigrations, loadStatements } from './sql.ts';

/** PostgreSQL schema names Baton accepts (so they can be used unquoted in search_path). */
export function assertSchemaName(schema: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(`invalid PostgreSQL schema name "${schema}" (use lower case letters, digits, _)`);
  }
}

/**
 * One connection for a one-off job (migrating, checking the migrations), connected.
 * @throws StorageUnavailableError when PostgreSQL cannot be reached; an Error naming the database
 *   when it is reachable but has no such database (no outage to wait out).
 */
export async function connectOnce(databaseUrl: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  // A broken connection fails the statement in flight; its 'error' event must not crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    if ((err as { code?: unknown }).code === '3D000')
      throw new Error(`PostgreSQL: ${(err as Error).message}`);
    throw StorageUnavailableError.unreachable('PostgreSQL', 'DATABASE_URL', databaseUrl, err);
  }
  return client;
}

/** Applies the migrations `schema` lacks; returns the names applied. Safe to run concurrently. */
export async function migrate(databaseUrl: string, schema = 'baton'): Promise<string[]> {
  assertSchemaName(schema);
  const client = await connectOnce(databaseUrl);
  try {
    return await migrateWith(client, schema);
  } catch (err) {
    if (isPgUnavailable(err))
      throw new StorageUnavailableError('PostgreSQL became unreachable while migrating', err);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function migrateWith(client: pg.Client, schema: string): Promise<string[]> {
  const sql = loadStatements();
  const applied: string[] = [];
  await client.query('BEGIN');
  try {
    await client.query(sql['migrations-lock'], [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`SET LOCAL search_path TO ${schema}`);
    await client.query(sql['migrations-ledger-create']);
    const done = new Set(
      (await client.query<{ id: number }>(sql['migrations-applied'])).rows.map((r) => r.id),
    );
    // A schema a newer Baton migrated: this one would write it without what the newer schema
    // keeps, and leave it inconsistent for that Baton.
    const known = new Set(loadMigrations().map((m) => m.id));
    const newer = [...done].filter((id) => !known.has(id)).sort((a, b) => a - b);
    if (newer.length > 0)
      throw new Error(
        `PostgreSQL schema "${schema}" has migration ${newer.join(', ')}, applied by a newer Baton; this one knows migrations up to ${Math.max(...known)}: run the newer Baton (or restore a backup from before it)`,
      );
    for (const m of loadMigrations()) {
      if (done.has(m.id)) continue;
      await client.query(m.sql);
      await client.query(sql['migrations-record'], [m.id, m.name]);
      applied.push(m.name);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return applied;
}
