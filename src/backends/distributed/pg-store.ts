/**
 * The PostgreSQL side of the distributed backend: the durable copy of sessions, the
 * transition log, outbound records, consumed inbound messages and dead letters, plus the
 * fence blocks. Every statement comes from `sql/`.
 * @module
 */
import pg from 'pg';
import { StorageUnavailableError } from '../../errors.ts';
import { coalesceWrites } from './coalesce.ts';
import { FenceReserver, reservationKey, type ReserveFor } from './fence-reserver.ts';
import type { SessionKey, StoredMessage } from '../../model/message.ts';
import type { DeadLetter, OutboundRecord, SessionSnapshot, TransitionRecord } from '../../model/session.ts';
import type { DeadLetterCursor, FailedReply, SessionCount } from '../types.ts';
import type {
  CommitEntry,
  JournalEntry,
  OutboundBodyRecord,
  OutboundState,
  OutboundStateEntry,
} from './journal.ts';
import { joinOutbound } from './journal.ts';
import { isPgRetryable, isPgUnavailable } from './pg-errors.ts';
import { loadStatements, type StatementName, type Statements } from './sql.ts';
import { within } from '../../sleep.ts';

type Row = Record<string, unknown>;

/** pg returns bigint columns as strings; every number Baton stores fits a double. */
function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function sid(channel: string, user: string): string {
  return JSON.stringify([channel, user]);
}

export interface StoredSession {
  readonly snapshot: SessionSnapshot;
  readonly version: number;
  readonly rev: number;
  readonly fence: number;
}

/** An outbound record as PostgreSQL has it, split like in Redis. */
export interface StoredOutbound {
  readonly id: string;
  readonly channel: string;
  readonly user: string;
  readonly seq: number;
  readonly record: OutboundBodyRecord;
  readonly state: OutboundState;
}

/**
 * A record's JSON as PostgreSQL keeps it, and the other copies' ids that ride in it
 * (outbound-state-update.sql): those are state, not part of the record.
 */
function withoutAliases(json: unknown): { record: OutboundBodyRecord; aliases: string[] } {
  const { aliases, ...record } = json as OutboundBodyRecord & { aliases?: unknown };
  return { record, aliases: Array.isArray(aliases) ? (aliases as string[]) : [] };
}

function outboundFromRow(r: Row, key?: SessionKey): StoredOutbound {
  const state: OutboundState = {
    status: r.status as OutboundState['status'],
    attempts: num(r.attempts),
    claims: num(r.claims),
    rev: num(r.rev),
  };
  if (typeof r.provider_message_id === 'string') state.providerMessageId = r.provider_message_id;
  if (typeof r.last_error === 'string') state.lastError = r.last_error;
  const { record, aliases } = withoutAliases(r.record);
  if (aliases.length > 0) state.aliases = aliases;
  return {
    id: r.id as string,
    channel: key?.channel ?? (r.channel as string),
    user: key?.user ?? (r.user_id as string),
    seq: num(r.seq),
    record,
    state,
  };
}

function deadLetterFromRow(r: Row): DeadLetter {
  const letter: DeadLetter = {
    id: r.id as string,
    kind: r.kind as DeadLetter['kind'],
    channel: r.channel as string,
    user: r.user_id as string,
    ref: r.ref as string,
    reason: r.reason as string,
    payload: r.payload ?? null,
    createdAt: (r.created_at as Date).getTime(),
  };
  if (r.replayed_at instanceof Date) letter.replayedAt = r.replayed_at.getTime();
  return letter;
}

export interface PgStoreOptions {
  readonly databaseUrl: string;
  readonly schema: string;
  readonly poolSize?: number;
  /** Connections of the pipelined journal-copy pool (one per group commit in flight). */
  readonly applyPoolSize?: number;
}

/** A reserved fence block (its ceiling) and the session's row, if PostgreSQL has one. */
export interface FenceReservation {
  readonly ceiling: number;
  readonly session: StoredSession | null;
}

/**
 * A transaction's statements one after the other, on a connection without pipeline mode;
 * settled as `Promise.allSettled` would (after a failure, COMMIT rolls back).
 */
