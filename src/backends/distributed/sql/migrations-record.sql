-- Records one applied migration.
-- $1 id, $2 file name
INSERT INTO baton_migrations (id, name) VALUES ($1, $2)
