-- The era of a session's fences. When Redis has lost a session (a restart without AOF), the
-- first reservation or intake-log restore of the new Redis lifetime (its run_id, `era`) raises
-- `floor` above every fence granted before: a journal copy of the old lifetime that reaches
-- PostgreSQL after that is refused (entries-refused.sql), so the session's next holder, which
-- went on from PostgreSQL's row, is the only chain of versions.
ALTER TABLE fence_blocks ADD COLUMN floor bigint NOT NULL DEFAULT 0;
ALTER TABLE fence_blocks ADD COLUMN era text;
