/**
 * The group commit's statements reach rows by their keys, whatever the tables held when a
 * connection planned them. A connection keeps a prepared statement's generic plan for its
 * whole life, so a plan made on empty tables must still be an index probe once they hold
 * thousands of rows; a scan, or a hash join over a whole table, costs in proportion to the
 * stored data on every group commit (it took half of PostgreSQL's CPU per message).
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrate } from '../../src/backends/distributed/migrate.ts';
import {
  JOURNAL_COPY_SETTINGS,
  PLANNED_PER_CALL,
  connectionOptions,
} from '../../src/backends/distributed/pg-store.ts';
import { loadStatements, type StatementName } from '../../src/backends/distributed/sql.ts';
import { DATABASE_URL, describeServices, dropIsolation, isolation } from '../support/services.ts';

const at = new Date(Date.UTC(2026, 10, 30)).toISOString();
const key = (u: number) => ({ channel: 'ch', user_id: `u${u}` });
const json = (rows: unknown[]) => JSON.stringify(rows);
type Param = string | number | boolean | null;

/** Each statement of a group commit, with parameters shaped like the journal copy's. */
const COPY: ReadonlyArray<readonly [StatementName, readonly Param[]]> = [
  ['sessions-lock', [json([key(1), key(2)])]],
  ['entries-refused', [json([{ id: 'e1', ...key(1), fence: 3 }])]],
  [
    'transitions-insert',
    [
      json([
        {
          ...key(1),
          fence: 3,
          entry_id: 'e1',
          ord: 0,
          version: 2,
          from_step: 'a',
          to_step: 'b',
          kind: 'advance',
          message_ids: ['wamid.1'],
          at,
          worker: 'w',
          fencing_token: 3,
          record: {},
        },
      ]),
    ],
  ],
  [
    'outbound-insert',
    [
      json([
        {
          id: 'o1',
          ...key(1),
          seq: 1,
          version: 2,
          step: 'b',
          is_prompt: true,
          fence: 3,
          status: 'pending',
          attempts: 0,
          provider_message_id: null,
          last_error: null,
          rev: 1,
          record: {},
          created_at: at,
        },
      ]),
    ],
  ],
  [
    'inbound-insert',
    [
      json([
        {
          ...key(1),
          fence: 3,
          id: 'wamid.1',
          seq: 1,
          message: {},
          stored_at: at,
          consumed_at: at,
          entry_id: 'e1',
          outcome: 'consumed',
        },
      ]),
    ],
  ],
  [
    'dead-letters-insert',
    [
      json([
        {
          id: 'd1',
          kind: 'inbound',
          ...key(1),
          ref: 'r',
          reason: 'x',
          payload: {},
          created_at: at,
          fence: 3,
        },
      ]),
    ],
  ],
  [
    'sessions-upsert',
    [
      json([
        {
          ...key(1),
          wa_id: 'w1',
          bsuid: null,
          flow: 'order',
          step: 'b',
          version: 2,
          rev: 2,
          fence: 3,
          needs_agent: false,
          snapshot: {},
        },
      ]),
    ],
  ],
  [
    'outbound-state-update',
    [
      json([
        { id: 'o1', status: 'sent', attempts: 1, provider_message_id: 'wamid.s1', last_error: null, rev: 2 },
      ]),
    ],
  ],
];

/** The main pool's reads and writes of one row or one session's rows. */
const MAIN: ReadonlyArray<readonly [StatementName, readonly Param[]]> = [
  ['outbound-status-by-provider-id', ['{wamid.s1,wamid.s2}', '{delivered,read}', '{NULL,NULL}', '{ch,ch}']],
  ['session-get', ['ch', 'u1']],
  ['inbound-get', ['ch', 'u1', 'wamid.1']],
  ['outbound-get', ['o1']],
  ['outbound-by-session', ['ch', 'u1', true, null]],
  // The session page's windows: the newest rows of a session's log and messages.
  ['transitions-by-session', ['ch', 'u1', 301]],
  ['inbound-by-session', ['ch', 'u1', 1]],
  ['outbound-by-provider-ids', ['ch', 'u1', '{wamid.s1}']],
  ['sessions-find', ['u1', null]],
  ['dead-letter-get', ['d1']],
  // The intake log's restore check (one transaction on the main pool).
  ['intake-log-fence-wait', [json([key(1), key(2)])]],
  [
    'intake-log-floor',
    [
      json([
        { ...key(1), era: 'run2' },
        { ...key(2), era: 'run2' },
      ]),
    ],
  ],
  [
    'intake-log-consumed',
    [
      json([
        { ...key(1), id: 'wamid.1' },
        { ...key(2), id: 'wamid.2' },
      ]),
    ],
  ],
  [
    'intake-log-insert',
    [
      json([
        { ...key(1), id: 'wamid.9', stored_at: at, arrival: 1, message: {} },
        { ...key(2), id: 'wamid.8', stored_at: at, arrival: 2, message: {} },
      ]),
    ],
  ],
  // The reaper's walk over the log, oldest first (by the index, page by page).
  ['intake-log-page', [at, at, 0, 'ch', 'u1', 'wamid.1', 100, at]],
];