async function inTurn(
  client: pg.PoolClient,
  statements: ReadonlyArray<readonly [StatementName, readonly unknown[]]>,
  sql: Statements,
): Promise<Array<PromiseSettledResult<pg.QueryResult<Row>>>> {
  const out: Array<PromiseSettledResult<pg.QueryResult<Row>>> = [];
  const step = async (q: () => Promise<pg.QueryResult<Row>>): Promise<void> => {
    try {
      out.push({ status: 'fulfilled', value: await q() });
    } catch (reason) {
      out.push({ status: 'rejected', reason });
    }
  };
  await step(() => client.query<Row>('BEGIN'));
  for (const [name, params] of statements)
    await step(() => client.query<Row>({ name, text: sql[name], values: params as unknown[] }));
  await step(() => client.query<Row>('COMMIT'));
  return out;
}

/**
 * Settings of the journal copy's connections. Its statements reach every row by key (see
 * sql/sessions-lock.sql), and a connection keeps a prepared statement's generic plan for its
 * whole life: one made while a table was empty or small may scan it, and goes on scanning it
 * as it grows. With sequential scans off, the plan made then is the index probe it must be.
 */
export const JOURNAL_COPY_SETTINGS: Readonly<Record<string, string>> = { enable_seqscan: 'off' };

/**
 * The support console's searches. Their filters are optional (`$1 IS NULL OR ...`), so one
 * plan cannot serve every call: a generic plan made while the table was small scans it for
 * good. They are rare; each call is planned with its own parameters.
 */
export const PLANNED_PER_CALL: ReadonlySet<StatementName> = new Set(['sessions-find', 'sessions-list']);

