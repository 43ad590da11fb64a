-- Marks a dead letter replayed, once.
-- $1 id, $2 replayed at (ISO 8601)
UPDATE dead_letters SET replayed_at = $2 WHERE id = $1 AND replayed_at IS NULL RETURNING id
