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

/** Runs the simulator; returns the exit code (0, or 1 when a script's replies did not come). */
export async function simulate(o: SimulateOptions): Promise<number> {
  const graph = await startFakeGraphApi({ port: o.graphPort ?? 0 });
  let target: Target | undefined;
  const write = (line: string): void => {
    o.output.write(`${line}\n`);
  };
  try {
    target = o.start
      ? await startEmbedded(o, graph)
      : {
          url: o.url ?? 'http://127.0.0.1:3000',
          secret: o.secret ?? o.env.WHATSAPP_APP_SECRET,
          adminToken: o.env.ADMIN_TOKEN,
          stop: async () => undefined,
        };
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
      const result = await runScript(sim, script, write);
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
    return await chat(sim, o, intro, hint);
  } finally {
    await target?.stop();
    await graph.close();
  }
}

/** The interactive chat: a readline prompt; replies are printed above it as they arrive. */
async function chat(
  sim: Simulator,
  o: SimulateOptions,
  intro: readonly string[],
  silenceHint?: string,
): Promise<number> {
  const tty = o.output.isTTY === true;
  const paint: Paint = tty && o.env.NO_COLOR === undefined ? ANSI : PLAIN;
  const rl = createInterface({ input: o.input, output: o.output, terminal: tty });
  const promptText = (): string => paint.user(`user ${sim.currentLabel} > `);
  rl.setPrompt(promptText());
  const above = (lines: string[]): void => {
    if (tty) o.output.write('\r\x1b[K');
    for (const l of lines) o.output.write(`${l}\n`);
    if (tty) rl.prompt(true);
  };
  // No reply at all within SILENCE_HINT_MS of a message that Baton accepted: the hint, once.
  let replied = false;
  let hinted = false;
  let silence: NodeJS.Timeout | undefined;
  sim.onReply((r) => {
    replied = true;
    clearTimeout(silence);
    above(formatReply(r, paint));
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
  rl.prompt();
  let queue = Promise.resolve();
  await new Promise<void>((resolve) => {
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        try {
          const res = await sim.handleLine(line);
          if (res.info.length > 0) above(res.info.map((l) => paint.dim(l)));
          waitForReply(res.posted);
          if (res.quit) {
            rl.close();
            return;
          }
        } catch (err) {
          above([paint.dim(`could not reach Baton: ${err instanceof Error ? err.message : String(err)}`)]);
        }
        rl.setPrompt(promptText());
        rl.prompt();
      });
    });
    rl.on('close', () => resolve());
  });
  await queue;
  clearTimeout(silence);
  await sim.drain();
  return 0;
}

/** How long a message may go unanswered before the simulator says why that may be. */
const SILENCE_HINT_MS = 5000;
