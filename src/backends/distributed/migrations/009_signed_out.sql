-- Dashboard sign-ins ended before their cookie expires (`POST /admin/logout`), kept in PostgreSQL
-- too: a Redis that restarts empty lost its copy, and a signed-out cookie worked again for the rest
-- of its 12 hours (outside test QA87-F1).
CREATE TABLE signed_out (
  id    text   PRIMARY KEY,
  until bigint NOT NULL
);
