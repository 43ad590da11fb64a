-- The intake log: deletes one batch of rows whose message PostgreSQL has consumed (it is in
-- `inbound`), or that are older than the dedupe window (a redelivery of such a message is no
-- longer recognised anyway). The log is small (what is in flight); `inbound` is probed per row by
-- a scalar subquery, never scanned. Rows another sweep holds are skipped (SKIP LOCKED: that sweep
-- deletes them): every process sweeps after a Redis restart, and two sweeps planned differently
-- (a connection's custom plan locks in physical order, its generic plan in hash order) took the
-- same rows in opposite orders and deadlocked (outside test QA112-F1).
-- $1 start of the dedupe window (timestamptz), $2 batch size
DELETE FROM intake_log
WHERE ctid IN (
  SELECT l.ctid FROM intake_log l
  WHERE l.stored_at < $1
     OR (SELECT true FROM inbound i WHERE i.channel = l.channel AND i.user_id = l.user_id AND i.id = l.id)
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
