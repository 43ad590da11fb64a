/**
 * The embedded backend's SQLite schema, as numbered migrations. Only ever append.
 * `PRAGMA user_version` is the ledger.
 * @module
 */
export const MIGRATIONS: readonly string[] = [
  // 1: intake, sessions, transition log, outbox, dead letters
  `
  CREATE TABLE inbound (
    id         TEXT PRIMARY KEY,
    channel    TEXT NOT NULL,
    user       TEXT NOT NULL,
    seq        INTEGER NOT NULL UNIQUE,
    stored_at  INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    body       TEXT NOT NULL
  );
  CREATE INDEX inbound_pending ON inbound (channel, user, seq) WHERE state = 'pending';
  CREATE INDEX inbound_stored_at ON inbound (stored_at);

  CREATE TABLE sessions (
    channel     TEXT NOT NULL,
    user        TEXT NOT NULL,
    wa_id       TEXT,
    user_id     TEXT,
    step        TEXT,
    needs_agent INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    fence       INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    snapshot    TEXT NOT NULL,
    PRIMARY KEY (channel, user)
  );
  CREATE INDEX sessions_wa_id ON sessions (wa_id);
  CREATE INDEX sessions_user_id ON sessions (user_id);
  CREATE INDEX sessions_user ON sessions (user);

  CREATE TABLE transitions (
    idx      INTEGER PRIMARY KEY AUTOINCREMENT,
    channel  TEXT NOT NULL,
    user     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    record   TEXT NOT NULL
  );
  CREATE INDEX transitions_session ON transitions (channel, user, idx);

  CREATE TABLE outbound (
    id                  TEXT PRIMARY KEY,
    channel             TEXT NOT NULL,
    user                TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    last_error          TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    record              TEXT NOT NULL
  );
  CREATE INDEX outbound_session ON outbound (channel, user, seq);
  CREATE INDEX outbound_provider_id ON outbound (provider_message_id);
  CREATE INDEX outbound_unsent ON outbound (channel, user, seq) WHERE status IN ('pending', 'sending');

  CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    user        TEXT NOT NULL,
    ref         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    replayed_at INTEGER
  );
  `,
  // 2: a session's conversation (admin reads of every inbound message of one session)
  `CREATE INDEX inbound_session ON inbound (channel, user, seq);`,
  // 3: the oldest pending message in one index step (stats, whatever the backlog)
  `CREATE INDEX inbound_pending_stored_at ON inbound (stored_at) WHERE state = 'pending';`,
  // 4: status webhooks about sends not recorded yet, applied when they are (EARLY_STATUS_TTL_MS)
  `
  CREATE TABLE early_statuses (
    provider_message_id TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    last_error          TEXT,
    at                  INTEGER NOT NULL
  );
  CREATE INDEX early_statuses_at ON early_statuses (at);
  `,
  // 5: dashboard sign-outs, until the signed-out cookie would have expired (admin/auth.ts)
  `CREATE TABLE signed_out (id TEXT PRIMARY KEY, until INTEGER NOT NULL);`,
  // 6: send attempts of each reply that may have reached the user, claimed before each is made
  //    (OutboundRecord.claims); a record written before counts its commit's claim
  `ALTER TABLE outbound ADD COLUMN claims INTEGER NOT NULL DEFAULT 1;`,
  // 7: queue alerts announced as firing and not yet resolved (kept across restarts: once per episode)
  `CREATE TABLE alerts_firing (alert TEXT PRIMARY KEY, since INTEGER NOT NULL);`,
  // 8: the channel a parked status came on: it applies only to a send of that channel (one
  //    gateway's webhooks never touch the other's records)
  `ALTER TABLE early_statuses ADD COLUMN channel TEXT NOT NULL DEFAULT '';`,
  // 9: failed replies, newest first, without a scan (the dashboard's overview)
  `CREATE INDEX outbound_failed ON outbound (updated_at) WHERE status = 'failed';`,
  // 10: the flow map's counts per step from an index, not from every session's JSON (at 100,000
  //     sessions that read held the process, webhooks included, for 0.4-1.5 s per view):
  //     `active_at` is when the user last wrote (ms; the creation time before any message)
  `
  ALTER TABLE sessions ADD COLUMN flow TEXT;
  ALTER TABLE sessions ADD COLUMN active_at INTEGER;
  UPDATE sessions SET
    flow = json_extract(snapshot, '$.flow'),
    active_at = COALESCE(json_extract(snapshot, '$.lastInteraction') * 1000, json_extract(snapshot, '$.createdAt'));
  CREATE INDEX sessions_counts ON sessions (flow, step, needs_agent, active_at);
  `,
  // 11: other copies of a reply (a holder killed after its send went out and before it was
  //     recorded, and the reply sent again): their provider ids, learnt from status webhooks by
  //     `biz_opaque_callback_data`, so a button on the first copy is still known (SPEC 1.7)
  `
  CREATE TABLE outbound_aliases (
    provider_message_id TEXT NOT NULL,
    channel             TEXT NOT NULL,
    outbound_id         TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    PRIMARY KEY (provider_message_id, channel)
  );
  CREATE INDEX outbound_aliases_at ON outbound_aliases (at);
  `,
  // 12: the phone number's session each business-scoped user id last came with on a channel
  //     (model/message.ts, userIdOnly): a message with the user id alone goes there. Seeded from
  //     the sessions stored so far, the most recently active first.
  `
  CREATE TABLE user_aliases (
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user    TEXT NOT NULL,
    PRIMARY KEY (channel, user_id)
  ) WITHOUT ROWID;
  INSERT OR IGNORE INTO user_aliases (channel, user_id, user)
    SELECT channel, user_id, user FROM sessions
    WHERE user_id IS NOT NULL AND wa_id IS NOT NULL ORDER BY updated_at DESC;
  `,
  // 13: the WhatsApp timestamp of the message that bound each user id: only one as late or later
  //     moves it (a redelivered or late message from an old number does not take the user back);
  //     bindings made before, the last time the user wrote to that session
  `
  ALTER TABLE user_aliases ADD COLUMN at INTEGER NOT NULL DEFAULT 0;
  UPDATE user_aliases SET at = COALESCE(
    (SELECT json_extract(s.snapshot, '$.lastInteraction') FROM sessions s
      WHERE s.channel = user_aliases.channel AND s.user = user_aliases.user), 0);
  `,
  // 14: the time before which a refused reply is not sent again (OutboundRecord.notBefore)
  `
  ALTER TABLE outbound ADD COLUMN not_before INTEGER;
  `,
];
