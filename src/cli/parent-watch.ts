/**
 * Stops a server started by an npm script when npm itself goes away. `npm start` is the
 * parent of the node process; a SIGKILL of npm's PID cannot be forwarded, so the orphaned
 * server would keep serving (and keep its data directory locked). Node has no "parent
 * died" signal, so the parent PID is polled: when it changes, the process was orphaned.
 * @module
 */

/**
 * Calls `onOrphaned` once when this process's parent changes. Only when run by an npm script
 * (`npm_lifecycle_event` set): a `baton start &` daemon outliving its shell is intended.
 * Returns a function that stops watching.
 */
export function watchParent(
  onOrphaned: () => void,
  env: NodeJS.ProcessEnv = process.env,
  intervalMs = 500,
): () => void {
  if (env.npm_lifecycle_event === undefined) return () => undefined;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onOrphaned();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
