/**
 * The negative integer codes the Lua scripts return, in one place. Each script's header
 * names the codes it can return; a non-negative result is that script's success value.
 * @module
 */
export enum ScriptCode {
  /** intake: the message id was already stored within the dedupe TTL. */
  Duplicate = -1,
  /** lease-acquire: another holder has the lease. */
  Locked = -2,
  /** commit, lease-renew, lease-release: the token no longer holds the lease, or its fence was superseded. */
  Fenced = -3,
  /** commit: the stored version is not the expected one. */
  VersionConflict = -4,
  /** lease-acquire: the fence counter is unknown to this Redis (new session, restart, failover): reserve a block in PostgreSQL. */
  NeedFenceBlock = -5,
  /** commit: the session is not in Redis: reload it from PostgreSQL first. */
  NeedLoad = -6,
  /** outbound-update, lease-clear: nothing by that id/name. */
  NotFound = -7,
}

export function isScriptCode(n: unknown): n is ScriptCode {
  return typeof n === 'number' && n < 0 && ScriptCode[n] !== undefined;
}
