-- A session's outbound records named by provider message ids: by the id of the send recorded,
-- or of another copy of the reply (the record's `aliases`, see outbound-state-update.sql).
-- $1 channel, $2 user, $3 text[] provider message ids
SELECT provider_message_id, record
FROM outbound
WHERE channel = $1 AND user_id = $2
  AND (provider_message_id = ANY($3::text[]) OR record -> 'aliases' ?| $3::text[])
