/**
 * `baton load`: the load and chaos generator (SPEC section 6) from the command line; loaded
 * lazily by `src/cli/load.ts`, so a Baton that never runs `load` never loads it. Drives
 * simulated users through the reference bot against a running Baton, shows a progress bar on
 * stderr and prints a closing verdict. Exit code 0 when the verdict is clean, 1 when it is not
 * (or the target cannot be reached), 2 on a usage error.
 *
 * The target Baton must send its replies to the generator's sink, so start it with
 * `WHATSAPP_API_BASE_URL=http://127.0.0.1:<sink-port>` (default port 4010), the same
 * `WHATSAPP_APP_SECRET` as `--secret` and the same `ADMIN_TOKEN` as `--admin-token`.
 *
 * @example
 * ```sh
 * WHATSAPP_API_BASE_URL=http://127.0.0.1:4010 WHATSAPP_APP_SECRET=s ADMIN_TOKEN=t npx baton start &
 * npx baton load --url http://127.0.0.1:3000 --secret s --admin-token t --users 200 --chaos
 * ```
 * @module
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { freePort } from './ports.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLoadFlags, LoadUsageError, type LoadFlags, type LoadIO } from '../src/cli/load.ts';

export type { LoadIO } from '../src/cli/load.ts';
import { readScript, type ConversationScript } from '../src/simulate/script.ts';
import { scriptProblems } from './script.ts';
import { startShopStub, type ShopStub, type ShopStubStats } from '../src/simulate/shop-stub.ts';
import { startReplySink, type ReplySink } from './sink.ts';
import { DEFAULT_CHANNEL, LoadError, runLoad, type LoadProgress, type LoadReport } from './index.ts';

interface Parsed {
  readonly url: string;
  readonly users: number;
  readonly duplicates: number;
  readonly retaps: number;
  readonly shuffle: boolean;
  readonly split: boolean;
  readonly concurrent: boolean;
  readonly secret: string | undefined;
  readonly adminToken: string;
  readonly sinkPort: number;
  readonly sinkHost: string;
  /** The embedded Baton's port (0: a free one). */
  readonly port: number;
  readonly channel: string;
  readonly ramp: number;
  readonly timeout: number;
  readonly maxInflight: number;
  readonly seed: number | undefined;
  /** Workers are killed during the run (`--crashes`). */
  readonly crashes: boolean;
  /** The target's BATON_BUFFER_MS (`--buffer-ms`, else the environment's, else 500). */
  readonly bufferMs: number;
  readonly script: ConversationScript | undefined;
  readonly flow: string | undefined;
  readonly start: boolean;
  readonly shopStub: boolean;
}

/** BATON_BUFFER_MS as the target reads it when `--buffer-ms` is not given: 500 unless set. */
function bufferFromEnv(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return 500;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n > 60_000)
    throw new LoadUsageError(
      `BATON_BUFFER_MS must be a whole number of milliseconds, got "${raw}" (or pass --buffer-ms)`,
    );
  return n;
}

