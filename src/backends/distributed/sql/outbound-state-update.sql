-- Applies journaled changes of outbound records' mutable part, unless PostgreSQL already
-- has a later revision.
-- $1 jsonb array of {id, status, attempts, claims, provider_message_id, provider_aliases, last_error,
--    rev}, one per id
UPDATE outbound AS o SET
  status = r.status,
  attempts = r.attempts,
  claims = COALESCE(r.claims, o.claims),
  provider_message_id = r.provider_message_id,
  -- Other copies' ids (OutboundState.aliases) ride in the record, the one field written after
  -- its commit: rare, and a column of their own changed the table's plans.
  record = CASE WHEN r.provider_aliases IS NULL THEN o.record
                ELSE jsonb_set(o.record, '{aliases}', to_jsonb(r.provider_aliases)) END,
  last_error = r.last_error,
  rev = r.rev,
  updated_at = now()
FROM jsonb_to_recordset($1::jsonb) AS r(
  id text, status text, attempts integer, claims integer, provider_message_id text,
  provider_aliases text[], last_error text, rev bigint
)
-- the ids again, as an array: index probes, not a join's scan of the table (see sessions-lock)
WHERE o.id = ANY (ARRAY(SELECT jsonb_array_elements($1::jsonb) ->> 'id'))
  AND o.id = r.id AND o.rev < r.rev
