-- The intake log (intake-log.ts): messages of acknowledged webhooks kept in PostgreSQL until
-- consumed, when Redis does not persist every write (BATON_INTAKE_LOG).
CREATE TABLE intake_log (
  channel    text        NOT NULL,
  user_id    text        NOT NULL,
  id         text        NOT NULL,
  stored_at  timestamptz NOT NULL,
  message    jsonb       NOT NULL,
  PRIMARY KEY (channel, user_id, id)
);
CREATE INDEX intake_log_stored_at ON intake_log (stored_at, channel, user_id, id);
