-- Failed replies, newest first, without a scan (the dashboard's overview).
CREATE INDEX outbound_failed ON outbound (updated_at) WHERE status = 'failed';
