-- A session's transition log, oldest first: all of it, or with $3 its newest $3 records (read
-- backwards along the session's index, then put back in order).
-- $1 channel, $2 user, $3 how many of the newest (null: all)
SELECT record FROM (
  SELECT id, record
  FROM transitions WHERE channel = $1 AND user_id = $2
  ORDER BY id DESC
  LIMIT $3
) newest
ORDER BY id
