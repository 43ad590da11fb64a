/**
 * `baton simulate`'s flags; the simulator itself (`src/simulate`) is loaded when it runs.
 * @module
 */
import type { Command } from 'commander';
import { cloudChannelProblem } from '../providers/channel.ts';

export interface SimulateFlags {
  url?: string;
  start?: boolean;
  flows?: string;
  secret?: string;
  graphPort?: string;
  port?: string;
  channel?: string;
  user?: string;
  script?: string;
  transcript?: string;
  statuses?: boolean;
  shopStub?: boolean;
}

export class SimulateUsageError extends Error {}

/** Adds the `simulate` command's description and flags to `cmd`. */
export function configureSimulateCommand(cmd: Command): Command {
  return cmd
    .description('a local WhatsApp: chat with your bot in the terminal through real, signed webhooks')
    .option('--url <url>', 'base URL of a running Baton (default: http://127.0.0.1:3000)')
    .option('--start', 'start an embedded Baton on a free port that sends to the simulator')
    .option('--flows <module>', 'BATON_FLOWS for --start (default: $BATON_FLOWS, else the reference bot)')
    .option('--secret <secret>', "the target's WHATSAPP_APP_SECRET (default: $WHATSAPP_APP_SECRET)")
    .option(
      '--graph-port <port>',
      'port of the fake Graph API (0: a free one; default 4011, with --start a free one)',
    )
    .option('--port <port>', "with --start: the embedded Baton's port (default: a free one)")
    .option('--channel <phoneNumberId>', 'business number the users write to')
    .option('--user <waId>', 'wa_id of user 1 (user N adds N - 1)', '15550100001')
    .option('--script <file>', 'play a conversation file; exit 1 when an expected reply does not come')
    .option('--transcript <file>', 'write the conversation to a file')
    .option('--shop-stub', 'with --start: serve the order-status shop API stub (ORDER_API_URL)')
    .option('--no-statuses', 'do not send sent/delivered/read status webhooks')
    .addHelpText(
      'after',
      '\nWithout --start, start Baton with WHATSAPP_API_BASE_URL=http://127.0.0.1:<graph-port>/v21.0\n' +
        'so its replies come to the simulator. Exit code: 0 done, 1 a script failed, 2 usage error.\n',
    );
}

/** Runs `baton simulate`; returns the exit code. */
export async function runSimulateCommand(f: SimulateFlags): Promise<number> {
  // With --start, Baton is told where the simulator listens: any free port does, so two
  // simulators side by side do not collide (outside test QA70-F7). Without it, the port the help
  // tells Baton to send to.
  const graphPort = f.graphPort ?? (f.start ? '0' : '4011');
  const port = Number(graphPort);
  if (!/^\d+$/.test(graphPort) || port > 65_535) {
    throw new SimulateUsageError(`--graph-port must be 0..65535, got "${f.graphPort ?? ''}"`);
  }
  const batonPort = f.port === undefined ? undefined : Number(f.port);
  if (f.port !== undefined && (!/^\d+$/.test(f.port) || batonPort! > 65_535))
    throw new SimulateUsageError(`--port must be 0..65535, got "${f.port}"`);
  if (f.port !== undefined && !f.start)
    throw new SimulateUsageError('--port needs --start (else --url names the Baton)');
  const channelProblem = f.channel === undefined ? null : cloudChannelProblem(f.channel);
  if (channelProblem !== null)
    throw new SimulateUsageError(`--channel ${channelProblem}, got "${f.channel ?? ''}"`);
  if (f.user !== undefined && !/^\d{6,15}$/.test(f.user)) {
    throw new SimulateUsageError(`--user must be a wa_id (6 to 15 digits), got "${f.user}"`);
  }
  try {
    new URL(f.url ?? 'http://127.0.0.1:3000');
  } catch {
    throw new SimulateUsageError(`--url must be a URL, got "${f.url ?? ''}"`);
  }
  if (f.shopStub && !f.start) throw new SimulateUsageError('--shop-stub needs --start');
  // It was ignored: the simulator started its own Baton (outside test QA80-F5).
  if (f.url !== undefined && f.start)
    throw new SimulateUsageError('--url names a running Baton and --start starts one: give one of them');
  if (f.flows !== undefined && !f.start) {
    throw new SimulateUsageError(
      '--flows needs --start (a Baton already running serves its own BATON_FLOWS)',
    );
  }
  let shopStub = f.shopStub === true;
  if (f.script !== undefined) {
    const { readScript } = await import('../simulate/script.ts');
    try {
      if (readScript(f.script).stubs?.includes('shop') && f.start) shopStub = true;
    } catch (err) {
      throw new SimulateUsageError(err instanceof Error ? err.message : String(err));
    }
  }
  const { simulate } = await import('../simulate/index.ts');
  return simulate({
    ...(f.url !== undefined ? { url: f.url } : {}),
    start: f.start === true,
    ...(f.flows !== undefined ? { flows: f.flows } : {}),
    ...(f.secret !== undefined ? { secret: f.secret } : {}),
    graphPort: port,
    ...(batonPort !== undefined ? { port: batonPort } : {}),
    ...(f.channel !== undefined ? { channel: f.channel } : {}),
    ...(f.user !== undefined ? { firstUser: f.user } : {}),
    ...(f.script !== undefined ? { script: f.script } : {}),
    ...(f.transcript !== undefined ? { transcript: f.transcript } : {}),
    statuses: f.statuses !== false,
    shopStub,
    env: process.env,
    input: process.stdin,
    output: process.stdout,
  });
}
