-- Retention: clears the data of the given sessions (what the flow kept of the user's answers),
-- those still written last before the cut-off: one written since (the user came back) keeps it.
-- The row stays, and its write time with it (this is no activity of the session's).
-- $1 jsonb array of {channel, user_id}, $2 cut-off (timestamptz)
UPDATE sessions s
SET snapshot = jsonb_set(s.snapshot, '{data}', '{}'::jsonb)
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text)
WHERE s.channel = r.channel AND s.user_id = r.user_id
  AND s.updated_at < $2 AND s.snapshot -> 'data' <> '{}'::jsonb
