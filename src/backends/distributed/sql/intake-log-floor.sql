-- The intake log's restore, for sessions whose fences Redis no longer has: starts the Redis
-- lifetime `era` for them, as their first fence block reservation in it would (see
-- fence-block-reserve.sql: the floor above every fence granted before), so that a journal copy
-- of the lost lifetime that has not reached PostgreSQL yet is refused when it does; the
-- messages put back are then applied once, by the session's next holder. Runs after
-- intake-log-fence-wait (which holds the rows), in its transaction. An upsert, so that each
-- row is reached through the key (a session never granted gets an empty row: ceiling 0).
-- $1 jsonb array of {channel, user_id, era}
INSERT INTO fence_blocks AS f (channel, user_id, ceiling, era)
SELECT k.channel, k.user_id, 0, k.era
FROM jsonb_to_recordset($1::jsonb) AS k(channel text, user_id text, era text)
ORDER BY k.channel, k.user_id
ON CONFLICT (channel, user_id) DO UPDATE SET floor = f.ceiling + 1, era = EXCLUDED.era
WHERE f.era IS DISTINCT FROM EXCLUDED.era
