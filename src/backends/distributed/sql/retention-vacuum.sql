-- After a purge, when autovacuum is off (autovacuum-off.sql): makes the space of the rows the
-- retention deleted (and the intake log consumed) reusable, and the deleted texts gone from the
-- tables' pages; and the old versions of every session row each commit leaves (a customer's
-- earlier data among them: outside test QA52-F3 saw 63,644 dead rows beside 2,500 live ones).
-- Not VACUUM FULL: no lock that stops reads or writes. No parameters.
VACUUM sessions, transitions, outbound, inbound, dead_letters, intake_log
