-- The migration ledger: one row per applied migration. No parameters.
CREATE TABLE IF NOT EXISTS baton_migrations (
  id          integer     PRIMARY KEY,
  name        text        NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
)
