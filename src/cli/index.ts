/**
 * The `baton` command line (SPEC section 6). `run(argv)` returns the exit code:
 * 0 success, 1 failure, 2 usage error.
 * @module
 */
import { readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { Command, CommanderError } from 'commander';
import { amqpAddress } from '../ingress/amqp-intake.ts';
import { isLoopback } from '../ingress/server.ts';
import { createBaton, type BatonOptions } from '../app.ts';
import { versionLine } from '../build-info.ts';
import { EmbeddedBackend } from '../backends/embedded/index.ts';
import { parseDotEnv } from '../config/dotenv.ts';
import { loadConfig, MIN_PRODUCTION_ADMIN_TOKEN, misspeltVariables, type Config } from '../config/index.ts';
import { BatonError, ConfigError } from '../errors.ts';
import { sessionNamedBy, toSessionView } from '../model/session.ts';
import { WaIdParams } from '../admin/schemas.ts';
import { LocalAdminClient, readLocalHandle } from '../admin/local-handle.ts';
import { configureLoadCommand, runLoadCommand, type LoadFlags } from './load.ts';
import { formatOfFile, GRAPH_FORMATS, runFlowGraph, type GraphFlags } from './graph.ts';
import {
  configureSimulateCommand,
  runSimulateCommand,
  SimulateUsageError,
  type SimulateFlags,
} from './simulate.ts';
import { watchParent } from './parent-watch.ts';
import { oneShotLogger, sessionStore } from './store.ts';
import { terminalSafeJson, terminalSafeText } from '../terminal.ts';

/** Loads `.env` if present (values already in the environment win; see config/dotenv.ts). */
function loadDotEnv(): void {
  let text: string;
  try {
    text = readFileSync('.env', 'utf8');
  } catch {
    return; // no .env: fine
  }
  for (const [name, value] of Object.entries(parseDotEnv(text))) {
    if (process.env[name] === undefined) process.env[name] = value;
  }
}

/**
 * Settings that are valid one by one but do nothing: alert thresholds with nowhere to send the
 * alert, an alert address with no threshold, and variables that look like misspellings of ones
 * Baton reads (outside test QA32-F3: a misspelt threshold left alerting silently off).
 */
export function configWarnings(config: Config, env: Readonly<Record<string, string | undefined>>): string[] {
  const warnings = misspeltVariables(env).map(
    ({ name, near }) => `${name} is set, but Baton reads no such variable: did you mean ${near}?`,
  );
  const { alert } = config;
  const thresholds = (
    [
      ['BATON_ALERT_QUEUE_DEPTH', alert.queueDepth],
      ['BATON_ALERT_OLDEST_MS', alert.oldestMs],
      ['BATON_ALERT_UNSENT_MS', alert.unsentMs],
      ['BATON_ALERT_WORKERS', alert.workers ? true : undefined],
    ] as const
  ).flatMap(([name, value]) => (value === undefined ? [] : [name]));
  if (alert.webhookUrl === undefined && thresholds.length > 0)
    warnings.push(`${thresholds.join(', ')} set, but BATON_ALERT_WEBHOOK_URL is not: no alert will be sent.`);
  if (alert.webhookUrl !== undefined && thresholds.length === 0)
    warnings.push(
      'BATON_ALERT_WEBHOOK_URL is set, but no alert is: set BATON_ALERT_QUEUE_DEPTH, BATON_ALERT_OLDEST_MS, BATON_ALERT_UNSENT_MS or BATON_ALERT_WORKERS.',
    );
  // The secret wins: an operator who set this to let a test harness post unsigned got 401s and no
  // word why (outside test QA139-F2).
  if (config.allowUnsigned && config.whatsapp.appSecret !== undefined)
    warnings.push(
      'BATON_ALLOW_UNSIGNED=true does nothing while WHATSAPP_APP_SECRET is set: POST /webhooks/whatsapp takes only requests signed with the secret (unset it to take unsigned ones).',
    );
  // The key alone turns nothing on: the route answers 404 without a secret (outside test QA80-F6).
  if (config.wasender.apiKey !== undefined && config.wasender.webhookSecret === undefined)
    warnings.push(
      'WASENDER_API_KEY is set, but WASENDER_WEBHOOK_SECRET is not: POST /webhooks/wasender answers 404 until it is (set it to the webhook secret of your WASender session).',
    );
  return warnings;
}

/**
 * The warning for an `ADMIN_TOKEN` shorter than production's minimum on an address other
 * machines can reach (the default HOST, 0.0.0.0, among them), or undefined. Outside production
 * such a token is allowed, for a quick local try, but on the network ten guesses a minute per
 * address find a short one (outside test QA64-F5: README's `ADMIN_TOKEN=admin` was accepted from
 * the network without a word).
 */
export function shortAdminTokenWarning(config: Config): string | undefined {
  const token = config.adminToken;
  if (token === undefined || token.length >= MIN_PRODUCTION_ADMIN_TOKEN || loopbackHost(config.host))
    return undefined;
  return `ADMIN_TOKEN is ${token.length} characters and HOST=${config.host} takes connections from other machines: anyone who can reach this port can guess it at the dashboard or the admin API. Use at least ${MIN_PRODUCTION_ADMIN_TOKEN} characters, or HOST=127.0.0.1.`;
}

/** Whether HOST is an address only this machine reaches: `localhost`, 127.0.0.0/8 or ::1. */
function loopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || isLoopback(h);
}

