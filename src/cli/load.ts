/**
 * `baton load`'s flags. The generator itself lives outside the product code, in `loadgen/`,
 * and is imported only when the command runs.
 * @module
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { importModule } from '../config/module.ts';

/** Flags as commander hands them over. */
export interface LoadFlags {
  url?: string;
  users?: string;
  duplicates?: string;
  shuffle?: boolean;
  split?: boolean;
  concurrent?: boolean;
  chaos?: boolean;
  secret?: string;
  adminToken?: string;
  sinkPort?: string;
  sinkHost?: string;
  port?: string;
  channel?: string;
  ramp?: string;
  timeout?: string;
  maxInflight?: string;
  seed?: string;
  json?: boolean;
  progress?: boolean;
  retaps?: string;
  flow?: string;
  /** `--flows`: the name `simulate` and `flow graph` give it; the same as `--flow`. */
  flows?: string;
  script?: string;
  start?: boolean;
  shopStub?: boolean;
  crashes?: boolean;
  bufferMs?: string;
}

export const DEFAULT_SINK_PORT = 4010;
/** The business number simulated users write to unless `--channel` says otherwise. */
export const DEFAULT_LOAD_CHANNEL = '106540352242922';

/**
 * Adds the `load` command's description and flags to `cmd`.
 *
 * @example
 * ```ts
 * configureLoadCommand(program.command('load')).action(async (o: LoadFlags) => { code = await runLoadCommand(o); });
 * ```
 */
export function configureLoadCommand(cmd: Command): Command {
  return cmd
    .description(
      'load and chaos generator: users walk the order flow; prints a verdict (lost, duplicated, out of order)',
    )
    .option('--url <url>', 'base URL of the Baton under test (default http://127.0.0.1:3000)')
    .option('--users <n>', 'simulated users', '50')
    .option('--duplicates <rate>', 'share of messages delivered twice with the same wamid, 0..1', '0')
    .option('--shuffle', 'deliver each burst in shuffled order (Baton must buffer: BATON_BUFFER_MS)')
    .option('--split', 'send names and addresses as two texts each')
    .option('--concurrent', "fire each burst's webhooks at once")
    .option('--retaps <rate>', 'share of users who tap another product on the old product prompt, 0..1', '0')
    .option('--chaos', 'shorthand for --duplicates 0.3 --retaps 0.3 --shuffle --split --concurrent')
    .option('--secret <secret>', "the target's WHATSAPP_APP_SECRET (default: $WHATSAPP_APP_SECRET)")
    .option(
      '--admin-token <token>',
      "the target's ADMIN_TOKEN, to read its transition logs (default: $ADMIN_TOKEN)",
    )
    .option(
      '--sink-port <port>',
      `port of the reply sink Baton must send to (default ${DEFAULT_SINK_PORT}; with --start, a free one)`,
    )
    .option('--sink-host <host>', 'address of the reply sink', '127.0.0.1')
    .option('--channel <phoneNumberId>', 'business number the users write to', DEFAULT_LOAD_CHANNEL)
    .option('--ramp <ms>', 'start users spread over this many milliseconds', '0')
    .option(
      '--crashes',
      'you kill workers during the run: a reply repeated once (SPEC 1.6) is reported apart, not a failure',
    )
    .option(
      '--buffer-ms <ms>',
      "the target's BATON_BUFFER_MS (default: $BATON_BUFFER_MS, else 500): a burst it stored further apart may split (SPEC 1.5), reported apart",
    )
    .option('--timeout <ms>', 'how long a user waits for a reply that is due', '15000')
    .option('--max-inflight <n>', 'webhooks in flight at most', '64')
    .option('--seed <n>', 'seed of the random choices (default: random)')
    .option('--script <file>', 'every user plays this conversation (the `baton simulate --script` format)')
    .option(
      '--flow <module>',
      'the flow module the script drives; without --url, an embedded Baton serves it (as --start)',
    )
    .option('--flows <module>', 'the same as --flow (as simulate and flow graph name it)')
    .option('--start', 'start an embedded Baton with --flow on a free port, sending to the sink')
    .option('--port <port>', "the embedded Baton's port (default: a free one)")
    .option('--shop-stub', 'run the order-status shop API stub (ORDER_API_URL) for the flow')
    .option('--json', 'print the report as JSON on stdout')
    .option('--no-progress', 'no progress bar')
    .addHelpText(
      'after',
      '\nThe Baton under test must send its replies to the sink:\n' +
        '  WHATSAPP_API_BASE_URL=http://127.0.0.1:<sink-port>  (default 4010)\n' +
        'with the same WHATSAPP_APP_SECRET and ADMIN_TOKEN. Exit code: 0 clean verdict, 1 not clean\n' +
        'or target unreachable, 2 usage error.\n',
    );
}

/** A flag `baton load` cannot run with: exit code 2. */
export class LoadUsageError extends Error {}

