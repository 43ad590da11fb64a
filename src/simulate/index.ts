/**
 * `baton simulate`: a local WhatsApp. A fake Graph API receives what Baton sends; a terminal
 * chat (or a conversation script) sends real, signed Cloud API webhooks to a running Baton
 * (`url`) or to an embedded one it starts itself (`start`), pointed at the fake.
 * @module
 */
import { terminalSafeLine } from '../terminal.ts';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { createBaton, loadFlowModule, serializeError, type Baton } from '../app.ts';
import { loadConfig } from '../config/index.ts';
import { startFakeGraphApi, type FakeGraphApi } from './fake-graph.ts';
import { ANSI, formatAction, formatReply, PLAIN, type Paint } from './format.ts';
import { SIM_CHANNEL } from './inbound.ts';
import { startShopStub } from './shop-stub.ts';
import { readScript, runScript } from './script.ts';
import { Simulator } from './simulator.ts';
import { pacedInput } from './paced-input.ts';

export interface SimulateOptions {
  /** Target Baton; ignored with `start`. */
  readonly url?: string;
  /** Start an embedded Baton (temporary SQLite, free port) that sends to the fake Graph API. */
  readonly start?: boolean;
  /** `BATON_FLOWS` for the embedded Baton (default: the environment's, else the reference bot). */
  readonly flows?: string;
  readonly secret?: string;
  /** Port of the fake Graph API (0: a free one). */
  readonly graphPort?: number;
  /** With `start`: the embedded Baton's port (default: a free one). */
  readonly port?: number;
  readonly channel?: string;
  readonly firstUser?: string;
  readonly script?: string;
  readonly transcript?: string;
  readonly statuses?: boolean;
  /** With `start`: serve the order-status shop API stub and point `ORDER_API_URL` at it. */
  readonly shopStub?: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly input: NodeJS.ReadableStream;
  readonly output: NodeJS.WritableStream & { isTTY?: boolean };
}

interface Target {
  readonly url: string;
  readonly secret: string | undefined;
  /** Its ADMIN_TOKEN, for `/event`. */
  readonly adminToken: string | undefined;
  /** An embedded Baton's: where to look at it while the simulator runs. */
  readonly about?: readonly string[];
  /** Its buffer window: how long a message may wait before its turn begins. */
  readonly bufferMs: number;
  readonly stop: () => Promise<void>;
}

/**
 * Where an embedded Baton can be inspected while the simulator runs (its dashboard, its store)
 * and the buffer window it runs with, which decides how a burst typed here is batched.
 */
function aboutEmbedded(baton: Baton, url: string, dir: string, env: SimulateOptions['env']): string[] {
  const token = baton.adminTokenGenerated
    ? `${baton.adminToken} (generated; set ADMIN_TOKEN to fix it)`
    : '(from ADMIN_TOKEN)';
  const window = `${baton.config.bufferMs} ms (BATON_BUFFER_MS${
    env.BATON_BUFFER_MS === undefined
      ? `; a Baton started without it waits ${loadConfig({}).bufferMs} ms`
      : ''
  })`;
  return [
    `Dashboard: ${url}/admin  admin token: ${token}`,
    `data: ${dir} (removed on exit; BATON_DATA_DIR=${dir} baton session show <waId> reads it meanwhile)`,
    `buffer window: ${window}`,
  ];
}

/**
 * The embedded Baton's log, as lines in the chat: errors (a flow that throws, a reply that breaks
 * a WhatsApp limit) by default, `LOG_LEVEL` to see more. One line each: what and why.
 */
function chatLogger(o: SimulateOptions): pino.Logger {
  const level = o.env.LOG_LEVEL ?? 'error';
  return pino(
    { level, serializers: { err: serializeError } },
    {
      write: (line: string) => {
        let entry: { level?: number; msg?: string; err?: { message?: string }; session?: string };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          return;
        }
        const name = pino.levels.labels[entry.level ?? 30] ?? 'log';
        const why = entry.err?.message === undefined ? '' : `: ${entry.err.message}`;
        o.output.write(`  (baton ${name}) ${terminalSafeLine(`${entry.msg ?? ''}${why}`)}\n`);
      },
    },
  );
}

