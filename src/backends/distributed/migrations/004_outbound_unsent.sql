-- Replies committed and not yet sent, found without a scan: when Redis comes back empty (no AOF),
-- the sessions that owe them are scheduled again (intake-log.ts, recoverOutbox).
CREATE INDEX outbound_unsent ON outbound (created_at) WHERE status IN ('pending', 'sending');
