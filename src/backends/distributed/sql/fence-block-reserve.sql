-- Reserves the next block of fencing tokens of each given session (a block is
-- (ceiling - block size) + 1 .. ceiling). A session new to this Redis is about to be loaded:
-- fence-block-sessions, the next statement, reads its row. That read is a statement of its own
-- so that its snapshot is taken after this one's row locks: a journal
-- copy in flight holds its sessions' fence block rows (sessions-lock), so the reservation waits
-- for it, and the load then sees what it wrote (not the row as it was before: a restarted
-- Redis's new holder would otherwise go on from an older version, a fork).
-- $1 JSON array of {channel, user_id}, each session at most once; $2 block size
INSERT INTO fence_blocks AS f (channel, user_id, ceiling)
SELECT r.channel, r.user_id, $2::bigint
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text)
ORDER BY r.channel, r.user_id
ON CONFLICT (channel, user_id) DO UPDATE SET ceiling = f.ceiling + $2::bigint
RETURNING f.channel, f.user_id, f.ceiling
