// The embedded store's checkpointer thread (started by `checkpointer.ts`): its own SQLite
// connection to the same file, running a PASSIVE checkpoint each time the main thread asks.
// PASSIVE never takes the writer lock, so the main thread's commits go on meanwhile; the
// checkpoint's syncs (the WAL before copying, the database after) are made here, not on the
// event loop. Plain JavaScript: a worker thread loads it as it is, from src/ and from dist/.
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';

const Database = createRequire(import.meta.url)('better-sqlite3');
const db = new Database(workerData.file);
// Never wait on a lock: a checkpoint that finds one busy stops where it is and runs again later.
db.pragma('busy_timeout = 0');

parentPort.on('message', (msg) => {
  if (msg === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  const started = performance.now();
  if (msg === 'truncate') {
    // Idle: copy what is left and cut the WAL to nothing. It needs the writer lock for a moment;
    // with busy_timeout 0 a write under way makes it give up (busy), and the next idle spell
    // tries again.
    try {
      const [row] = db.pragma('wal_checkpoint(TRUNCATE)');
      parentPort.postMessage({ ok: true, truncated: row.busy === 0, ms: performance.now() - started });
    } catch (err) {
      // SQLITE_BUSY from the lock: not a failure of the thread.
      parentPort.postMessage({
        ok: true,
        truncated: false,
        ms: performance.now() - started,
        error: String(err?.message ?? err),
      });
    }
    return;
  }
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({
      ok: true,
      busy: row.busy,
      log: row.log,
      checkpointed: row.checkpointed,
      ms: performance.now() - started,
    });
  } catch (err) {
    parentPort.postMessage({
      ok: false,
      error: String(err?.message ?? err),
      ms: performance.now() - started,
    });
  }
});