/** A connection's `options` startup parameter: Baton's schema first on its search path, and settings. */
export function connectionOptions(schema: string, settings: Readonly<Record<string, string>> = {}): string {
  return [
    `-c search_path=${schema}`,
    ...Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`),
  ].join(' ');
}

export class PgStore {
  readonly pool: pg.Pool;
  /** Fence-block reservations in groups, by block size. */
  private readonly reservers = new Map<number, FenceReserver<FenceReservation>>();
  /** Pipeline-mode connections for journal copies: a whole transaction in one round trip. */
  private readonly applyPool: pg.Pool;
  private readonly sql: Statements;
  /** Transactions that copied journal entries; for diagnostics and tests. */
  applyTransactions = 0;
  appliedEntries = 0;

  constructor(opts: PgStoreOptions) {
    this.sql = loadStatements();
    const pool = (max: number, settings: string, extra: Partial<pg.PoolConfig> = {}): pg.Pool =>
      new pg.Pool({
        connectionString: opts.databaseUrl,
        options: settings,
        max,
        connectionTimeoutMillis: 3000,
        idleTimeoutMillis: 30_000,
        query_timeout: 15_000,
        ...extra,
      });
    this.pool = pool(opts.poolSize ?? 10, connectionOptions(opts.schema));
    this.applyPool = pool(opts.applyPoolSize ?? 4, connectionOptions(opts.schema, JOURNAL_COPY_SETTINGS), {
      pipeline: true,
    });
    // A connection that breaks must never crash the process: the pool's own listener covers
    // an idle client, and this one a client in use (a stream error such as EPIPE after the
    // server terminated the connection, which pg emits on the client as well as failing its
    // queries). The queries in flight reject and their callers retry; the pool drops the client.
    for (const p of [this.pool, this.applyPool]) {
      p.on('error', () => undefined);
      p.on('connect', (client) => client.on('error', () => undefined));
    }
    // A pipelined transaction's BEGIN, statements and COMMIT, and concurrent group commits,
    // leave in one write.
    this.applyPool.on('connect', (client) =>
      coalesceWrites((client as unknown as { connection?: { stream?: unknown } }).connection?.stream),
    );
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.applyPool.end()]);
  }

  private wrap(err: unknown, what: string): unknown {
    return isPgUnavailable(err)
      ? new StorageUnavailableError(`PostgreSQL is unavailable (${what})`, err)
      : err;
  }

  /**
   * Runs one statement as a named (prepared, so planned once per connection) query, or, for a
   * search whose filters vary by call, planned with its parameters each time.
   */
  async query(name: StatementName, params: readonly unknown[] = []): Promise<Row[]> {
    try {
      const res = await this.pool.query<Row>({
        ...(PLANNED_PER_CALL.has(name) ? {} : { name }),
        text: this.sql[name],
        values: params as unknown[],
      });
      return res.rows;
    } catch (err) {
      throw this.wrap(err, name);
    }
  }

  /**
   * Runs the statements as one transaction sent in a single round trip (pg pipeline mode:
   * BEGIN, the statements and COMMIT go out together; an error aborts the transaction and
   * COMMIT then rolls it back). Runs it again, up to 3 times, when it loses a deadlock or
   * serialization race. Returns each statement's rows. On the journal copies' pool unless
   * told otherwise (the main pool's connections send the statements one after the other).
   */
  private async pipelined(
    what: string,
    statements: ReadonlyArray<readonly [StatementName, readonly unknown[]]>,
    pool: pg.Pool = this.applyPool,
  ): Promise<Row[][]> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw this.wrap(err, what);
      }
      let broken = false;
      try {
        const settled: Array<PromiseSettledResult<pg.QueryResult<Row>>> =
          pool === this.applyPool
            ? await Promise.allSettled([
                client.query('BEGIN'),
                ...statements.map(([name, params]) =>
                  client.query<Row>({ name, text: this.sql[name], values: params as unknown[] }),
                ),
                client.query('COMMIT'),
              ])
            : await inTurn(client, statements, this.sql);
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        return settled.slice(1, -1).map((r) => (r as PromiseFulfilledResult<pg.QueryResult<Row>>).value.rows);
      } catch (err) {
        broken = isPgUnavailable(err);
        if (attempt < 3 && isPgRetryable(err)) continue;
        throw this.wrap(err, what);
      } finally {
        client.release(broken);
      }
    }
  }

  /** Runs one statement; returns how many rows it changed. */
  async execute(name: StatementName, params: readonly unknown[] = []): Promise<number> {
    try {
      const res = await this.pool.query({ name, text: this.sql[name], values: params as unknown[] });
      return res.rowCount ?? 0;
    } catch (err) {
      throw this.wrap(err, name);
    }
  }

  /** Whether PostgreSQL answers within `timeoutMs` (a paused server must not hang /readyz). */
  async ping(timeoutMs = 2000): Promise<boolean> {
    const answered = this.query('ping').then(
      () => true,
      () => false,
    );
    return within(timeoutMs, answered, false);
  }

  /**
   * Reserves the next block of `size` fencing tokens of a session new to this Redis (the block is
   * ceiling-size+1 .. ceiling), and returns the session's row with it. `era`: the Redis lifetime
   * loading a session whose state Redis lost (null when Redis kept it), see
   * fence-block-reserve.sql. Concurrent calls share one statement (see `fence-reserver.ts`).
   */
  reserveFenceBlock(key: SessionKey, size: number, era: string | null): Promise<FenceReservation> {
    let reserver = this.reservers.get(size);
    if (reserver === undefined) {
      reserver = new FenceReserver((reqs) => this.reserveFenceBlocks(reqs, size));
      this.reservers.set(size, reserver);
    }
    return reserver.request(key, era);
  }

  private async reserveFenceBlocks(
    reqs: readonly ReserveFor[],
    size: number,
  ): Promise<Map<string, FenceReservation>> {
    const sessions = JSON.stringify(
      reqs.map(({ key, era }) => ({ channel: key.channel, user_id: key.user, era })),
    );
    // The reservation waits for any journal copy of these sessions in flight (see
    // fence-block-reserve.sql); the rows are read after it, by a statement of their own (its own
    // snapshot). Two statements on the main pool: the copies' pool stays theirs (sharing it made
    // new sessions wait behind copies under load).
    const blocks = await this.query('fence-block-reserve', [sessions, size]);
    const found = await this.query('fence-block-sessions', [sessions]);
    const stored = new Map(found.map((r) => [sid(r.channel as string, r.user_id as string), r]));
    const rows: Row[] = blocks.map((b) => ({
      ...stored.get(sid(b.channel as string, b.user_id as string)),
      channel: b.channel,
      user_id: b.user_id,
      ceiling: b.ceiling,
    }));
    const out = new Map<string, FenceReservation>();
    for (const r of rows) {
      const session =
        r.snapshot === null || r.snapshot === undefined
          ? null
          : {
              snapshot: r.snapshot as SessionSnapshot,
              version: num(r.version),
              rev: num(r.rev),
              fence: num(r.fence),
            };
      out.set(reservationKey({ channel: r.channel as string, user: r.user_id as string }), {
        ceiling: num(r.ceiling),
        session,
      });
    }
    return out;
  }

  /**
   * Copies journal entries to PostgreSQL in one transaction (one round trip), with one
   * multi-row statement per table. Entries of one session must be in journal order. Returns
   * the ids of commit entries refused because their session's row already carries a newer
   * fence (their records are not written); every other entry is written or was already there.
   *
   * The fence decision is made in SQL, against the session rows as locked at the start of the
   * transaction (sessions-lock), so no statement waits for another's answer: inserts skip the
   * rows of refused commits, and the snapshot upsert comes last.
   */
  async apply(entries: readonly JournalEntry[]): Promise<Set<string>> {
    if (entries.length === 0) return new Set();
    const commits = entries.filter((e): e is CommitEntry => e.t === 'c');
    const states = entries.filter((e): e is OutboundStateEntry => e.t === 'o');
    const statements: Array<readonly [StatementName, readonly unknown[]]> = [];
    let refusedAt = -1;
    if (commits.length > 0) {
      const keys = new Map<string, { channel: string; user_id: string }>();
      const latest = new Map<string, CommitEntry>();
      for (const e of commits) {
        const k = sid(e.channel, e.user);
        keys.set(k, { channel: e.channel, user_id: e.user });
        const cur = latest.get(k);
        if (!cur || e.fence > cur.fence || (e.fence === cur.fence && e.rev > cur.rev)) latest.set(k, e);
      }
      const sortedKeys = [...keys.values()].sort((a, b) =>
        a.channel === b.channel ? (a.user_id < b.user_id ? -1 : 1) : a.channel < b.channel ? -1 : 1,
      );
      statements.push(['sessions-lock', [JSON.stringify(sortedKeys)]]);
      refusedAt = statements.length;
      statements.push([
        'entries-refused',
        [
          JSON.stringify(
            commits.map((e) => ({ id: e.id, channel: e.channel, user_id: e.user, fence: e.fence })),
          ),
        ],
      ]);
      statements.push(...commitStatements(commits));
      statements.push(['sessions-upsert', [JSON.stringify([...latest.values()].map(sessionRow))]]);
    }
    if (states.length > 0) {
      const byId = new Map<string, OutboundStateEntry>();
      for (const e of states) {
        const prev = byId.get(e.outboundId);
        if (!prev || prev.state.rev < e.state.rev) byId.set(e.outboundId, e);
      }
      const rows = [...byId.values()].map((e) => ({
        id: e.outboundId,
        status: e.state.status,
        attempts: e.state.attempts,
        claims: e.state.claims ?? null,
        provider_message_id: e.state.providerMessageId ?? null,
        provider_aliases: e.state.aliases ?? null,
        last_error: e.state.lastError ?? null,
        rev: e.state.rev,
      }));
      statements.push(['outbound-state-update', [JSON.stringify(rows)]]);
    }
    const results = await this.pipelined('journal copy', statements);
    this.applyTransactions++;
    this.appliedEntries += entries.length;
    return new Set(refusedAt < 0 ? [] : results[refusedAt]!.map((r) => r.id as string));
  }

  /**
   * Of these logged messages, those PostgreSQL has consumed, once no journal copy of their
   * sessions is in flight (it waits for those: see intake-log-fence-wait.sql), so that the intake
   * log never puts back a message that a copy landing a moment later consumes. `eras` names the
   * sessions whose state Redis no longer has (by `reservationKey`), with the Redis lifetime
   * putting them back: a copy
   * of a lost lifetime that has not even started yet is refused when it comes
   * (intake-log-floor.sql).
   */
  async consumedAfterCopies(
    messages: ReadonlyArray<{ channel: string; user: string; id: string }>,
    eras: ReadonlyMap<string, string> = new Map(),
  ): Promise<Row[]> {
    if (messages.length === 0) return [];
    const sessions = new Map(
      messages.map((m) => [sid(m.channel, m.user), { channel: m.channel, user_id: m.user }]),
    );
    const floors = [...sessions.values()].flatMap((k) => {
      const era = eras.get(reservationKey({ channel: k.channel, user: k.user_id }));
      return era === undefined ? [] : [{ ...k, era }];
    });
    // On the main pool: copies stuck in PostgreSQL (what this waits for) may hold every
    // connection of theirs.
    const results = await this.pipelined(
      'intake log check',
      [
        ['intake-log-fence-wait', [JSON.stringify([...sessions.values()])]],
        ...(floors.length > 0 ? [['intake-log-floor', [JSON.stringify(floors)]] as const] : []),
        [
          'intake-log-consumed',
          [JSON.stringify(messages.map((m) => ({ channel: m.channel, user_id: m.user, id: m.id })))],
        ],
      ],
      this.pool,
    );
    return results.at(-1)!;
  }

  /** Of the session's messages `ids`, those PostgreSQL has consumed (in `inbound`). */
  async consumedOf(key: SessionKey, ids: readonly string[]): Promise<string[]> {
    const rows = await this.query('intake-log-consumed', [
      JSON.stringify(ids.map((id) => ({ channel: key.channel, user_id: key.user, id }))),
    ]);
    return rows.map((r) => r.id as string);
  }

  async insertDeadLetters(letters: readonly DeadLetter[]): Promise<void> {
    await this.query('dead-letters-insert', [JSON.stringify(letters.map((d) => deadLetterRow(d)))]);
  }

  async getSession(key: SessionKey): Promise<StoredSession | null> {
    const rows = await this.query('session-get', [key.channel, key.user]);
    const r = rows[0];
    if (!r) return null;
    return {
      snapshot: r.snapshot as SessionSnapshot,
      version: num(r.version),
      rev: num(r.rev),
      fence: num(r.fence),
    };
  }

  /** The session's outbound records in send order (the newest `newest` of them, if given). */
  async outboundOf(key: SessionKey, unsentOnly: boolean, newest?: number): Promise<StoredOutbound[]> {
    const rows = await this.query('outbound-by-session', [key.channel, key.user, unsentOnly, newest ?? null]);
    return rows.map((r) => outboundFromRow(r, key));
  }

  async outboundRecords(key: SessionKey, newest?: number): Promise<OutboundRecord[]> {
    return (await this.outboundOf(key, false, newest)).map((o) => joinOutbound(o.record, o.state));
  }

  async getOutbound(id: string): Promise<StoredOutbound | null> {
    const r = (await this.query('outbound-get', [id]))[0];
    return r ? outboundFromRow(r) : null;
  }

  async outboundByProviderIds(
    key: SessionKey,
    ids: readonly string[],
  ): Promise<Map<string, OutboundBodyRecord>> {
    const rows = await this.query('outbound-by-provider-ids', [key.channel, key.user, ids]);
    const wanted = new Set(ids);
    const found = new Map<string, OutboundBodyRecord>();
    for (const r of rows) {
      const { record, aliases } = withoutAliases(r.record);
      for (const id of [r.provider_message_id as string | null, ...aliases]) {
        if (id !== null && wanted.has(id)) found.set(id, record);
      }
    }
    return found;
  }

  /** Applies a status to a record Redis does not know; returns the session and id it named, if any. */
  /**
   * Applies status webhooks to the records Redis no longer keeps, in one statement per round
   * (Meta sends up to 1,000 in one POST: one round trip each kept such a webhook waiting for tens
   * of seconds on a busy database). A round takes at most one status per provider message id, an
   * UPDATE changing a row once, so the statuses of one message are applied in the order they came.
   * Each answer is the record the status named, or null.
   */
  async statusesByProviderId(
    updates: ReadonlyArray<{
      providerMessageId: string;
      channel: string;
      status: string;
      lastError: string | null;
    }>,
  ): Promise<Array<{ id: string; key: SessionKey } | null>> {
    const hits: Array<{ id: string; key: SessionKey } | null> = updates.map(() => null);
    let left = updates.map((u, i) => ({ ...u, i }));
    while (left.length > 0) {
      const seen = new Set<string>();
      const round: typeof left = [];
      const later: typeof left = [];
      for (const u of left) {
        const id = `${u.channel}\n${u.providerMessageId}`;
        (seen.has(id) ? later : round).push(u);
        seen.add(id);
      }
      const rows = await this.query('outbound-status-by-provider-id', [
        round.map((u) => u.providerMessageId),
        round.map((u) => u.status),
        round.map((u) => u.lastError),
        round.map((u) => u.channel),
      ]);
      for (const r of rows) {
        hits[round[num(r.n) - 1]!.i] = {
          id: r.id as string,
          key: { channel: r.channel as string, user: r.user_id as string },
        };
      }
      left = later;
    }
    return hits;
  }

  /** The session's transition log, oldest first (its newest `newest` records, if given). */
  async transitions(key: SessionKey, newest?: number): Promise<TransitionRecord[]> {
    const rows = await this.query('transitions-by-session', [key.channel, key.user, newest ?? null]);
    return rows.map((r) => r.record as TransitionRecord);
  }

  /**
   * The session key user of each business-scoped id's session on its channel, where PostgreSQL
   * has one, with when the user last wrote to it (Unix seconds; keyed `<channel>\n<bsuid>`).
   */
  async sessionsByBsuid(
    ids: ReadonlyArray<{ channel: string; bsuid: string }>,
  ): Promise<Map<string, { user: string; at: number }>> {
    const rows = await this.query('sessions-by-bsuid', [JSON.stringify(ids)]);
    return new Map(
      rows.map((r) => [
        `${r.channel as string}\n${r.bsuid as string}`,
        { user: r.user_id as string, at: Number(r.last_interaction) },
      ]),
    );
  }

  async findSessions(user: string, channel?: string): Promise<SessionSnapshot[]> {
    const rows = await this.query('sessions-find', [user, channel ?? null]);
    return rows.map((r) => r.snapshot as SessionSnapshot);
  }

  async listSessions(q: {
    step?: string;
    needsAgent?: boolean;
    channel?: string;
    after?: SessionKey;
    limit: number;
  }): Promise<SessionSnapshot[]> {
    const rows = await this.query('sessions-list', [
      q.step ?? null,
      q.needsAgent ?? null,
      q.channel ?? null,
      q.after?.channel ?? null,
      q.after?.user ?? null,
      q.limit,
    ]);
    return rows.map((r) => r.snapshot as SessionSnapshot);
  }

  async countSessions(activeSinceMs?: number): Promise<SessionCount[]> {
    return (await this.query('sessions-count', [activeSinceMs ?? null])).map((r) => ({
      flow: r.flow as string,
      step: r.step as string | null,
      needsAgent: r.needs_agent === true,
      sessions: num(r.n),
      oldestAt: num(r.oldest),
    }));
  }

  async failedReplies(limit: number): Promise<FailedReply[]> {
    return (await this.query('outbound-failed', [limit])).map((r) => {
      const o = outboundFromRow(r);
      return { ...joinOutbound(o.record, o.state), failedAt: (r.updated_at as Date).getTime() };
    });
  }

  async listDeadLetters(limit: number, after?: DeadLetterCursor): Promise<DeadLetter[]> {
    const at = after === undefined ? null : new Date(after.createdAt);
    return (await this.query('dead-letters-list', [limit, at, after?.id ?? ''])).map(deadLetterFromRow);
  }

  async getDeadLetter(id: string): Promise<DeadLetter | null> {
    const r = (await this.query('dead-letter-get', [id]))[0];
    return r ? deadLetterFromRow(r) : null;
  }

  /** Marks a dead letter replayed; false if it was already. */
  async markReplayed(id: string, at: number): Promise<boolean> {
    return (await this.query('dead-letter-mark-replayed', [id, iso(at)])).length > 0;
  }

  async countDeadLetters(): Promise<number> {
    return num((await this.query('dead-letters-count'))[0]!.n);
  }

  /** Sends committed and not done, and when the oldest of them was committed (ms; null when none). */
  async countUnsent(): Promise<{ count: number; oldest: number | null }> {
    const r = (await this.query('outbound-unsent-count'))[0]!;
    return { count: num(r.n), oldest: r.first === null ? null : num(r.first) };
  }

  /** A session's consumed inbound messages as stored, in arrival order. */
  /** The session's consumed inbound messages in arrival order (the newest `newest`, if given). */
  async inboundOf(key: SessionKey, newest?: number): Promise<StoredMessage[]> {
    return (await this.query('inbound-by-session', [key.channel, key.user, newest ?? null])).map(
      (r) => r.message as StoredMessage,
    );
  }

  async inboundMessage(key: SessionKey, id: string): Promise<unknown> {
    return (await this.query('inbound-get', [key.channel, key.user, id]))[0]?.message ?? null;
  }
}

function deadLetterRow(d: DeadLetter, fence: number | null = null): Row {
  return {
    id: d.id,
    kind: d.kind,
    channel: d.channel,
    user_id: d.user,
    ref: d.ref,
    reason: d.reason,
    payload: d.payload ?? null,
    created_at: iso(d.createdAt),
    fence,
  };
}

function sessionRow(e: CommitEntry): Row {
  return {
    channel: e.channel,
    user_id: e.user,
    wa_id: e.snapshot.waId ?? null,
    bsuid: e.snapshot.userId ?? null,
    flow: e.snapshot.flow,
    step: e.snapshot.step,
    version: e.snapshot.version,
    rev: e.rev,
    fence: e.fence,
    needs_agent: e.snapshot.needsAgent,
    snapshot: e.snapshot,
  };
}

/** The inserts of a group's commit entries: transitions, outbound, inbound, dead letters. */
function commitStatements(
  commits: readonly CommitEntry[],
): Array<readonly [StatementName, readonly unknown[]]> {
  const statements: Array<readonly [StatementName, readonly unknown[]]> = [];
  const transitions = commits.flatMap((e) =>
    e.records.map((r, ord) => ({
      channel: e.channel,
      user_id: e.user,
      fence: e.fence,
      entry_id: e.id,
      ord,
      version: r.version,
      from_step: r.from_step,
      to_step: r.to_step,
      kind: r.kind,
      message_ids: r.message_ids,
      at: r.at,
      worker: r.worker,
      fencing_token: r.fencing_token,
      record: r,
    })),
  );
  if (transitions.length > 0) statements.push(['transitions-insert', [JSON.stringify(transitions)]]);

  const outbound = new Map<string, Row>();
  for (const e of commits) {
    for (const { record, state } of e.outbound) {
      outbound.set(record.id, {
        id: record.id,
        channel: e.channel,
        user_id: e.user,
        seq: record.seq,
        version: record.version,
        step: record.step,
        is_prompt: record.isPrompt,
        fence: e.fence,
        status: state.status,
        attempts: state.attempts,
        claims: state.claims ?? 1,
        provider_message_id: state.providerMessageId ?? null,
        last_error: state.lastError ?? null,
        rev: state.rev,
        record,
        created_at: iso(record.createdAt),
      });
    }
  }
  if (outbound.size > 0) statements.push(['outbound-insert', [JSON.stringify([...outbound.values()])]]);

  const inbound = new Map<string, Row>();
  for (const e of commits) {
    const dead = new Set(e.deadLetters.filter((d) => d.kind === 'inbound').map((d) => d.ref));
    for (const m of e.messages) {
      inbound.set(sid(e.channel, e.user) + m.id, {
        channel: e.channel,
        user_id: e.user,
        fence: e.fence,
        id: m.id,
        seq: m.seq,
        message: m,
        stored_at: iso(m.storedAt),
        consumed_at: iso(e.at),
        entry_id: e.id,
        outcome: dead.has(m.id) ? 'dead_letter' : 'consumed',
      });
    }
  }
  if (inbound.size > 0) statements.push(['inbound-insert', [JSON.stringify([...inbound.values()])]]);

  const letters = commits.flatMap((e) => e.deadLetters.map((d) => deadLetterRow(d, e.fence)));
  if (letters.length > 0) statements.push(['dead-letters-insert', [JSON.stringify(letters)]]);
  return statements;
}