/** Validates the flags; throws a usage error naming the first bad one. */
function parse(given: LoadFlags, env: LoadIO['env']): Parsed {
  // `--flow` with no target URL: an embedded Baton serves the flow.
  const f: LoadFlags = {
    ...given,
    start: given.start === true || (given.flow !== undefined && given.url === undefined),
  };
  const { url, chaos, duplicates, retaps, numbers } = checkLoadFlags(f);
  // Flags that do not go together are named before what is missing (outside test QA13-F3).
  if (f.port !== undefined && (f.url !== undefined || !f.start)) {
    // Without --start it was ignored, and the run went to the default URL (outside test QA11-F7).
    throw new LoadUsageError('--port is for the embedded Baton --start starts; --url names a running one');
  }
  if (f.shopStub === true && !f.start) {
    throw new LoadUsageError('--shop-stub needs --start (a Baton already running has its own ORDER_API_URL)');
  }
  const adminToken = f.adminToken ?? env.ADMIN_TOKEN ?? (f.start ? '' : undefined);
  if (!f.start && (adminToken === undefined || adminToken === '')) {
    throw new LoadUsageError(
      "--admin-token (or ADMIN_TOKEN) is required: the verdict reads Baton's transition logs",
    );
  }
  const secret = f.secret ?? env.WHATSAPP_APP_SECRET;
  let script: ConversationScript | undefined;
  if (f.script !== undefined) {
    try {
      script = readScript(f.script);
    } catch (err) {
      throw new LoadUsageError((err as Error).message);
    }
    const problems = scriptProblems(script);
    if (problems.length > 0) throw new LoadUsageError(`script ${f.script}: ${problems[0]!}`);
  }
  // A script's `stubs` say what an embedded Baton it starts needs; a Baton already running (`--url`)
  // has its own ORDER_API_URL.
  const shopStub = f.shopStub === true || (f.start === true && (script?.stubs ?? []).includes('shop'));
  return {
    script,
    flow: f.flow,
    start: f.start === true,
    shopStub,
    url: url.toString().replace(/\/+$/, ''),
    users: numbers.users,
    duplicates,
    retaps,
    shuffle: chaos || f.shuffle === true,
    split: chaos || f.split === true,
    concurrent: chaos || f.concurrent === true,
    secret: secret === '' ? undefined : secret,
    adminToken: adminToken ?? '',
    sinkPort: numbers.sinkPort,
    sinkHost: f.sinkHost ?? '127.0.0.1',
    port: numbers.port,
    channel: f.channel ?? DEFAULT_CHANNEL.phoneNumberId,
    ramp: numbers.ramp,
    timeout: numbers.timeout,
    maxInflight: numbers.maxInflight,
    seed: numbers.seed,
    crashes: f.crashes === true,
    bufferMs: numbers.bufferMs ?? bufferFromEnv(env.BATON_BUFFER_MS),
  };
}

