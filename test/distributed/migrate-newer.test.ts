/**
 * A PostgreSQL schema a newer Baton migrated is refused by an older one, with a line naming the
 * migrations it does not know, instead of being written without what the newer schema keeps.
 */
import { afterEach, expect, it } from 'vitest';
import { migrate } from '../../src/backends/distributed/migrate.ts';
import { DATABASE_URL, describeServices, dropIsolation, isolation, pgQuery } from '../support/services.ts';

let drop: (() => Promise<void>) | null = null;
afterEach(async () => {
  await drop?.();
  drop = null;
});

describeServices('distributed migrations', () => {
  it('refuses a schema that has a migration this Baton does not know, and changes nothing', async () => {
    const { schema } = isolation();
    drop = () => dropIsolation(null, schema);
    const applied = await migrate(DATABASE_URL, schema);
    expect(applied.length).toBeGreaterThan(0);
    await pgQuery(schema, "INSERT INTO baton_migrations (id, name) VALUES (999, '999_from_the_future')");
    await expect(migrate(DATABASE_URL, schema)).rejects.toThrow(
      `PostgreSQL schema "${schema}" has migration 999, applied by a newer Baton`,
    );
    const ids = await pgQuery<{ id: number }>(schema, 'SELECT id FROM baton_migrations ORDER BY id');
    expect(ids.map((r) => r.id)).toHaveLength(applied.length + 1);
  });
});