class UsageError extends Error {}

/**
 * An option's parser that refuses the option given twice (a usage error): commander keeps the
 * last, and `--channel a --channel b` looked up one channel and said "No session" (outside test
 * QA110-F2), where the admin API answers a parameter given twice `400`.
 */
function once(flag: string): (value: string, previous: string | undefined) => string {
  return (value, previous) => {
    if (previous !== undefined) throw new UsageError(`${flag} given twice ("${previous}", "${value}")`);
    return value;
  };
}

/** The command `argv` names, as typed: `baton session show` (options and arguments left out). */
function commandPath(program: Command, argv: readonly string[]): string {
  const path = [program.name()];
  let command = program;
  for (const word of argv) {
    if (word.startsWith('-')) continue;
    const sub = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub === undefined) break;
    path.push(word);
    command = sub;
  }
  return path.join(' ');
}

/** The dedupe window SPEC 1.2 asks for: Meta redelivers a webhook for up to 7 days. */
const DEDUPE_SPEC_SEC = 7 * 86_400;

/** `--channel`'s help: how each provider's channels are written (outside test QA129-F2). */
const CHANNEL_HELP =
  "the session's channel when the user has several: a Cloud API phone_number_id, or wasender:<sessionId>";

/**
 * Writes an error on stderr, what a terminal would act on escaped: a message may quote a user's
 * text or the running process's answer (outside test QA64-F4).
 */
function errorLine(line: string): void {
  process.stderr.write(`${terminalSafeText(line)}\n`);
}

/**
 * A parse error of commander's on one line, with where help is:
 * `baton: unknown command "bogus" (see baton --help)`.
 */
function usageLine(err: CommanderError, program: Command, argv: readonly string[]): string {
  const [first = 'usage error', ...more] = err.message
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const what = first.replace(/'([^']*)'/g, '"$1"').replace(/\.$/, '');
  // commander's suggestion, "(Did you mean start?)".
  // `baton version`: the flag is what is meant, not the command commander finds nearest
  // (outside test QA70-F9: "did you mean session?").
  const suggestion =
    err.code === 'commander.unknownCommand' && argv[0] === 'version'
      ? 'did you mean --version?'
      : more
          .join(' ')
          .replace(/^\((.*)\)$/, '$1')
          .replace(/^Did/, 'did');
  const help = `see ${commandPath(program, argv)} --help`;
  return `baton: ${what} (${suggestion === '' ? '' : `${suggestion} `}${help})`;
}

/** A listen failure that names the variables to change (PORT, HOST). */
function listenError(err: unknown, config: Config, ingress: boolean): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  // A worker listens only on its probe port.
  const [name, port] = ingress ? ['PORT', config.port] : ['BATON_HEALTH_PORT', config.healthPort];
  const at = `${config.host}:${port}`;
  if (code === 'EADDRINUSE') return new ConfigError(name, `${at} is already in use`);
  if (code === 'EACCES') return new ConfigError(name, `no permission to listen on ${at}`);
  if (code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL' || code === 'EAI_AGAIN')
    return new ConfigError('HOST', `cannot listen on ${at}: no such local address`);
  return err;
}

/**
 * Lowers this process's CPU priority to the Unix nice value `nice` (never raises it: that needs
 * privileges). A worker sharing a machine with an ingress yields the CPU to it, so webhooks are
 * stored and answered first when the machine is saturated, and the backlog waits in the store.
 */
