-- One consumed inbound message as stored.
-- $1 channel, $2 user, $3 message id
SELECT message FROM inbound WHERE channel = $1 AND user_id = $2 AND id = $3
