-- Whether PostgreSQL's autovacuum will not run on Baton's tables: off, without the statistics it
-- is driven by, or turned off on one of the tables the retention deletes from or the sessions
-- table, whose every commit leaves an old row version
-- (`ALTER TABLE ... SET (autovacuum_enabled = off)`, in any of the spellings PostgreSQL takes for
-- false). Then the retention's deletes free no space and deleted texts stay on disk until
-- something vacuums (maintenance.ts then does, after each purge). No parameters.
SELECT current_setting('autovacuum') = 'off'
  OR current_setting('track_counts') = 'off'
  OR EXISTS (
    SELECT 1
    FROM pg_class c, unnest(c.reloptions) AS o(opt)
    WHERE c.oid IN (
        to_regclass('sessions'), to_regclass('transitions'), to_regclass('outbound'), to_regclass('inbound'),
        to_regclass('dead_letters'), to_regclass('intake_log')
      )
      AND lower(split_part(opt, '=', 1)) = 'autovacuum_enabled'
      AND lower(btrim(split_part(opt, '=', 2))) IN ('f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0')
  ) AS off
