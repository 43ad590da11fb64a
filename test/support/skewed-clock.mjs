// Preloaded into a child process (NODE_OPTIONS=--import=<this file>) to give it a wall clock that
// is off by BATON_TEST_CLOCK_SKEW_MS (positive: ahead), as a machine without time sync would be.
const skew = Number(process.env.BATON_TEST_CLOCK_SKEW_MS ?? 0);
const wall = Date.now;
Date.now = () => wall() + skew;
