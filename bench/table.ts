/**
 * The bench report: per scenario, SPEC section 7's table (median (min-max) over repeats), then
 * the cost table (CPU per message from the OS accounting, wire counts per message, the load
 * generator's share), then notes on verdicts that are not clean and rows that could not run.
 * @module
 */
import type { WireCounts } from './accounting.ts';
import { fmtMs, fmtUs, formatSpread, spread } from './stats.ts';

export type ScenarioId = 'steady' | 'bursts';

/** One measured repeat. */
export interface RunResult {
  /** Distinct messages acknowledged (duplicate deliveries not counted). */
  readonly messages: number;
  readonly durationMs: number;
  readonly msgsPerSec: number;
  readonly ackP50: number;
  readonly ackP99: number;
  readonly replyP50: number;
  readonly replyP99: number;
  readonly verdict: {
    readonly clean: boolean;
    readonly users: number;
    readonly usersCompleted: number;
    readonly lost: number;
    readonly duplicated: number;
    readonly outOfOrder: number;
    readonly duplicatePrompts: number;
    readonly problems: readonly string[];
  };
  /** CPU milliseconds over the repeat's wall time, from /proc. */
  readonly cpu: {
    readonly wallMs: number;
    /** Baton's processes (or the baseline's) and their descendants. */
    readonly batonMs: number;
    /** The same, per process (`baton ingress`, `baton worker 1`...). */
    readonly byProcess: Readonly<Record<string, number>>;
    /** The Redis server, all clients. */
    readonly redisRawMs: number;
    /** The same minus the server's idle-window rate (other clients of the shared server). */
    readonly redisMs: number;
    /** PostgreSQL backends with the run's application_name. */
    readonly pgMs: number;
    /** The bench process: load generator, reply sink, accounting. */
    readonly loadgenMs: number;
    /** Whole machine busy time, all cores. */
    readonly machineBusyMs: number;
    /** Busy time not accounted to any of the above: other work on the machine. */
    readonly othersMs: number;
  };
  readonly wire: WireCounts;
}

/** One configuration in one scenario: its repeats, or why it could not run. */
export interface ConfigResult {
  readonly scenario: ScenarioId;
  readonly config: string;
  readonly name: string;
  /** The baseline: shown for contrast, its verdict does not fail the bench. */
  readonly contrastOnly: boolean;
  readonly runs: readonly RunResult[];
  /** Peak RSS (VmHWM) of each server process at the end, bytes. */
  readonly rssBytes?: readonly number[];
  readonly reason?: string;
  readonly warnings?: Readonly<Record<string, number>>;
}

/** What the report needs to know of a scenario. */
export interface ScenarioInfo {
  readonly id: ScenarioId;
  readonly title: string;
  readonly workload: { readonly users: number; readonly chaos: object };
}

/** Aligns rows of cells under a header: first column left, others right. */
export function alignTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const full = rows.filter((r) => r.length === header.length);
  const widths = header.map((h, i) => Math.max(h.length, ...full.map((r) => r[i]!.length)));
  const line = (c: readonly string[]): string =>
    c.length === header.length
      ? c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ')
      : `${c[0]!.padEnd(widths[0]!)}  ${c.slice(1).join(' ')}`;
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const of = (r: ConfigResult, pick: (x: RunResult) => number): ReturnType<typeof spread> =>
  spread(r.runs.map(pick));
const sum = (r: ConfigResult, pick: (x: RunResult) => number): number =>
  r.runs.reduce((a, x) => a + pick(x), 0);
const perMsg = (value: (x: RunResult) => number) => (x: RunResult) =>
  x.messages > 0 ? value(x) / x.messages : NaN;
const fixed = (d: number) => (v: number) => v.toFixed(d);

const MAIN = [
  'mode',
  'msg/s',
  'ack p50 ms',
  'ack p99 ms',
  'reply p50 ms',
  'reply p99 ms',
  'peak RSS',
  'lost',
  'duplicated',
  'out of order',
  'dup prompts',
];

function mainCells(r: ConfigResult): string[] {
  if (r.runs.length === 0) return [r.name, `n/a (${r.reason ?? 'not run'})`];
  const rss = r.rssBytes ?? [];
  const total = rss.reduce((a, b) => a + b, 0);
  return [
    r.name + (r.runs.length < 2 ? ` [${r.runs.length} run]` : ''),
    formatSpread(
      of(r, (x) => x.msgsPerSec),
      fixed(0),
    ),
    formatSpread(
      of(r, (x) => x.ackP50),
      fmtMs,
    ),
    formatSpread(
      of(r, (x) => x.ackP99),
      fmtMs,
    ),
    formatSpread(
      of(r, (x) => x.replyP50),
      fmtMs,
    ),
    formatSpread(
      of(r, (x) => x.replyP99),
      fmtMs,
    ),
    rss.length === 0
      ? 'n/a'
      : rss.length > 1
        ? `${mb(total)} (${rss.map((b) => (b / 1024 / 1024).toFixed(0)).join('+')})`
        : mb(total),
    String(sum(r, (x) => x.verdict.lost)),
    String(sum(r, (x) => x.verdict.duplicated)),
    String(sum(r, (x) => x.verdict.outOfOrder)),
    String(sum(r, (x) => x.verdict.duplicatePrompts)),
  ];
}

