-- Whether PostgreSQL has consumed any message still kept (retention keeps them for the dedupe
-- window): a Redis that holds no key of this deployment then forgot messages it had seen.
SELECT EXISTS (SELECT 1 FROM inbound) AS any