/** One progress line: a bar over messages sent, then replies and users. */
export function progressLine(p: LoadProgress, width = 24): string {
  const done = p.planned === 0 ? 1 : (p.sent + p.replies) / (p.planned + p.repliesPlanned);
  const filled = Math.round(Math.min(1, done) * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  const phase = p.phase === 'running' ? '' : ` ${p.phase}...`;
  return (
    `[${bar}] ${String(Math.floor(done * 100)).padStart(3)}%  ` +
    `msgs ${p.sent}/${p.planned}  replies ${p.replies}/${p.repliesPlanned}  ` +
    `users ${p.usersDone}/${p.users}${p.usersGaveUp > 0 ? ` (${p.usersGaveUp} gave up)` : ''}  ` +
    `${(p.elapsedMs / 1000).toFixed(1)}s${phase}`
  );
}

const ms = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/** The closing report, as lines. */
export function formatReport(r: LoadReport, chaosLabel: string, goal = 'completed their order'): string[] {
  const v = r.verdict;
  const row = (label: string, n: number, detail = ''): string =>
    `  ${label.padEnd(18)} ${String(n).padStart(6)}${detail ? `   ${detail}` : ''}`;
  const lines = [
    `baton load: ${v.users} users, ${v.messages.sent}/${v.messages.planned} messages sent, ` +
      `${v.messages.acked} acknowledged; chaos: ${chaosLabel}; seed ${r.seed}`,
    `  throughput         ${r.messagesPerSec.toFixed(1)} msg/s end to end over ${(r.durationMs / 1000).toFixed(2)} s`,
    `  webhook ack        p50 ${ms(r.ack.p50)} ms   p99 ${ms(r.ack.p99)} ms   (${r.ack.count} deliveries)`,
    `  reply latency      p50 ${ms(r.reply.p50)} ms   p99 ${ms(r.reply.p99)} ms   (${r.reply.count} replies)`,
    `verdict: ${v.clean ? 'CLEAN' : 'NOT CLEAN'} (${v.usersCompleted}/${v.users} users ${goal})`,
    ...(v.adminUnreachable !== null
      ? [
          `  admin API unreachable: ${v.adminUnreachable}`,
          '  (verdict from what the load generator saw: transition logs and sessions not checked)',
        ]
      : []),
    row('lost', v.lost, `${v.lostMessages} messages, ${v.lostReplies} replies never came`),
    ...(v.pendingMessages + v.waitingReplies > 0
      ? [
          row(
            'pending in Baton',
            v.pendingMessages,
            `messages stored, not yet processed; ${v.waitingReplies} replies wait on them`,
          ),
        ]
      : []),
    row('duplicated', v.duplicated, `${v.reprocessed} processed twice, ${v.resent} replies sent twice`),
    ...(v.crashResends > 0
      ? [
          row(
            'resent at a crash',
            v.crashResends,
            'allowed (--crashes): a kill between a send and its record',
          ),
        ]
      : []),
    ...(v.splitByOutage > 0
      ? [
          row(
            'split by an outage',
            v.splitByOutage,
            'allowed (--crashes): a burst stored further apart than the window, its older part late',
          ),
        ]
      : []),
    ...(v.splitByIntake > 0
      ? [
          row(
            'split over windows',
            v.splitByIntake,
            'allowed (SPEC 1.5): a burst Baton stored further apart than its window (--buffer-ms); a part that came where the first led is a retry there, its prompt owed; an older part is late, and the reply its step owed never comes',
          ),
        ]
      : []),
    ...(v.deadLetteredReplies > 0
      ? [
          row(
            'replies given up',
            v.deadLetteredReplies,
            'never came: in the dead letters with the reason (GET /admin/api/dead-letters), for an agent to replay; ' +
              'allowed with --crashes when two attempts may have delivered it (Baton does not risk a third copy), else a failure',
          ),
        ]
      : []),
    ...(v.lateReplies > 0
      ? [
          row(
            'late replies',
            v.lateReplies,
            'came after --timeout: slow, not lost (those users stopped there; raise --timeout)',
          ),
        ]
      : []),
    row('out of order', v.outOfOrder),
    row('duplicate prompts', v.duplicatePrompts),
    row('wrong replies', v.wrongReplies),
    row('version errors', v.versionErrors),
    row('uncommitted sends', v.uncommittedReplies, 'replies for a state the transition log does not have'),
    row(
      'rejected webhooks',
      v.messages.rejected,
      v.unowedReplies > 0
        ? `${v.unowedReplies} users stopped at a reply to messages Baton acknowledged none of (not counted lost)`
        : undefined,
    ),
    `  (info) late ${v.late}, stale notices ${v.staleNotices}, dead letters ${v.deadLettered} of messages` +
      (v.deadLetteredReplies > 0 ? `, ${v.deadLetteredReplies} of replies` : ''),
  ];
  if (v.problems.length > 0) lines.push('problems (first ones):', ...v.problems.map((p) => `  - ${p}`));
  if (v.givenUp.length > 0) lines.push('replies given up (first ones):', ...v.givenUp.map((p) => `  - ${p}`));
  if (r.hints.length > 0) lines.push('hints:', ...r.hints.map((h) => `  - ${h}`));
  return lines;
}

/**
 * Runs `baton load` with parsed commander flags; returns the exit code.
 *
 * @example
 * ```ts
 * const code = await runLoadCommand({ url: 'http://127.0.0.1:3000', adminToken: 't', users: '10' });
 * ```
 */
export async function runLoadCommand(flags: LoadFlags, given: Partial<LoadIO> = {}): Promise<number> {
  const io: LoadIO = {
    out: (line) => console.log(line),
    err: (text) => process.stderr.write(text),
    tty: process.stderr.isTTY,
    env: process.env,
    ...given,
  };
  let o: Parsed;
  try {
    o = parse(flags, io.env);
  } catch (err) {
    if (err instanceof LoadUsageError) {
      io.err(`baton: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const chaosLabel =
    [
      o.duplicates > 0 ? `duplicates ${Math.round(o.duplicates * 100)}%` : '',
      o.retaps > 0 && !o.script ? `retaps ${Math.round(o.retaps * 100)}%` : '',
      o.shuffle ? 'shuffle' : '',
      o.split && !o.script ? 'split' : '',
      o.concurrent ? 'concurrent' : '',
    ]
      .filter(Boolean)
      .join(', ') || 'none';

  let lastPrinted = 0;
  let lastPhase: LoadProgress['phase'] = 'running';
  const showProgress = flags.progress !== false;
  const onProgress = (p: LoadProgress): void => {
    if (!showProgress) return;
    if (io.tty) io.err(`\r${progressLine(p)}\x1b[K`);
    else if (p.elapsedMs - lastPrinted >= 2000 || p.phase !== lastPhase) {
      lastPrinted = p.elapsedMs;
      lastPhase = p.phase;
      io.err(`${progressLine(p)}\n`);
    }
  };
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  let report: LoadReport;
  let target: StartedTarget | undefined;
  let shop: ShopStubStats | undefined;
  try {
    if (o.start) target = await startTarget(o, io.env);
    else if (o.flow !== undefined) await checkEnd(o, io.env, io.err);
    const url = target?.url ?? o.url;
    io.err(
      `baton load: ${o.users} users against ${url}${o.start ? ' (embedded)' : ''}` +
        `${o.script ? `, each playing ${flags.script ?? 'the script'}` : ''}` +
        `; replies expected at ${target?.sink.url ?? `http://${o.sinkHost}:${o.sinkPort}`}\n`,
    );
    report = await runLoad({
      url,
      adminToken: target?.adminToken ?? o.adminToken,
      secret: target?.secret ?? o.secret,
      users: o.users,
      chaos: {
        duplicates: o.duplicates,
        retaps: o.retaps,
        shuffle: o.shuffle,
        splitTexts: o.split,
        concurrentBursts: o.concurrent,
      },
      channel: { ...DEFAULT_CHANNEL, phoneNumberId: o.channel },
      rampMs: o.ramp,
      crashes: o.crashes,
      bufferMs: o.bufferMs,
      replyTimeoutMs: o.timeout,
      maxInflight: o.maxInflight,
      ...(target ? { sink: target.sink } : { sinkPort: o.sinkPort, sinkHost: o.sinkHost }),
      ...(o.script ? { script: o.script } : {}),
      onProgress,
      signal: abort.signal,
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
    });
    shop = target?.shop?.stats();
  } catch (err) {
    if (showProgress && io.tty) io.err('\n');
    const e = err as NodeJS.ErrnoException;
    if (err instanceof LoadError) io.err(`baton: ${err.message}\n`);
    else if (err instanceof LoadUsageError) {
      io.err(`baton: ${err.message}\n`);
      return 2;
    } else if (e.code === 'EADDRINUSE') {
      // Which of the two: the embedded Baton's --port, or the sink's (outside test QA11-F2).
      const port = (e as { port?: number }).port;
      io.err(
        o.start && o.port !== 0 && port === o.port
          ? `baton: --port ${o.port} is in use (choose another, or leave --port out for a free one)\n`
          : `baton: sink port ${port ?? o.sinkPort} is in use (choose --sink-port)\n`,
      );
    } else io.err(`baton: ${e.message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    await target?.stop();
  }
  if (showProgress && io.tty) io.err('\n');
  const shopClean = shop === undefined || (shop.ordersCancelledTwice.length === 0 && shop.withoutKey === 0);
  if (flags.json)
    io.out(JSON.stringify({ ...report, chaos: chaosLabel, ...(shop ? { shop } : {}) }, null, 2));
  else {
    for (const line of formatReport(report, chaosLabel, o.script ? 'completed the script' : undefined))
      io.out(line);
    if (shop) {
      io.out(
        `shop stub: ${shop.lookups} lookups, ${shop.cancels} cancel effects, ` +
          `${shop.ordersCancelledTwice.length} orders cancelled by two effects, ${shop.withoutKey} requests without Idempotency-Key`,
      );
    }
  }
  if (abort.signal.aborted) {
    io.err('baton: interrupted; the verdict covers what was sent\n');
    return 1;
  }
  return report.verdict.clean && shopClean ? 0 : 1;
}

interface StartedTarget {
  readonly url: string;
  readonly adminToken: string;
  readonly secret: string;
  readonly sink: ReplySink;
  readonly shop: ShopStub | undefined;
  stop(): Promise<void>;
}

/**
 * Refuses a script whose end step no flow of the module has (a typo would fail every user). With
 * `--url`, where a running Baton has the flows and its own environment, a module that cannot load
 * here (the order-status example wants ORDER_API_URL) is said and the check skipped: it stopped
 * the run before any user (outside test QA115-F1). With `--start` this process starts Baton on it:
 * a failure to load it is one.
 */
async function checkEnd(o: Parsed, env: LoadIO['env'], note?: (line: string) => void): Promise<void> {
  const end = o.script?.end?.step;
  if (end === undefined) return;
  const { loadFlows } = await import('../src/app.ts');
  let flows;
  try {
    flows = await loadFlows(o.flow ?? env.BATON_FLOWS, o.flow !== undefined ? '--flow' : 'BATON_FLOWS');
  } catch (err) {
    if (note !== undefined) {
      note(
        `baton load: the script's end step "${end}" is not checked: ${o.flow ?? 'BATON_FLOWS'} does not load here (${(err as Error).message})\n`,
      );
      return;
    }
    // A module that is there but fails to load is a failure (exit 1), as for `flow graph` and
    // `simulate --start`; not a mistake in the command line (outside test QA35-F6).
    throw new Error(`cannot load the flow to check the script: ${(err as Error).message}`, { cause: err });
  }
  if (!flows.some((f) => f.steps.has(end))) {
    throw new LoadUsageError(
      `the script ends at step "${end}", which no flow of ${o.flow ?? 'BATON_FLOWS'} has`,
    );
  }
}

/**
 * `--start`: the sink, the shop stub when asked, and an embedded Baton sending to the sink, in a
 * process of its own (`baton start` from the sources): in this one, the generator's own work
 * held its webhooks back, on a busy machine past the buffer window, and the verdict blamed Baton
 * for bursts the generator split (outside test QA18-F5: 3 runs of 8 with `--chaos` not clean, ack
 * p99 up to 2.6 s; against a Baton of its own, 6 of 6 clean).
 */
async function startTarget(o: Parsed, env: LoadIO['env']): Promise<StartedTarget> {
  const cleanup: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  };
  try {
    const shop = o.shopStub ? await startShopStub() : undefined;
    if (shop) {
      cleanup.push(() => shop.close());
      // The example reads ORDER_API_URL when its module is loaded (here too: see checkEnd).
      process.env.ORDER_API_URL = shop.url;
    }
    if (o.script?.end !== undefined) {
      await checkEnd(o, env);
    }
    const sink = await startReplySink({ port: o.sinkPort });
    cleanup.push(() => sink.close());
    const dir = mkdtempSync(join(tmpdir(), 'baton-load-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const secret = randomBytes(12).toString('hex');
    const adminToken = randomBytes(12).toString('hex');
    const flows = o.flow ?? env.BATON_FLOWS;
    const port = o.port !== 0 ? o.port : await freePort();
    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      PORT: String(port),
      HOST: '127.0.0.1',
      BATON_DATA_DIR: dir,
      WHATSAPP_API_BASE_URL: sink.url,
      WHATSAPP_APP_SECRET: secret,
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'silent',
      // Baton's own default window (500 ms) unless the environment sets one.
      ...(flows !== undefined ? { BATON_FLOWS: flows } : {}),
      ...(shop ? { ORDER_API_URL: shop.url } : {}),
    };
    for (const name of ['REDIS_URL', 'DATABASE_URL', 'BATON_REDIS_CLUSTER', 'AMQP_URL'])
      delete childEnv[name];
    const baton = await startChild(['start', '--concurrency', '16'], childEnv, port).catch((err: unknown) => {
      // The child was given --flow as BATON_FLOWS: its error says what the user typed.
      if (o.flow !== undefined && err instanceof LoadError)
        err.message = err.message.replace(/\bBATON_FLOWS:/, '--flow:');
      throw err;
    });
    cleanup.push(() => baton.stop());
    return { url: `http://127.0.0.1:${port}`, adminToken, secret, sink, shop, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `baton` from the sources (scripts/baton-dev.mjs), as a child process. */
const BATON_DEV = fileURLToPath(new URL('../scripts/baton-dev.mjs', import.meta.url));

/**
 * Starts `baton <args>` and resolves once it answers `/healthz` on `port`; a child that exits
 * first rejects with its last line (a taken `--port` as EADDRINUSE, said so by the caller).
 */
async function startChild(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  port: number,
): Promise<{ stop(): Promise<void> }> {
  const child = spawn(process.execPath, [BATON_DEV, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  child.stderr.on('data', (d: Buffer) => (said = (said + d.toString('utf8')).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // The generator stopped (Ctrl-C twice, an error) must not leave its Baton behind.
  const orphan = (): void => void child.kill('SIGKILL');
  process.once('exit', orphan);
  const stop = async (): Promise<void> => {
    process.off('exit', orphan);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      const last = said.trim().split('\n').pop() ?? '';
      if (/already in use/.test(last)) throw Object.assign(new Error(last), { code: 'EADDRINUSE', port });
      throw new LoadError(`the embedded Baton did not start: ${last.replace(/^baton: /, '')}`);
    }
    try {
      // (Bounded: something else listening on a port taken may never answer.)
      const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (r.status === 200) return { stop };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new LoadError(`the embedded Baton did not answer on port ${port} within 60 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