const COST = [
  'mode',
  'CPU us/msg Baton',
  'Redis us/msg',
  'Redis raw',
  'PG us/msg',
  'Redis cmds/msg',
  'Redis flushes/msg',
  'PG stmts/msg',
  'loadgen CPU',
  'other load',
];

function costCells(r: ConfigResult): string[] {
  if (r.runs.length === 0) return [r.name, 'n/a'];
  const usesRedis = r.runs.some((x) => x.wire.redisWrites > 0);
  const usesPg = r.runs.some((x) => x.wire.pgWrites > 0);
  return [
    r.name,
    formatSpread(
      of(
        r,
        perMsg((x) => x.cpu.batonMs),
      ),
      fmtUs,
    ),
    usesRedis
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.cpu.redisMs),
          ),
          fmtUs,
        )
      : '-',
    usesRedis
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.cpu.redisRawMs),
          ),
          fmtUs,
        )
      : '-',
    usesPg
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.cpu.pgMs),
          ),
          fmtUs,
        )
      : '-',
    usesRedis
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.wire.redisCommands),
          ),
          fixed(1),
        )
      : '-',
    usesRedis
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.wire.redisWrites),
          ),
          fixed(1),
        )
      : '-',
    usesPg
      ? formatSpread(
          of(
            r,
            perMsg((x) => x.wire.pgStatements),
          ),
          fixed(2),
        )
      : '-',
    `${formatSpread(
      of(r, (x) => (100 * x.cpu.loadgenMs) / x.cpu.wallMs),
      fixed(0),
    )}% of a core`,
    `${formatSpread(
      of(r, (x) => x.cpu.othersMs / x.cpu.wallMs),
      fixed(2),
    )} cores`,
  ];
}

/** The most frequent Redis commands per message over all runs of `r`, scripts by name. */
export function commandMix(r: ConfigResult, scriptNames: Readonly<Record<string, string>>, top = 10): string {
  const messages = r.runs.reduce((a, x) => a + x.messages, 0);
  if (messages === 0) return '';
  const counts = new Map<string, number>();
  for (const x of r.runs) {
    for (const [cmd, n] of Object.entries(x.wire.redisByCommand)) {
      const name = cmd.startsWith('evalsha:') ? (scriptNames[cmd.slice(8)] ?? cmd.slice(0, 16)) : cmd;
      counts.set(name, (counts.get(name) ?? 0) + n);
    }
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, n]) => `${name} ${(n / messages).toFixed(2)}`)
    .join(', ');
}

/**
 * The whole report as lines.
 *
 * @example
 * ```ts
 * for (const line of formatReport(results, scenarios)) console.log(line);
 * ```
 */
export function formatReport(
  results: readonly ConfigResult[],
  scenarios: readonly ScenarioInfo[],
  scriptNames: Readonly<Record<string, string>> = {},
): string[] {
  const out: string[] = [];
  for (const s of scenarios) {
    const rows = results.filter((r) => r.scenario === s.id);
    if (rows.length === 0) continue;
    out.push(
      `== ${s.title}: ${s.workload.users} users x the order flow, chaos ${JSON.stringify(s.workload.chaos)}`,
      ...alignTable(MAIN, rows.map(mainCells)),
      '',
      ...alignTable(COST, rows.map(costCells)),
      '',
    );
    for (const r of rows) {
      if (r.runs.length === 0) continue;
      const dirty = r.runs.filter((x) => !x.verdict.clean);
      const done = r.runs.map((x) => `${x.verdict.usersCompleted}/${x.verdict.users}`).join(', ');
      out.push(
        `${r.name}: verdict ${dirty.length === 0 ? 'clean' : `NOT clean in ${dirty.length}/${r.runs.length} runs`}` +
          `${r.contrastOnly && dirty.length > 0 ? ' (baseline: for contrast)' : ''}; users completed ${done}`,
      );
      for (const p of dirty.flatMap((x) => x.verdict.problems).slice(0, 3)) out.push(`    e.g. ${p}`);
      const names = Object.keys(r.runs[0]!.cpu.byProcess);
      if (names.length > 1) {
        const parts = names.map(
          (n) =>
            `${n} ${formatSpread(
              of(
                r,
                perMsg((x) => x.cpu.byProcess[n] ?? NaN),
              ),
              fmtUs,
            )}`,
        );
        out.push(`    CPU us/msg by process: ${parts.join(', ')}`);
      }
      const mix = commandMix(r, scriptNames);
      if (mix !== '') out.push(`    Redis commands per message (all runs): ${mix}`);
      for (const [msg, n] of Object.entries(r.warnings ?? {}).slice(0, 5))
        out.push(`    logged ${n}x: ${msg}`);
      if (r.reason !== undefined) out.push(`    stopped: ${r.reason}`);
    }
    out.push('');
  }
  out.push(
    'Counts (lost, duplicated, out of order, dup prompts) are summed over the runs. CPU from /proc/<pid>/stat',
    '(utime+stime) per distinct message: Baton = its processes and their descendants; PG = the backends with',
    "the run's application_name; Redis = the shared server minus its rate in a 1 s idle window before each",
    'run (raw: without that correction; both are noisy while other clients use the server). Redis commands and flushes (one flush = one write to the socket, about one round trip) and PG',
    'statements are counted on the wire in each process. loadgen CPU = the bench process itself; other load',
    '= machine busy time not accounted to the run, in cores.',
  );
  return out;
}
