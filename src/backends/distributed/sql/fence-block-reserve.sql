-- Reserves the next block of fencing tokens of one session; the block is
-- (ceiling - block size) + 1 .. ceiling.
-- $1 channel, $2 user, $3 block size
INSERT INTO fence_blocks AS f (channel, user_id, ceiling)
VALUES ($1, $2, $3)
ON CONFLICT (channel, user_id) DO UPDATE SET ceiling = f.ceiling + $3
RETURNING ceiling
