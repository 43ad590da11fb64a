/**
 * One owner per data directory. Two processes writing one SQLite file each believe they own
 * every in-process lease and sequence number, so they apply messages twice and send twice.
 * The first process takes `baton.lock` in the directory (created exclusively, holding its
 * PID) and an exclusive lock on `baton.owner` that the kernel keeps for it until it exits; a
 * second one is refused with the directory and the holder's PID. A lock whose holder is gone
 * (SIGKILL, power loss) is stale and taken over: one the kernel no longer holds, whatever PID or
 * host its file names (a container recreated on the same volume has another hostname and often
 * the same PID; after a reboot the PID may be another program's: outside test QA94-F2).
 * @module
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import Database from 'better-sqlite3';
import { hostname, uptime } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { BatonError, ConfigError } from '../../errors.ts';

/**
 * Creates the data directory (and its missing parents), or says in one line naming
 * `BATON_DATA_DIR` why it cannot: a path through a file, a directory that refuses it. One level
 * at a time: Node's recursive `mkdir` spins forever on a path under `/proc`.
 */
export function ensureDataDir(dir: string): void {
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(at).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw dataDirError(dir, err);
      missing.unshift(at);
      const parent = dirname(at);
      if (parent === at) break;
      at = parent;
      continue;
    }
    if (!isDir) throw new ConfigError('BATON_DATA_DIR', `"${dir}": ${at} is a file, not a directory`);
    break;
  }
  for (const d of missing) {
    try {
      // Only its owner may read it: the store holds users' numbers and messages.
      mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw dataDirError(dir, err);
    }
  }
}

function dataDirError(dir: string, err: unknown): ConfigError {
  const e = err as NodeJS.ErrnoException;
  return new ConfigError(
    'BATON_DATA_DIR',
    `"${dir}" cannot be created or used (${e.code ?? 'error'}: ${e.syscall ?? 'access'} ${e.path ?? dir})`,
  );
}

/** A held directory lock. */
export interface DirLock {
  readonly file: string;
  /**
   * Whether the lock is still this process's: a lock file deleted meanwhile is written again
   * (else a second process could start on the directory: outside test QA94-F3); null when it is
   * ours, else who took it.
   */
  check(): string | null;
  /** Removes the lock file if it is still ours. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
  /** When it took the lock, epoch ms (NaN: not said). */
  since: number;
}

/** Lock files this process holds (a second backend in one process is refused too). */
const heldHere = new Set<string>();

function readHolder(file: string): Holder | null {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as {
      pid?: unknown;
      host?: unknown;
      since?: unknown;
    };
    return typeof parsed.pid === 'number'
      ? {
          pid: parsed.pid,
          host: typeof parsed.host === 'string' ? parsed.host : '',
          since: typeof parsed.since === 'string' ? Date.parse(parsed.since) : Number.NaN,
        }
      : null;
  } catch {
    return null; // gone, or a half-written file of a holder that died while writing it
  }
}

function youngerThan(file: string, ms: number): boolean {
  try {
    return Date.now() - statSync(file).mtimeMs < ms;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (killed, not yet reaped by its parent) still answers signal 0, and writes nothing.
  try {
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc here: the signal's answer stands
  }
}

/**
 * An exclusive lock on `baton.owner` in `dir`, held by the returned connection until it closes
 * (the kernel drops it when the process exits, however it exits); null while another process
 * holds it. SQLite's own file locks, so no native module of Baton's own: in `EXCLUSIVE` locking
 * mode a connection keeps the lock of its first write.
 */
function takeOwner(dir: string): Database.Database | null {
  const db = new Database(join(resolve(dir), 'baton.owner'), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('CREATE TABLE IF NOT EXISTS owner (pid INTEGER); DELETE FROM owner;');
    db.prepare('INSERT INTO owner (pid) VALUES (?)').run(process.pid);
    return db;
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return null;
    throw err;
  }
}

/** This machine's boot, epoch ms (a lock taken before it was a process of an earlier boot). */
const bootedAt = (): number => Date.now() - uptime() * 1000;

/**
 * Takes the lock of `dir`, or throws `BATON_ERR_DATA_DIR_LOCKED` naming the directory and the
 * holder's PID. Held by another process while the kernel keeps its lock on `baton.owner`. When
 * the kernel keeps none, the lock file's holder is stale unless it is a live process of this
 * host since its boot (a Baton from before `baton.owner`, which takes no kernel lock).
 */
export function lockDataDir(dir: string): DirLock {
  const file = resolve(dir, 'baton.lock');
  const me = { pid: process.pid, host: hostname() };
  const refuse = (holder: Holder | null): BatonError => {
    const who = holder === null ? 'another process' : `process ${holder.pid} on ${holder.host}`;
    return new BatonError(
      'BATON_ERR_DATA_DIR_LOCKED',
      `data directory ${resolve(dir)} is in use by ${who} (one process per BATON_DATA_DIR; remove ${file} if that process is gone)`,
    );
  };
  // In this process already: SQLite lets a second connection of one process share the lock.
  if (heldHere.has(file)) throw refuse(readHolder(file) ?? { ...me, since: Number.NaN });
  const owner = takeOwner(dir);
  if (owner === null) throw refuse(readHolder(file));
  try {
    return lockFile(file, me, owner, refuse);
  } catch (err) {
    owner.close();
    throw err;
  }
}

function lockFile(
  file: string,
  me: { readonly pid: number; readonly host: string },
  owner: Database.Database,
  refuse: (holder: Holder | null) => BatonError,
): DirLock {
  const take = (): void => {
    const fd = openSync(file, 'wx', 0o644);
    try {
      writeSync(fd, JSON.stringify({ ...me, since: new Date().toISOString() }) + '\n');
    } finally {
      closeSync(fd);
    }
  };
  const isMe = (h: Holder | null): boolean => h !== null && h.pid === me.pid && h.host === me.host;
  for (let attempt = 0; ; attempt++) {
    try {
      take();
      heldHere.add(file);
      let released = false;
      return {
        file,
        check() {
          if (released) return null;
          const h = readHolder(file);
          if (isMe(h)) return null;
          if (h === null && !youngerThan(file, 2000)) {
            try {
              take();
              return null;
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return null; // the directory is gone: the store says so
            }
          }
          const now = readHolder(file);
          if (now === null || isMe(now)) return null;
          return `process ${now.pid} on ${now.host}`;
        },
        release() {
          if (released) return;
          released = true;
          heldHere.delete(file);
          if (isMe(readHolder(file))) rmSync(file, { force: true });
          owner.close();
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = readHolder(file);
    // An unreadable lock may be one being written right now: give its writer a moment.
    for (let i = 0; holder === null && i < 20 && youngerThan(file, 2000); i++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      holder = readHolder(file);
    }
    // The kernel's lock is ours, so no Baton that takes it holds the directory. Another host's, or
    // our own PID (a container recreated or restarted), or a process of an earlier boot: stale.
    // A live process of this host since its boot may be a Baton that takes no kernel lock.
    const stale =
      holder === null ||
      holder.host !== me.host ||
      holder.pid === me.pid ||
      holder.since < bootedAt() ||
      !alive(holder.pid);
    if (!stale || attempt >= 2) throw refuse(holder);
    rmSync(file, { force: true });
  }
}
