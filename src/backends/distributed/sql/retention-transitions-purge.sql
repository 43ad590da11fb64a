-- Retention: deletes transition records older than the cut-off among the oldest rows (ids grow
-- with time, so the old ones come first); the caller repeats while a whole batch went.
-- $1 cut-off (timestamptz), $2 batch size
DELETE FROM transitions
WHERE id IN (
  SELECT id FROM (SELECT id, at FROM transitions ORDER BY id LIMIT $2) oldest
  WHERE at < $1
)
