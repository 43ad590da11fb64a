-- The intake log keeps each message's place among those its process logged (intake-log.ts):
-- messages stored in the same millisecond (one webhook's, say) went back into a mailbox that
-- Redis lost in the order of their ids, not of their arrival, and a burst "Jane", "Doe" became
-- "Doe Jane" (outside test QA43-F1). The restore now pages by (stored_at, arrival).
ALTER TABLE intake_log ADD COLUMN arrival integer NOT NULL DEFAULT 0;
DROP INDEX intake_log_stored_at;
CREATE INDEX intake_log_stored_at ON intake_log (stored_at, arrival, channel, user_id, id);
