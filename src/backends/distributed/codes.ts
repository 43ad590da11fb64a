/**
 * The negative integer codes the Lua scripts return, in one place (a const enum object, so
 * replies, which are plain numbers, compare against it directly). Each script's header names
 * the codes it can return; a non-negative result is that script's success value.
 * @module
 */
export const ScriptCode = {
  /** intake: the message id was already stored within the dedupe TTL. */
  Duplicate: -1,
  /** lease-acquire: another holder has the lease. */
  Locked: -2,
  /** commit, lease-renew, lease-release: the token no longer holds the lease, or its fence was superseded. */
  Fenced: -3,
  /** commit: the stored version is not the expected one. */
  VersionConflict: -4,
  /** lease-acquire: this Redis has no valid fence block for the session (new session, restart, failover). */
  NeedFenceBlock: -5,
  /** commit: the session is not in Redis: reload it from PostgreSQL first. */
  NeedLoad: -6,
  /** outbound-update, lease-clear: nothing by that id. */
  NotFound: -7,
  /** outbound-claim: the record is sent or failed (not waiting to be sent). */
  NotWaiting: -8,
} as const;

export type ScriptCode = (typeof ScriptCode)[keyof typeof ScriptCode];

/** The name of a code, for error messages. */
export function scriptCodeName(n: number): string {
  const hit = Object.entries(ScriptCode).find(([, v]) => v === n);
  return hit ? hit[0] : String(n);
}
