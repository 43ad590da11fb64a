-- The PostgreSQL copy this process writes to, as `<database>/<schema>`: the Redis keys of one
-- BATON_REDIS_PREFIX belong to one such copy (lifecycle.ts). No parameters.
SELECT current_database() || '/' || coalesce(current_schema(), current_setting('search_path')) AS identity
