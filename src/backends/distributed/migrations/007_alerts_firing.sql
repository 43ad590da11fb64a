-- The queue alerts announced and not yet resolved (alerts/index.ts), kept in PostgreSQL too: a
-- Redis that restarts empty lost its copy, and the alert then fired a second time in one episode.
CREATE TABLE alerts_firing (
  alert text   PRIMARY KEY,
  at    bigint NOT NULL
);
