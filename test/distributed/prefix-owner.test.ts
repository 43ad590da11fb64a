/**
 * A Redis key prefix is the hot state of one PostgreSQL copy (database and schema): a second
 * deployment on the same prefix and another schema would share mailboxes, leases and journals,
 * and each schema would get part of the other's sessions (outside test QA37-F7: 117 of 260
 * acknowledged messages went to the other schema, 21 version gaps). Its start is stopped with
 * one line naming BATON_REDIS_PREFIX.
 */
import { expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { describeServices, dropIsolation, isolation, pgQuery } from '../support/services.ts';
import { newKey, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

describeServices('a Redis key prefix and its PostgreSQL copy', () => {
  useCleanup();

  it('are bound at the first start: another schema on the same prefix is refused, the same one is not', async () => {
    const first = await makeBackend();
    await first.backend.ingest({ messages: [text(newKey(), 'hi')], statuses: [] });
    // The same deployment again (a restart, a second worker): fine.
    await makeBackend({}, { prefix: first.prefix, schema: first.schema });
    // Another schema on that prefix: refused, naming the variable and both copies.
    const other = isolation().schema;
    afterThisTest(() => dropIsolation(null, other));
    const err = await makeBackend({}, { prefix: first.prefix, schema: other }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('BATON_REDIS_PREFIX');
    expect((err as ConfigError).message).toMatch(
      new RegExp(
        `under "${first.prefix}" belong to the PostgreSQL copy \\w+/${first.schema}, not \\w+/${other}`,
      ),
    );
    // Refused before anything is made: the mistyped schema is not created (outside test
    // QA60-F2: it was left behind with every table).
    const made = await pgQuery('public', 'SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [
      other,
    ]);
    expect(made).toEqual([]);
  });
});
