/**
 * Telling "Redis is unreachable or not serving" (retry later, answer 503) from a bug.
 * @module
 */

const UNAVAILABLE_REPLIES = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MISCONF)\b/;
// "All keys in the pipeline…": ioredis refusing to follow a MOVED for a pipeline whose keys a
// slot migration has just split across nodes (outside test QA56-F1: the admin stats answered 500).
const UNAVAILABLE_CLIENT =
  /All keys in the pipeline should belong to the same slots? allocation group|Connection is closed|None of startup nodes is available|Cluster isn't ready|Cluster is disconnect|Failed to refresh slots cache|Too many Cluster redirections|Node is disconnected|Stream isn't writeable|Command timed out|max retries per request|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND|connect ETIMEDOUT|Socket closed unexpectedly/i;

export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLIES.test(err.message);
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    err.name === 'ClusterAllFailedError' ||
    UNAVAILABLE_CLIENT.test(err.message)
  );
}
