-- Serialises migrators of one schema until the transaction ends.
-- $1 the schema name
SELECT pg_advisory_xact_lock(hashtext('baton:migrate:' || $1))