async function startEmbedded(o: SimulateOptions, graph: FakeGraphApi): Promise<Target> {
  const shop = o.shopStub ? await startShopStub() : undefined;
  // The order-status example reads ORDER_API_URL when its module is loaded.
  if (shop) process.env.ORDER_API_URL = shop.url;
  const dir = mkdtempSync(join(tmpdir(), 'baton-simulate-'));
  const secret = o.secret ?? o.env.WHATSAPP_APP_SECRET ?? randomBytes(12).toString('hex');
  const env: Record<string, string | undefined> = {
    ...o.env,
    PORT: String(o.port ?? 0),
    HOST: '127.0.0.1',
    BATON_DATA_DIR: dir,
    WHATSAPP_API_BASE_URL: graph.url,
    WHATSAPP_APP_SECRET: secret,
    BATON_BUFFER_MS: o.env.BATON_BUFFER_MS ?? '100',
    REDIS_URL: undefined,
    DATABASE_URL: undefined,
    BATON_REDIS_CLUSTER: undefined,
    ...(shop ? { ORDER_API_URL: shop.url } : {}),
  };
  if (o.flows !== undefined) env.BATON_FLOWS = o.flows;
  let baton: Baton | undefined;
  try {
    // Loaded here so that an error names the flag the user gave (outside test QA11-F6).
    const given = o.flows !== undefined ? await loadFlowModule(o.flows, '--flows') : undefined;
    baton = await createBaton(loadConfig(env), {
      logger: chatLogger(o),
      concurrency: 8,
      ...(given ? { flows: given.flows, ...(given.router ? { router: given.router } : {}) } : {}),
    });
    const url = (await baton.start())!;
    const b = baton;
    return {
      url,
      secret,
      adminToken: b.adminToken,
      about: aboutEmbedded(b, url, dir, o.env),
      bufferMs: b.config.bufferMs,
      stop: async () => {
        await b.stop();
        await shop?.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await baton?.stop().catch(() => undefined);
    await shop?.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The signals that end a simulator the way Ctrl-C does: its embedded Baton and data go too. */
const STOP_SIGNALS = ['SIGTERM', 'SIGHUP'] as const;

/**
 * Runs the simulator; returns the exit code: 0, 1 when a script's replies did not come, 130 after
 * Ctrl-C.
 */
export async function simulate(o: SimulateOptions): Promise<number> {
  const graph = await startFakeGraphApi({ port: o.graphPort ?? 0 });
  let target: Target | undefined;
  const write = (line: string): void => {
    o.output.write(`${line}\n`);
  };
  // A closed terminal (SIGHUP) or a `kill` (SIGTERM) stopped the process and left the embedded
  // Baton's temporary directory, its admin token and conversations in it (outside test QA80-F2).
  // Now the chat ends as at Ctrl-C; a script, mid-step, is cut short the same way.
  const stopped = new AbortController();
  // Piped lines are read from now on, with their timing, while the embedded Baton starts.
  const paced =
    o.script === undefined && !(o.input as { isTTY?: boolean }).isTTY ? pacedInput(o.input) : null;
  const onSignal = (): void => stopped.abort();
  for (const sig of STOP_SIGNALS) process.on(sig, onSignal);
  try {
    target = o.start
      ? await startEmbedded(o, graph)
      : {
          url: o.url ?? 'http://127.0.0.1:3000',
          secret: o.secret ?? o.env.WHATSAPP_APP_SECRET,
          adminToken: o.env.ADMIN_TOKEN,
          bufferMs: bufferMsOf(o.env),
          stop: async () => undefined,
        };
    if (stopped.signal.aborted) return 1;
    const sim = new Simulator({
      url: target.url,
      graph,
      secret: target.secret,
      adminToken: target.adminToken,
      channel: o.channel ? { ...SIM_CHANNEL, phoneNumberId: o.channel } : SIM_CHANNEL,
      ...(o.firstUser ? { firstUser: o.firstUser } : {}),
      statuses: o.statuses !== false,
    });
    if (o.transcript) writeFileSync(o.transcript, '');
    const record = (lines: string[]): void => {
      if (o.transcript) appendFileSync(o.transcript, lines.map((l) => `${l}\n`).join(''));
    };
    sim.onAction((a) => record(formatAction(a)));
    sim.onReply((r) => record(formatReply(r)));

    const intro = [
      o.start
        ? `Baton simulator: embedded Baton at ${target.url}, fake Graph API at ${graph.url}`
        : `Baton simulator: webhooks to ${target.url}; start that Baton with WHATSAPP_API_BASE_URL=${graph.url}` +
          (target.secret ? '' : ' (no WHATSAPP_APP_SECRET: webhooks unsigned)'),
      ...(target.about ?? []),
    ];

    if (o.script) {
      const script = readScript(o.script);
      intro.forEach(write);
      sim.onAction((a) => formatAction(a).forEach(write));
      sim.onReply((r) => formatReply(r).forEach(write));
      const result = await Promise.race([
        runScript(sim, script, write),
        new Promise<null>((resolve) => stopped.signal.addEventListener('abort', () => resolve(null))),
      ]);
      if (result === null) return 1;
      await sim.drain();
      if (result.ok) write(`script passed: ${result.stepsPassed} steps, every expected reply came`);
      else {
        write(`script FAILED after ${result.stepsPassed} of ${script.steps.length} steps:`);
        result.failures.forEach((f) => write(`  - ${f}`));
      }
      return result.ok ? 0 : 1;
    }
    // Without --start the Baton is the author's own: its replies reach this fake Graph only if it
    // was started with WHATSAPP_API_BASE_URL pointing here. A silence after the first messages is
    // most often that: said once, rather than a bot that seems never to answer.
    const hint = o.start
      ? undefined
      : `no reply yet. Is that Baton sending to this simulator? Start it with WHATSAPP_API_BASE_URL=${graph.url}` +
        ` (its replies go wherever that points; /admin shows them as sent).`;
    paced?.start();
    const input = paced?.stream ?? o.input;
    return await chat(
      sim,
      { ...o, input },
      { intro, bufferMs: target.bufferMs, stopped: stopped.signal },
      hint,
    );
  } finally {
    paced?.stop();
    for (const sig of STOP_SIGNALS) process.off(sig, onSignal);
    await target?.stop();
    await graph.close();
  }
}

/** The window a Baton started with this environment waits (`BATON_BUFFER_MS`, else its default). */
function bufferMsOf(env: SimulateOptions['env']): number {
  try {
    return loadConfig({ BATON_BUFFER_MS: env.BATON_BUFFER_MS }).bufferMs;
  } catch {
    return loadConfig({}).bufferMs;
  }
}

/**
 * After the last line of input (Ctrl-D, or the end of a piped file), how long the chat stays to
 * show the replies still due: until nothing has been posted nor received for the target's buffer
 * window and {@link SETTLE_MS} more, and at most {@link SETTLE_CAP_MS}; and, while Baton says it
 * has work in flight for these users (an effect running, a reply unsent), at most
 * {@link BUSY_CAP_MS} (outside test QA86-F4: the reply an effect's failure brought, 3.6 s after
 * the last line, was never shown).
 */
const SETTLE_MS = 1000;
const SETTLE_CAP_MS = 15_000;
const BUSY_CAP_MS = 60_000;

/**
 * The interactive chat: a readline prompt; replies are printed above it as they arrive. Without a
 * terminal (input piped in, output to a file) there is no prompt: each line sent is printed as the
 * user's (it printed both, `user 1 > user 1 > hi`: outside test QA80-F1).
 */
async function chat(
  sim: Simulator,
  o: SimulateOptions,
  at: { readonly intro: readonly string[]; readonly bufferMs: number; readonly stopped: AbortSignal },
  silenceHint?: string,
): Promise<number> {
  const { intro } = at;
  const tty = o.output.isTTY === true;
  const paint: Paint = tty && o.env.NO_COLOR === undefined ? ANSI : PLAIN;
  const rl = createInterface({ input: o.input, output: o.output, terminal: tty });
  // A terminal that closed (tmux kill-session) fails readline's last `setRawMode` with EIO, and
  // writes to it fail too: unhandled, either crashed the process before its embedded Baton's
  // directory was removed (outside test QA81-F1). Such a chat is over; the cleanup still runs.
  let gone = false;
  let ended = (): void => undefined;
  const terminalGone = (): void => {
    gone = true;
    ended();
  };
  rl.on('error', terminalGone);
  o.output.on('error', terminalGone);
  o.input.on('error', terminalGone);
  // Once the input has ended (Ctrl-D), no prompt is drawn again: readline's `prompt` resumes the
  // input, and replies printed after Ctrl-D left a prompt whose lines went nowhere, the process
  // waiting for a second Ctrl-D (outside test QA131-F1).
  let closed = false;
  rl.on('close', () => {
    closed = true;
  });
  const promptText = (): string => paint.user(`user ${sim.currentLabel} > `);
  const prompt = (): void => {
    rl.setPrompt(tty ? promptText() : '');
    if (tty && !closed) rl.prompt();
  };
  rl.setPrompt(tty ? promptText() : '');
  const above = (lines: string[]): void => {
    if (tty) o.output.write('\r\x1b[K');
    for (const l of lines) o.output.write(`${l}\n`);
    if (tty && !closed) rl.prompt(true);
  };
  // No reply at all within SILENCE_HINT_MS of a message that Baton accepted: the hint, once.
  let replied = false;
  let hinted = false;
  let silence: NodeJS.Timeout | undefined;
  let lastActivity = Date.now();
  sim.onReply((r) => {
    replied = true;
    lastActivity = Date.now();
    clearTimeout(silence);
    above(formatReply(r, paint, tty ? (o.output as { columns?: number }).columns : undefined));
  });
  const waitForReply = (posted: readonly number[]): void => {
    if (silenceHint === undefined || replied || hinted || !posted.includes(200)) return;
    clearTimeout(silence);
    silence = setTimeout(() => {
      if (replied || hinted) return;
      hinted = true;
      above([paint.dim(silenceHint)]);
    }, SILENCE_HINT_MS);
    silence.unref();
  };
  if (!tty) sim.onAction((a) => above(formatAction(a, paint)));
  above([...intro, paint.dim('Type a message; a number picks a button or row; /help lists commands.')]);
  prompt();
  let queue = Promise.resolve();
  let quit = false;
  const onStop = (): void => {
    quit = true;
    try {
      rl.close();
    } catch {
      terminalGone();
    }
  };
  at.stopped.addEventListener('abort', onStop);
  // Ctrl-C leaves at once, as a shell's programs do: on a line of its own, exit code 130 (readline
  // took it as the end of input, waited for the replies due and left with 0 on the prompt's line:
  // outside test QA131-F6).
  let interrupted = false;
  rl.on('SIGINT', () => {
    interrupted = true;
    if (tty) o.output.write('\n');
    onStop();
  });
  await new Promise<void>((resolve) => {
    ended = resolve;
    if (gone) resolve();
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        if (quit) return;
        try {
          const res = await sim.handleLine(line);
          if (res.posted.length > 0) lastActivity = Date.now();
          if (res.info.length > 0) above(res.info.map((l) => paint.dim(l)));
          waitForReply(res.posted);
          if (res.quit) {
            quit = true;
            rl.close();
            return;
          }
        } catch (err) {
          above([paint.dim(`could not reach Baton: ${err instanceof Error ? err.message : String(err)}`)]);
        }
        prompt();
      });
    });
    rl.on('close', () => resolve());
  });
  await queue;
  at.stopped.removeEventListener('abort', onStop);
  // The end of input, not /quit nor a signal: the replies already due are shown before leaving
  // (a piped conversation ended before any came: QA80-F1).
  if (!quit && !gone && !at.stopped.aborted)
    await settle(
      () => lastActivity,
      at.bufferMs + SETTLE_MS,
      at.stopped,
      () => sim.busy(),
      () =>
        above([
          paint.dim(
            `Baton is still at work for this chat (an effect, or a reply to send): waiting up to ${BUSY_CAP_MS / 1000} s`,
          ),
        ]),
    );
  clearTimeout(silence);
  await sim.drain();
  return interrupted ? 130 : 0;
}

