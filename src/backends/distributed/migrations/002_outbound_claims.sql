-- Send attempts of each reply that may have reached the user, each claimed before it was made
-- (OutboundRecord.claims); a record written before counts its commit's claim.
ALTER TABLE outbound ADD COLUMN claims integer NOT NULL DEFAULT 1;
