/**
 * The embedded store's WAL checkpoints run on a thread of their own (`checkpointer.ts`), on a
 * real SQLite file: the database file fills while the main connection's own checkpoint is far
 * off, closing still leaves no WAL behind, and a thread that cannot run is reported. On a full
 * disk (a tmpfs of the test's own, as root): checkpoints are tried again, brought forward once a
 * commit gets through, and the store's health says whether it takes writes.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { Checkpointer } from '../../src/backends/embedded/checkpointer.ts';
import { newKey, sleep, text } from '../distributed/fixtures.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-checkpointer-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function until(what: string, ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

it('copies committed pages into the database file from its own thread', async () => {
  const dir = tempDir();
  const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 60_000, dedupeTtlSec: 3600 });
  await b.init();
  cleanups.unshift(() => b.close());
  const key = newKey();
  for (let i = 0; i < 20; i += 1) {
    const batch = Array.from({ length: 10 }, (_, j) => text(key, `message ${i}-${j}`));
    await b.ingest({ messages: batch, statuses: [] });
  }
  // A few dozen pages: far below any automatic checkpoint of the main connection (1,000 pages
  // by SQLite's default), so only the thread can have copied them.
  await until('a checkpoint of every frame', () => {
    const s = b.checkpoints;
    return s !== null && s.runs > 0 && s.log > 0 && s.checkpointed === s.log;
  });
  // The database file alone, without its WAL, holds every message.
  const copy = join(dir, 'copy.sqlite');
  copyFileSync(join(dir, 'baton.sqlite'), copy);
  const db = new Database(copy, { readonly: true });
  try {
    expect(db.prepare('SELECT COUNT(*) AS n FROM inbound').get()).toEqual({ n: 200 });
  } finally {
    db.close();
  }
});

it('leaves no WAL behind when the store closes, with the thread running', async () => {
  const dir = tempDir();
  const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 60_000, dedupeTtlSec: 3600 });
  await b.init();
  await b.ingest({ messages: [text(newKey(), 'hi')], statuses: [] });
  await until('a checkpoint', () => (b.checkpoints?.runs ?? 0) > 0);
  expect(existsSync(join(dir, 'baton.sqlite-wal'))).toBe(true);
  await b.close();
  expect(existsSync(join(dir, 'baton.sqlite-wal'))).toBe(false);
  const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
  try {
    expect(db.prepare('SELECT COUNT(*) AS n FROM inbound').get()).toEqual({ n: 1 });
  } finally {
    db.close();
  }
});

it('reports a thread that cannot open the database', async () => {
  const failures: Error[] = [];
  const c = new Checkpointer(join(tempDir(), 'no', 'such', 'dir', 'baton.sqlite'), {
    onFailure: (err) => failures.push(err),
  });
  cleanups.unshift(() => c.close());
  await until('the failure', () => failures.length > 0);
  expect(failures).toHaveLength(1);
  expect(failures[0]!.message).toMatch(/directory does not exist|unable to open/i);
});

it('cuts the WAL to nothing once the store has been idle a while (outside test QA12)', async () => {
  const dir = tempDir();
  const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 60_000, dedupeTtlSec: 3600, walIdleMs: 300 });
  await b.init();
  cleanups.unshift(() => b.close());
  const wal = join(dir, 'baton.sqlite-wal');
  // A burst of long texts: a WAL of a few MB, which SQLite would keep at that size for good.
  const long = 'x'.repeat(4000);
  await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      b.ingest({
        messages: Array.from({ length: 20 }, (_, j) => text(newKey(), `${i}-${j} ${long}`)),
        statuses: [],
      }),
    ),
  );
  expect(statSync(wal).size).toBeGreaterThan(1024 * 1024);
  // A second to the checkpoint, then 300 ms idle: cut, with no write needed to trigger it.
  // (The thread reports the cut after the file is cut: both are waited for.)
  await until('the WAL cut', () => statSync(wal).size === 0 && b.checkpoints?.truncated === 1, 10_000);
  // Writes go on as before, and every message is there.
  await b.ingest({ messages: [text(newKey(), 'hi')], statuses: [] });
  expect(statSync(wal).size).toBeGreaterThan(0);
  const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
  try {
    expect(db.prepare('SELECT COUNT(*) AS n FROM inbound').get()).toEqual({ n: 601 });
  } finally {
    db.close();
  }
});

/** A 16 MiB tmpfs of its own (a disk that fills), or null where this user may not mount one. */
function smallDisk(): string | null {
  if (process.getuid?.() !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), 'baton-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  cleanups.push(() => {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Writes `file` until the disk is full. */
function fill(file: string): void {
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeFileSync(file, chunk, { flag: 'a' });
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  }
}

