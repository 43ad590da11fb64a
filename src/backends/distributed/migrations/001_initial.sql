-- 001: the durable copy of the distributed backend.
-- Runs inside the migrator's transaction, with search_path set to the Baton schema.

-- One row per session: the latest snapshot, with the fence and revision of the commit that
-- wrote it. Upserts refuse an older fence (see sql/sessions-upsert.sql).
CREATE TABLE sessions (
  channel      text        NOT NULL,
  user_id      text        NOT NULL,
  wa_id        text,
  bsuid        text,
  flow         text        NOT NULL,
  step         text,
  version      bigint      NOT NULL,
  rev          bigint      NOT NULL,
  fence        bigint      NOT NULL,
  needs_agent  boolean     NOT NULL DEFAULT false,
  snapshot     jsonb       NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel, user_id)
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_wa_id ON sessions (wa_id);
CREATE INDEX sessions_bsuid ON sessions (bsuid);
CREATE INDEX sessions_step ON sessions (step, channel, user_id);
CREATE INDEX sessions_needs_agent ON sessions (channel, user_id) WHERE needs_agent;

-- Fencing tokens are handed out by Redis from blocks reserved here; the ceiling only grows,
-- so a Redis that lost its data starts above every token ever granted.
CREATE TABLE fence_blocks (
  channel  text   NOT NULL,
  user_id  text   NOT NULL,
  ceiling  bigint NOT NULL,
  PRIMARY KEY (channel, user_id)
);

-- The transition log. `id` is the order records were committed in; (entry_id, ord) makes
-- replays of a journal entry idempotent; `record` is the record exactly as committed.
CREATE TABLE transitions (
  id             bigserial   PRIMARY KEY,
  channel        text        NOT NULL,
  user_id        text        NOT NULL,
  entry_id       text        NOT NULL,
  ord            integer     NOT NULL,
  version        bigint      NOT NULL,
  from_step      text,
  to_step        text,
  kind           text        NOT NULL,
  message_ids    text[]      NOT NULL,
  at             timestamptz NOT NULL,
  worker         text        NOT NULL,
  fencing_token  bigint      NOT NULL,
  record         jsonb       NOT NULL,
  UNIQUE (entry_id, ord)
);
CREATE INDEX transitions_session ON transitions (channel, user_id, id);

-- Outbound records: `record` is the immutable part; the mutable columns follow `rev`.
CREATE TABLE outbound (
  id                   text        PRIMARY KEY,
  channel              text        NOT NULL,
  user_id              text        NOT NULL,
  seq                  bigint      NOT NULL,
  version              bigint      NOT NULL,
  step                 text        NOT NULL,
  is_prompt            boolean     NOT NULL,
  fence                bigint      NOT NULL,
  status               text        NOT NULL,
  attempts             integer     NOT NULL,
  provider_message_id  text,
  last_error           text,
  rev                  bigint      NOT NULL,
  record               jsonb       NOT NULL,
  created_at           timestamptz NOT NULL,
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_session ON outbound (channel, user_id, seq);
CREATE INDEX outbound_provider_message_id ON outbound (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Inbound messages, recorded when a batch consumes them (pending ones live in Redis).
CREATE TABLE inbound (
  channel      text        NOT NULL,
  user_id      text        NOT NULL,
  id           text        NOT NULL,
  seq          bigint      NOT NULL,
  message      jsonb       NOT NULL,
  stored_at    timestamptz NOT NULL,
  consumed_at  timestamptz NOT NULL,
  entry_id     text        NOT NULL,
  outcome      text        NOT NULL,
  PRIMARY KEY (channel, user_id, id)
);

CREATE TABLE dead_letters (
  id           text        PRIMARY KEY,
  kind         text        NOT NULL,
  channel      text        NOT NULL,
  user_id      text        NOT NULL,
  ref          text        NOT NULL,
  reason       text        NOT NULL,
  payload      jsonb,
  created_at   timestamptz NOT NULL,
  replayed_at  timestamptz
);
CREATE INDEX dead_letters_created_at ON dead_letters (created_at DESC, id);
