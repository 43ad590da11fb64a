/**
 * Telling "PostgreSQL is unreachable" (retry later, answer 503) from a bug in a statement.
 * @module
 */

const NODE_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

/** True when the error means the server could not be reached or went away. */
export function isPgUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now; 53300: too many connections
    if (code.startsWith('08') || code.startsWith('57P') || code === '53300') return true;
    if (NODE_NETWORK_CODES.has(code)) return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED|Query read timeout/i.test(
    err.message,
  );
}

/** True when a transaction lost a race and may simply run again. */
export function isPgRetryable(err: unknown): boolean {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return code === '40001' || code === '40P01';
}
