/** Types of bench/hooks/wire-count.mjs (a plain-JavaScript preload, so children need no loader). */

/**
 * Counts RESP commands in a stream of written chunks; returns the commands each chunk completed.
 * `onCommand` gets each command's name in lower case (`evalsha:<sha>` for EVALSHA).
 */
export function respCounter(onCommand?: (name: string) => void): (chunk: Uint8Array) => number;

/** Counts PostgreSQL frontend statements and syncs in a stream of written chunks. */
export function pgCounter(): (chunk: Uint8Array) => { statements: number; roundTrips: number };
