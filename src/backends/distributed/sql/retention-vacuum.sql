-- After a purge, when autovacuum is off (autovacuum-off.sql): makes the space of the rows the
-- retention deleted (and the intake log consumed) reusable, and the deleted texts gone from the
-- tables' pages. Not VACUUM FULL: no lock that stops reads or writes. No parameters.
VACUUM transitions, outbound, inbound, dead_letters, intake_log