/**
 * Waits until `last()` is `quietMs` old and `busy()` has said no for {@link IDLE_FOR_MS} (its
 * reads of the queue may be a second old), or until `stopped`: at most {@link SETTLE_CAP_MS} for
 * the quiet, {@link BUSY_CAP_MS} in all. A `busy()` that cannot say (`null`) ends the wait.
 */
async function settle(
  last: () => number,
  quietMs: number,
  stopped: AbortSignal,
  busy: () => Promise<boolean | null>,
  waiting: () => void,
): Promise<void> {
  const started = Date.now();
  let idleSince: number | undefined;
  let said = false;
  while (!stopped.aborted) {
    const wait = last() + quietMs - Date.now();
    if (wait > 0 && Date.now() - started < SETTLE_CAP_MS) {
      await new Promise((r) => setTimeout(r, Math.min(wait, 100)));
      continue;
    }
    if (Date.now() - started >= BUSY_CAP_MS) return;
    const now = await busy();
    if (now === null) return;
    if (now) {
      idleSince = undefined;
      if (!said) waiting();
      said = true;
    } else if (idleSince === undefined) idleSince = Date.now();
    else if (Date.now() - idleSince >= IDLE_FOR_MS) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** How long Baton must have had nothing in flight before the chat ends, ms. */
const IDLE_FOR_MS = 1200;

/** How long a message may go unanswered before the simulator says why that may be. */
const SILENCE_HINT_MS = 5000;