function lowerPriority(nice: number, out: (s: string) => void): void {
  if (nice === 0) return;
  try {
    if (getPriority() < nice) setPriority(nice);
  } catch (err) {
    out(`Baton: could not lower the CPU priority to nice ${nice} (${String(err)}); running as is`);
  }
}

async function serve(config: Config, opts: BatonOptions, out: (s: string) => void): Promise<number> {
  // Warnings go to stderr, apart from what the process reports doing (outside test QA58-F7).
  const warn = (s: string): void => void process.stderr.write(`${s}\n`);
  const baton = await createBaton(config, opts);
  // Last line of defence: a rejection nobody handled is a bug, logged, and never a crash that
  // would take intake down with it.
  const onUnhandled = (reason: unknown): void => {
    baton.logger.error({ err: reason }, 'unhandled promise rejection (a bug); still serving');
  };
  process.on('unhandledRejection', onUnhandled);
  // Listen for the stop signals before saying "started": whoever waits for that line may
  // signal at once.
  let stopWaiting = (): void => undefined;
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      unwatch();
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    const unwatch = watchParent(() => {
      out('Baton: the npm process that started it is gone');
      stop();
    });
    stopWaiting = stop;
  });
  let url: string | null;
  try {
    url = await baton.start();
  } catch (err) {
    // Nothing is served: stop what did start (workers, store connections, the data directory's
    // lock) so the process exits with the error instead of lingering.
    stopWaiting();
    process.off('unhandledRejection', onUnhandled);
    await baton.stop().catch(() => undefined);
    throw listenError(err, config, opts.roles?.ingress !== false);
  }
  if (url && !config.whatsapp.enabled) {
    warn(
      'WHATSAPP_APP_SECRET is not set: POST /webhooks/whatsapp is off (404) under NODE_ENV=production; webhooks come from WASender alone. Set it to take Cloud API webhooks too.',
    );
  } else if (url && config.whatsapp.appSecret === undefined) {
    warn(
      config.allowUnsigned
        ? "WARNING: WHATSAPP_APP_SECRET is not set and BATON_ALLOW_UNSIGNED=true: POST /webhooks/whatsapp accepts UNSIGNED requests from anywhere, so anyone who can reach this port can write to any user's session. Set it to your Meta app secret."
        : 'WARNING: WHATSAPP_APP_SECRET is not set: POST /webhooks/whatsapp accepts unsigned requests from a loopback address only (127.0.0.1, ::1; others get 401). Set it to your Meta app secret before Meta can reach this port.',
    );
  }
  // Not on WASender alone (the Cloud API route off: no Cloud API user to reply to; outside test
  // QA110-F1).
  if (
    config.whatsapp.enabled &&
    config.whatsapp.accessToken === undefined &&
    config.whatsapp.apiBaseUrl.includes('graph.facebook.com')
  ) {
    warn(
      'WARNING: WHATSAPP_ACCESS_TOKEN is not set: the Graph API will refuse every reply to Cloud API users (each dead-lettered with its error). Set it, or point WHATSAPP_API_BASE_URL at a test double.',
    );
  }
  // Only a process serving HTTP serves the admin API (a worker listens on its probe port alone).
  const tokenWarning = url ? shortAdminTokenWarning(config) : undefined;
  if (tokenWarning !== undefined) warn(`WARNING: ${tokenWarning}`);
  for (const w of configWarnings(config, process.env)) warn(`WARNING: ${w}`);
  if (config.dedupeTtlSec < DEDUPE_SPEC_SEC) {
    warn(
      `WARNING: BATON_DEDUPE_TTL is ${config.dedupeTtlSec} s, under the 7 days Meta may redeliver a webhook for (SPEC 1.2): a redelivery older than it could not be told from a new message, so in a conversation a message stamped older than it, and no newer than the last one, is recorded late and never applied.`,
    );
  }
  if (baton.queue) {
    out(
      `RabbitMQ intake: webhooks ${url ? 'queued to' : 'consumed from'} "${config.amqpQueue}" at ${amqpAddress(config.amqpUrl!)}`,
    );
  }
  if (url) {
    const base = url.replace('0.0.0.0', 'localhost').replace('[::]', 'localhost');
    // On every address, say so: the URL Fastify gives is one of them, 127.0.0.1 (outside test
    // QA77-F6: `HOST=0.0.0.0` printed "listening on http://127.0.0.1:...").
    const { port } = new URL(url);
    const where =
      config.host === '0.0.0.0'
        ? `http://0.0.0.0:${port} (every address; on this machine ${url})`
        : config.host === '::'
          ? `http://[::]:${port} (every address; on this machine http://[::1]:${port})`
          : url;
    out(`Baton ${versionLine()} (${baton.backend.kind}) listening on ${where}`);
    const [first, ...others] = baton.engine.flowsServed;
    out(`Flows: ${first} (new sessions start here)${others.length > 0 ? `, ${others.join(', ')}` : ''}`);
    out(
      `Dashboard: ${base}/admin  admin token: ${baton.adminTokenGenerated ? baton.adminToken + ' (generated; set ADMIN_TOKEN to fix it)' : '(from ADMIN_TOKEN)'}`,
    );
  } else {
    // Which flow versions it runs: during a rolling deploy, the operator tells old workers from new
    // (outside test QA109-F3).
    out(
      `Baton ${versionLine()} worker (${baton.backend.kind}) ${baton.engine.workerId} started; flows: ${baton.engine.flowsServed.join(', ')}`,
    );
  }
  await stopped;
  // An ingress has webhooks in hand, not batches (outside test QA89-F5).
  out(
    opts.roles?.worker === false
      ? 'Baton stopping: answering the webhooks in hand'
      : 'Baton stopping: finishing batches in hand',
  );
  await baton.stop();
  process.off('unhandledRejection', onUnhandled);
  return 0;
}

