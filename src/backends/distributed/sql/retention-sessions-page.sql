-- Retention: the next page of sessions in key order after ($1, $2) (the sweep's cursor; '' and
-- '' from the first), each with whether it is due to expire: written last before the cut-off (so
-- expired, and past the message retention), at a step, awaiting no effect, and with no reply left
-- to send; and what the purge's expiry event names it by. A primary-key range: a page costs the
-- same whatever the table holds.
-- $1 channel, $2 user_id, $3 cut-off (timestamptz), $4 page size
SELECT s.channel, s.user_id AS "user", s.wa_id AS "waId", s.bsuid AS "userId", s.version,
  s.snapshot ->> 'provider' AS provider,
  (s.updated_at < $3 AND s.step IS NOT NULL AND s.snapshot -> 'awaiting' IS NULL
    AND NOT EXISTS (
      SELECT 1 FROM outbound o
      WHERE o.channel = s.channel AND o.user_id = s.user_id AND o.status IN ('pending', 'sending')
    )) AS due
FROM sessions s
WHERE (s.channel, s.user_id) > ($1::text, $2::text)
ORDER BY s.channel, s.user_id
LIMIT $4
