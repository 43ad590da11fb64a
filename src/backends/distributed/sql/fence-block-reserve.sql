-- Reserves the next block of fencing tokens of each given session (a block is
-- (ceiling - block size) + 1 .. ceiling). A session new to this Redis is about to be loaded:
-- fence-block-sessions, the next statement, reads its row. That read is a statement of its own
-- so that its snapshot is taken after this one's row locks: a journal
-- copy in flight holds its sessions' fence block rows (sessions-lock), so the reservation waits
-- for it, and the load then sees what it wrote (not the row as it was before: a restarted
-- Redis's new holder would otherwise go on from an older version, a fork).
-- A session whose fences Redis no longer has comes with the Redis lifetime (`era`, its run_id)
-- that loads it. The first such reservation (or intake-log restore, intake-log-floor.sql) of a
-- lifetime raises the session's floor above every fence granted before it: a copy of the lost
-- lifetime that has not reached PostgreSQL yet is refused when it does (every statement of a
-- copy refuses a fence below the floor, as below the session row's own).
-- $1 JSON array of {channel, user_id, era (null: Redis kept the session)}, each session at most once; $2 block size
INSERT INTO fence_blocks AS f (channel, user_id, ceiling, era)
SELECT r.channel, r.user_id, $2::bigint, r.era
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text, era text)
ORDER BY r.channel, r.user_id
ON CONFLICT (channel, user_id) DO UPDATE SET
  ceiling = f.ceiling + $2::bigint,
  floor = CASE WHEN EXCLUDED.era IS NOT NULL AND f.era IS DISTINCT FROM EXCLUDED.era
               THEN f.ceiling + 1 ELSE f.floor END,
  era = COALESCE(EXCLUDED.era, f.era)
RETURNING f.channel, f.user_id, f.ceiling