/**
 * An embedded store on a small disk, about 2 MB of messages in its WAL (committed at once: the
 * thread's checkpoint comes a second later and must grow the database file to copy them), then
 * the disk filled by `filler`; what the store said is in `said`. Null where no tmpfs can be mounted.
 */
async function fullDisk(): Promise<{
  b: EmbeddedBackend;
  said: string[];
  key: ReturnType<typeof newKey>;
  filler: string;
  dir: string;
} | null> {
  const dir = smallDisk();
  if (dir === null) return null;
  const said: string[] = [];
  const b = new EmbeddedBackend({
    dataDir: dir,
    bufferMs: 60_000,
    dedupeTtlSec: 3600,
    onWarning: (m) => said.push(`warn: ${m}`),
    onInfo: (m) => said.push(`info: ${m}`),
  });
  await b.init();
  cleanups.unshift(() => b.close());
  const key = newKey();
  const body = 'x'.repeat(500);
  for (let i = 0; i < 10; i += 1) {
    const batch = Array.from({ length: 100 }, (_, j) => text(key, `${body} ${i}-${j}`));
    await b.ingest({ messages: batch, statuses: [] });
  }
  const filler = join(dir, 'filler');
  fill(filler);
  return { b, said, key, filler, dir };
}

it.skipIf(process.getuid?.() !== 0)(
  'a checkpoint that fails on a full disk is tried again, said once, and its recovery too (outside test QA94-F5)',
  async (ctx) => {
    const full = await fullDisk();
    if (full === null) return ctx.skip('this machine lets no tmpfs be mounted');
    const { b, said, filler, dir } = full;
    await until('a failed checkpoint', () => (b.checkpoints?.failed ?? 0) > 0, 10_000);
    expect(said.filter((m) => m.startsWith('warn:'))).toHaveLength(1);
    expect(said[0]).toMatch(/^warn: checkpoint failed: .*full.*tried again/i);
    // Still the thread's work, not the event loop's.
    expect(b.checkpoints).not.toBeNull();

    unlinkSync(filler);
    await until(
      'a checkpoint after the space came back',
      () => said.some((m) => m.startsWith('info:')),
      10_000,
    );
    expect(said.at(-1)).toMatch(/^info: WAL checkpoints work again .* after \d+ failed$/);
    const s = b.checkpoints!;
    expect(s.checkpointed).toBe(s.log);
    // Every message is in the database file itself.
    const copy = join(tmpdir(), `baton-full-copy-${process.pid}.sqlite`);
    copyFileSync(join(dir, 'baton.sqlite'), copy);
    cleanups.push(() => rmSync(copy, { force: true }));
    const db = new Database(copy, { readonly: true });
    try {
      expect(db.prepare('SELECT COUNT(*) AS n FROM inbound').get()).toEqual({ n: 1000 });
    } finally {
      db.close();
    }
  },
  30_000,
);

it.skipIf(process.getuid?.() !== 0)(
  'a commit that gets through once space is freed brings the next checkpoint forward, past the retries backing off (outside test QA120-F4)',
  async (ctx) => {
    const full = await fullDisk();
    if (full === null) return ctx.skip('this machine lets no tmpfs be mounted');
    const { b, said, key, filler } = full;
    // Five failures in a row (after 0, 1, 3, 7 and 15 s): the next try waits 16 s.
    await until('five failed checkpoints', () => (b.checkpoints?.failed ?? 0) >= 5, 30_000);
    unlinkSync(filler);
    // A webhook stored: the disk has room, and the WAL grows until a checkpoint copies it.
    await b.ingest({ messages: [text(key, 'room again')], statuses: [] });
    const stored = Date.now();
    await until('a checkpoint soon after the commit', () => said.some((m) => m.startsWith('info:')), 20_000);
    expect(Date.now() - stored).toBeLessThan(8_000);
    expect(said.at(-1)).toMatch(/^info: WAL checkpoints work again .* after 5 failed$/);
  },
  60_000,
);

it.skipIf(process.getuid?.() !== 0)(
  'while the disk refuses writes, health says writes: false, and true again once one is durable (outside test QA120-F3)',
  async (ctx) => {
    const full = await fullDisk();
    if (full === null) return ctx.skip('this machine lets no tmpfs be mounted');
    const { b, key, filler } = full;
    expect(await b.health()).toEqual({ sqlite: true });
    // A write that needs the disk: refused, and the store says so (reads still answer).
    const big = Array.from({ length: 200 }, (_, j) => text(key, `${'y'.repeat(2000)} ${j}`));
    await expect(b.ingest({ messages: big, statuses: [] })).rejects.toThrow(/SQLite/);
    expect(await b.health()).toEqual({ sqlite: true, writes: false });
    unlinkSync(filler);
    await b.ingest({ messages: [text(key, 'room again')], statuses: [] });
    expect(await b.health()).toEqual({ sqlite: true });
  },
  60_000,
);
