-- Retention: clears the given sessions as an agent's reset would, at no step and with no data
-- (what the flow kept of the user's answers), so that whatever the user sends next starts a new
-- conversation, a redelivery stamped before the session expired too. Only those still written
-- last before the cut-off (one written since, the user back, keeps everything), awaiting no
-- effect, and with no reply left to send (their holder may still have them in Redis). The row
-- stays, its version and write time too (this is no activity of the session's).
-- $1 jsonb array of {channel, user_id}, $2 cut-off (timestamptz)
UPDATE sessions s
SET step = NULL,
  needs_agent = false,
  snapshot = (s.snapshot - 'agent' - 'handoffReason')
    || jsonb_build_object('step', NULL, 'data', '{}'::jsonb, 'needsAgent', false, 'retryCount', 0)
FROM jsonb_to_recordset($1::jsonb) AS r(channel text, user_id text)
WHERE s.channel = r.channel AND s.user_id = r.user_id
  AND s.updated_at < $2 AND (s.step IS NOT NULL OR s.snapshot -> 'data' <> '{}'::jsonb)
  AND s.snapshot -> 'awaiting' IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM outbound o
    WHERE o.channel = s.channel AND o.user_id = s.user_id AND o.status IN ('pending', 'sending')
  )