/** Runs the CLI with `argv` (without node and script). */
export async function run(argv: string[], out: (s: string) => void = (s) => console.log(s)): Promise<number> {
  try {
    loadDotEnv();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`baton: configuration error: ${err.message}\n`);
    return 1;
  }
  // Commander prints the version wherever the flag is and ignores the rest: `baton --version
  // extra` exited 0 where every other stray argument is a usage error (outside test QA105-F2).
  const options = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (options.some((a) => a === '-V' || a === '--version') && argv.length > 1) {
    const rest = argv.filter((a) => a !== '-V' && a !== '--version');
    errorLine(
      `baton: --version takes nothing else${rest.length > 0 ? ` (got "${rest.join(' ')}")` : ' (given twice)'}`,
    );
    return 2;
  }
  let code = 0;
  const config = (): Config => loadConfig(process.env);
  const program = new Command('baton')
    .description('Baton: WhatsApp conversations kept on the right step under any traffic')
    .version(versionLine(), '-V, --version', 'print the version (and the commit it was built from)')
    .exitOverride()
    .configureOutput({
      // Commander writes only the help it shows for a usage error here (`baton session` without
      // a command): `run` says it in one line instead.
      writeErr: () => undefined,
      writeOut: (s) => process.stdout.write(s),
      // Parse errors are written by `run`, on one line.
      outputError: () => undefined,
    });

  const concurrency = (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 1000)
      throw new UsageError(`--concurrency must be 1..1000, got "${v}"`);
    return n;
  };

  program
    .command('start')
    .description('serve webhooks and run workers in one process')
    .option('--concurrency <n>', 'sessions processed at once', '32')
    .action(async (o: { concurrency: string }) => {
      // The flag first: what the user typed is named before the environment (outside test QA11-F8).
      const n = concurrency(o.concurrency);
      code = await serve(config(), { concurrency: n }, out);
    });
  /** `ingress` and `worker` share their stores with other processes: distributed mode only. */
  const distributed = (command: string): Config => {
    const c = config();
    if (c.redisUrl === undefined || c.databaseUrl === undefined) {
      throw new BatonError(
        'BATON_ERR_NEEDS_DISTRIBUTED',
        `"baton ${command}" needs distributed mode: set REDIS_URL and DATABASE_URL (or run "baton start" for embedded mode)`,
      );
    }
    return c;
  };
  program
    .command('ingress')
    .description('serve webhooks and the admin API only')
    .action(async () => {
      code = await serve(distributed('ingress'), { roles: { ingress: true, worker: false } }, out);
    });
  const nice = (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 19) throw new UsageError(`--nice must be 0..19, got "${v}"`);
    return n;
  };
  program
    .command('worker')
    .description('process sessions only')
    .option('--concurrency <n>', 'sessions processed at once', '32')
    .option(
      '--nice <n>',
      'run at this Unix nice value (0-19): on a machine shared with an ingress, webhooks get the CPU first',
      '0',
    )
    .action(async (o: { concurrency: string; nice: string }) => {
      const opts: BatonOptions = {
        roles: { ingress: false, worker: true },
        concurrency: concurrency(o.concurrency),
      };
      const n = nice(o.nice);
      const c = distributed('worker');
      lowerPriority(n, out);
      code = await serve(c, opts, out);
    });
  program
    .command('migrate')
    .description('create or upgrade the store schema')
    .action(async () => {
      const c = config();
      const baton = await createBaton(c, {
        roles: { ingress: false, worker: false },
        logger: oneShotLogger(c),
      });
      await baton.stop();
      // What it did (QA45-F6: the same line whether or not anything was applied).
      const { backend } = baton;
      if (backend instanceof EmbeddedBackend) {
        // QA66-F4: the embedded store says what it did too.
        const change = backend.schemaChange;
        out(
          change === null || change.from === change.to
            ? `migrated (embedded): already up to date (schema ${change?.to ?? '?'})`
            : change.from === 0
              ? `migrated (embedded): created at schema ${change.to}`
              : `migrated (embedded): upgraded from schema ${change.from} to ${change.to}`,
        );
        return;
      }
      const applied =
        'migrationsApplied' in backend ? (backend.migrationsApplied as readonly string[]) : null;
      out(
        applied === null
          ? `migrated (${baton.backend.kind})`
          : applied.length > 0
            ? `migrated (distributed): applied ${applied.join(', ')}`
            : 'migrated (distributed): already up to date',
      );
    });

  const withBaton = async <T>(fn: (b: Awaited<ReturnType<typeof createBaton>>) => Promise<T>): Promise<T> => {
    const c = config();
    // Its stdout is the command's JSON: logs (a store's warnings) go to stderr.
    const logger = oneShotLogger(c);
    // The store is opened as it is, never migrated: a session command changes no schema.
    const backend = await sessionStore(c, logger);
    let baton: Awaited<ReturnType<typeof createBaton>>;
    try {
      baton = await createBaton(c, {
        roles: { ingress: false, worker: false },
        logger,
        backend,
      });
    } catch (err) {
      await backend.close().catch(() => undefined);
      throw err;
    }
    try {
      return await fn(baton);
    } finally {
      await baton.stop();
    }
  };
  /**
   * Runs a session command on the store itself, or, when an embedded Baton is running on the
   * data directory (its SQLite file has one owner), through that process's admin API.
   */
  const sessionCommand = async (
    local: (b: Awaited<ReturnType<typeof createBaton>>) => Promise<unknown>,
    remote: (client: LocalAdminClient) => Promise<unknown>,
    indent = 2,
  ): Promise<void> => {
    let result: unknown;
    try {
      result = await withBaton(local);
    } catch (err) {
      const handle =
        err instanceof BatonError && err.code === 'BATON_ERR_DATA_DIR_LOCKED'
          ? readLocalHandle(config().dataDir)
          : null;
      if (handle === null) throw err;
      result = await remote(new LocalAdminClient(handle));
    }
    // A user's text, or what the running process answered: inert for the terminal (QA64-F4).
    out(terminalSafeJson(JSON.stringify(result, null, indent)));
  };
  /** A wa_id (or `--channel`) as the admin API takes it (its schema); else a usage error (2). */
  const sessionArgs = (waId: string, channel: string | undefined): void => {
    for (const [what, v] of [
      ['<waId>', waId],
      ['--channel', channel],
    ] as const) {
      const checked = v === undefined ? null : WaIdParams.shape.waId.safeParse(v);
      if (checked && !checked.success)
        throw new UsageError(`${what} "${v}" is not an id: ${checked.error.issues[0]?.message ?? 'invalid'}`);
    }
  };
  const oneSession = async (
    b: Awaited<ReturnType<typeof createBaton>>,
    waId: string,
    channel: string | undefined,
  ) => {
    const found = await b.backend.findSessions(waId, channel);
    if (found.length === 0) throw new BatonError('BATON_ERR_NOT_FOUND', `No session for ${waId}`);
    if (found.length > 1) {
      const named = sessionNamedBy(found, waId);
      if (named) return named;
      const list = found.map((s) => `${s.waId ?? s.user} on ${s.channel}`).join(', ');
      // The wa_id is worth naming only when a user id was given (outside test QA89-F5).
      const byNumber = found.some((s) => (s.waId ?? s.user) === waId);
      throw new BatonError(
        'BATON_ERR_AMBIGUOUS_SESSION',
        `${waId} names several sessions (${list}); pass --channel${byNumber ? '' : ', or the wa_id'}`,
      );
    }
    return found[0]!;
  };

  const session = program.command('session').description('inspect or reset a session');
  session
    .command('show <waId>')
    .option('--channel <id>', CHANNEL_HELP, once('--channel'))
    .action(async (waId: string, o: { channel?: string }) => {
      sessionArgs(waId, o.channel);
      await sessionCommand(
        async (b) => {
          const s = await oneSession(b, waId, o.channel);
          return { session: toSessionView(s), transitions: await b.backend.transitions(s) };
        },
        (client) => client.show(waId, o.channel),
      );
    });
  session
    .command('reset <waId>')
    .option('--channel <id>', CHANNEL_HELP, once('--channel'))
    .action(async (waId: string, o: { channel?: string }) => {
      sessionArgs(waId, o.channel);
      await sessionCommand(
        async (b) => {
          const next = await b.engine.adminReset(await oneSession(b, waId, o.channel));
          return next ? toSessionView(next) : null;
        },
        (client) => client.reset(waId, o.channel),
      );
    });
  program
    .command('lock')
    .description('manage session leases')
    .command('clear <waId>')
    .option('--channel <id>', CHANNEL_HELP, once('--channel'))
    .action(async (waId: string, o: { channel?: string }) => {
      sessionArgs(waId, o.channel);
      await sessionCommand(
        async (b) => ({ released: await b.backend.clearLease(await oneSession(b, waId, o.channel)) }),
        (client) => client.clearLock(waId, o.channel),
        0,
      );
    });
  program
    .command('flow')
    .description('inspect flows')
    .command('graph <flowId>')
    .option(
      '--format <format>',
      `${GRAPH_FORMATS.join('|')} (default: from --output's extension, else mermaid)`,
      once('--format'),
    )
    .option('--output <file>', 'write to a file instead of stdout', once('--output'))
    .option(
      '--flows <module>',
      'the module the flow is in (default: $BATON_FLOWS, else the reference bot)',
      once('--flows'),
    )
    .action(async (flowId: string, flags: Partial<GraphFlags>) => {
      // `--output order.svg` draws an SVG: Mermaid text in a file named .svg was no picture
      // (outside test QA32-F2).
      const o: GraphFlags = { ...flags, format: flags.format ?? formatOfFile(flags.output) ?? 'mermaid' };
      if (!(GRAPH_FORMATS as readonly string[]).includes(o.format))
        throw new UsageError(`--format must be ${GRAPH_FORMATS.join(', ')}; got "${o.format}"`);
      // A file named for one format holding another is no picture either (outside test QA77-F5).
      const named = formatOfFile(o.output);
      if (named !== undefined && named !== o.format)
        throw new UsageError(
          `--format ${o.format} does not match --output ${o.output} (a ${named} file's name): change one, or leave --format out`,
        );
      // A PNG's bytes would garble the terminal: a file or a pipe, said before anything is drawn.
      if (o.format === 'png' && o.output === undefined && process.stdout.isTTY === true)
        throw new UsageError('--format png writes binary: give --output <file>, or pipe it (> flow.png)');
      code = await runFlowGraph(flowId, o, o.flows ?? config().flows, { out });
    });

  configureLoadCommand(program.command('load')).action(async (o: LoadFlags) => {
    code = await runLoadCommand(o, { out });
  });

  configureSimulateCommand(program.command('simulate')).action(async (o: SimulateFlags) => {
    code = await runSimulateCommand(o);
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return 0;
      // `baton session` without a command, `baton help bogus`: one line, as every usage error.
      if (err.code === 'commander.help') {
        const path = commandPath(program, argv);
        const unknown = argv[0] === 'help' && argv[1] !== undefined && path === program.name();
        errorLine(
          unknown
            ? `baton: unknown command "${argv[1]}" (see baton --help)`
            : `baton: "${path}" needs a command (see ${path} --help)`,
        );
      } else errorLine(usageLine(err, program, argv));
      return 2;
    }
    if (
      err instanceof UsageError ||
      err instanceof SimulateUsageError ||
      (err instanceof BatonError &&
        // A user with sessions on several channels: the command needs --channel.
        (err.code === 'BATON_ERR_NEEDS_DISTRIBUTED' || err.code === 'BATON_ERR_AMBIGUOUS_SESSION'))
    ) {
      errorLine(`baton: ${err.message}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      errorLine(`baton: configuration error: ${err.message}`);
      return 1;
    }
    errorLine(`baton: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