function integer(name: string, raw: string | undefined, min: number, max: number): number {
  const n = Number(raw);
  if (raw === undefined || !/^\d+$/.test(raw.trim()) || n < min || n > max) {
    throw new LoadUsageError(`${name} must be a whole number ${min}..${max}, got "${raw ?? ''}"`);
  }
  return n;
}

function rate(name: string, raw: string): number {
  const n = Number(raw);
  if (!/^\s*\d*\.?\d+\s*$/.test(raw) || n < 0 || n > 1) {
    throw new LoadUsageError(`${name} must be a rate 0..1, got "${raw}"`);
  }
  return n;
}

/**
 * Checks the flags that stand alone (the URL, rates and numbers; `--chaos` fills in the rates)
 * and returns their values; throws a {@link LoadUsageError} naming the first bad one. It runs
 * before the generator is loaded, so a bad flag is a usage error (exit 2) also where the
 * generator is absent (an installed package: outside test QA58-F5 got exit 1).
 */
export function checkLoadFlags(f: LoadFlags) {
  let url: URL;
  try {
    url = new URL(f.url ?? 'http://127.0.0.1:3000');
  } catch {
    throw new LoadUsageError(`--url must be a URL, got "${f.url ?? ''}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new LoadUsageError(`--url must be http(s), got "${f.url ?? ''}"`);
  }
  const chaos = f.chaos === true;
  let duplicates = rate('--duplicates', f.duplicates ?? '0');
  if (chaos && duplicates === 0) duplicates = 0.3;
  let retaps = rate('--retaps', f.retaps ?? '0');
  if (chaos && retaps === 0) retaps = 0.3;
  // Every value given is checked before what is missing is asked for (outside test QA3-5: a bad
  // --users was named only once a token was given).
  const numbers = {
    users: integer('--users', f.users ?? '50', 1, 100_000),
    sinkPort: integer('--sink-port', f.sinkPort ?? String(f.start ? 0 : DEFAULT_SINK_PORT), 0, 65_535),
    port: integer('--port', f.port ?? '0', 0, 65_535),
    ramp: integer('--ramp', f.ramp ?? '0', 0, 3_600_000),
    timeout: integer('--timeout', f.timeout ?? '15000', 100, 3_600_000),
    maxInflight: integer('--max-inflight', f.maxInflight ?? '64', 1, 10_000),
    seed: f.seed === undefined ? undefined : integer('--seed', f.seed, 0, 2 ** 31 - 1),
    bufferMs: f.bufferMs === undefined ? undefined : integer('--buffer-ms', f.bufferMs, 0, 60_000),
  };
  return { url, chaos, duplicates, retaps, numbers };
}

/**
 * Runs `baton load` with parsed commander flags; returns the exit code. Loads the generator
 * from `loadgen/` on first use, once the flags that stand alone are checked.
 */
export async function runLoadCommand(flags: LoadFlags, io: Partial<LoadIO> = {}): Promise<number> {
  try {
    checkLoadFlags(flags);
    // --flows is --flow by the name the other commands give it (outside test QA86-F5).
    if (flags.flows !== undefined) {
      if (flags.flow !== undefined && flags.flow !== flags.flows)
        throw new LoadUsageError('--flow and --flows name the same module: give one');
      flags = { ...flags, flow: flags.flows };
    }
  } catch (err) {
    if (!(err instanceof LoadUsageError)) throw err;
    (io.err ?? ((text: string) => process.stderr.write(text)))(`baton: ${err.message}\n`);
    return 2;
  }
  const generator = await loadGenerator();
  return generator.runLoadCommand(flags, io);
}

/** Where `baton load` writes, and what it reads. */
export interface LoadIO {
  readonly out: (line: string) => void;
  readonly err: (text: string) => void;
  /** Whether `err` is a terminal (the progress bar redraws in place). */
  readonly tty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The generator's entry point (`loadgen/cli.ts`). */
interface LoadgenModule {
  runLoadCommand(flags: LoadFlags, io?: Partial<LoadIO>): Promise<number>;
}

/**
 * The generator is TypeScript beside the package (a development tool, not shipped in it): from
 * the compiled CLI it is loaded through tsx, a development dependency. Importing it by URL keeps
 * the compiler from pulling it into `dist/`.
 */
async function loadGenerator(): Promise<LoadgenModule> {
  // From src/cli/ and from dist/cli/ alike, the generator is two folders up.
  const url = new URL('../../loadgen/cli.ts', import.meta.url);
  // An installed package has no generator: installing tsx would not help (outside test QA86-F5).
  if (!existsSync(url))
    throw new Error(
      'baton load runs from a checkout of Baton: this installed package does not include its load generator (loadgen/); clone the repository and run it there (npm ci, then npx baton load)',
    );
  try {
    return (await importModule(url.href)) as unknown as LoadgenModule;
  } catch (err) {
    throw new Error(`baton load runs from a checkout of Baton (loadgen/ and tsx): ${(err as Error).message}`);
  }
}
