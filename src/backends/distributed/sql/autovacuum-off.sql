-- Whether PostgreSQL's autovacuum will not run on Baton's tables: off, or without the statistics
-- it is driven by. Then the retention's deletes free no space and deleted texts stay on disk
-- until something vacuums (maintenance.ts then does, after each purge). No parameters.
SELECT current_setting('autovacuum') = 'off' OR current_setting('track_counts') = 'off' AS off