/** Problems of a plan: a table scanned whole, or an index walked without a key condition. */
function scans(plan: string[]): string[] {
  const found: string[] = [];
  plan.forEach((line, i) => {
    if (/Seq Scan on|Materialize/.test(line)) found.push(line.trim());
    if (/(Index Scan|Index Only Scan|Bitmap Index Scan) (Backward )?using/.test(line)) {
      const next = plan[i + 1] ?? '';
      if (!/^\s*Index Cond:/.test(next)) found.push(`${line.trim()} (no key condition)`);
    }
  });
  return found;
}

describeServices('group commit plans (PostgreSQL)', () => {
  const { schema } = isolation();
  const sql = loadStatements();
  let copy: pg.Client;
  let main: pg.Client;

  const connect = async (settings: Readonly<Record<string, string>>) => {
    const client = new pg.Client({
      connectionString: DATABASE_URL,
      options: connectionOptions(schema, settings),
    });
    await client.connect();
    return client;
  };
  /**
   * `EXPLAIN EXECUTE` of a statement prepared on this connection: the plan it keeps, or the
   * plan made for these parameters when PgStore plans the statement on each call.
   */
  const explain = async (client: pg.Client, name: StatementName, params: readonly Param[]) => {
    const mode = PLANNED_PER_CALL.has(name) ? 'force_custom_plan' : 'force_generic_plan';
    await client.query(`SET plan_cache_mode = ${mode}`);
    const args = params.map((p) =>
      p === null ? 'NULL' : typeof p === 'string' ? pg.escapeLiteral(p) : String(p),
    );
    const res = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN EXECUTE ${name.replaceAll('-', '_')}(${args.join(', ')})`,
    );
    return res.rows.map((r) => r['QUERY PLAN']);
  };
  const prepare = (client: pg.Client, name: StatementName) =>
    client.query(`PREPARE ${name.replaceAll('-', '_')} AS ${sql[name]}`);

  beforeAll(async () => {
    await migrate(DATABASE_URL, schema);
    copy = await connect(JOURNAL_COPY_SETTINGS);
    main = await connect({});
  });
  afterAll(async () => {
    await copy?.end();
    await main?.end();
    await dropIsolation(null, schema);
  });

  it('plans every statement as index probes on empty tables (the plan a connection keeps) and on tables of thousands of rows, analyzed', async () => {
    // The journal copy's statements on its connections; fence-block-reserve on the main pool's.
    const statements: Array<readonly [pg.Client, StatementName, readonly Param[]]> = [
      ...COPY.map(([name, params]) => [copy, name, params] as const),
      [main, 'fence-block-reserve', [json([key(1), key(2)]), 100]],
      ...MAIN.map(([name, params]) => [main, name, params] as const),
    ];
    for (const [client, name] of statements) await prepare(client, name);
    for (const [client, name, params] of statements) {
      if (PLANNED_PER_CALL.has(name)) continue; // an empty table's plan is not kept
      expect({ name, scans: scans(await explain(client, name, params)) }).toEqual({ name, scans: [] });
    }

    await main.query(
      `INSERT INTO sessions (channel, user_id, flow, step, version, rev, fence, snapshot)
       SELECT 'ch', 'u' || n, 'order', 'b', 1, 1, 1, '{}' FROM generate_series(1, 5000) n;
       INSERT INTO outbound (id, channel, user_id, seq, version, step, is_prompt, fence, status, attempts, rev, record, created_at)
       SELECT 'o' || n, 'ch', 'u' || n, 1, 1, 'b', true, 1, 'pending', 0, 1, '{}', now() FROM generate_series(1, 5000) n;
       INSERT INTO inbound (channel, user_id, id, seq, message, stored_at, consumed_at, entry_id, outcome)
       SELECT 'ch', 'u' || n, 'wamid.' || n, 1, '{}', now(), now(), 'e' || n, 'consumed' FROM generate_series(1, 5000) n;
       ANALYZE sessions; ANALYZE outbound; ANALYZE inbound`,
    );
    for (const [client, name, params] of statements) {
      expect({ name, scans: scans(await explain(client, name, params)) }).toEqual({ name, scans: [] });
    }
  });

  it('the check finds a scan where there is one', () => {
    expect(
      scans([
        'Hash Join',
        '  ->  Seq Scan on sessions s',
        '  ->  Index Scan using sessions_user_id on sessions s',
        '        Filter: (fence > r.fence)',
      ]),
    ).toHaveLength(2);
  });
});
