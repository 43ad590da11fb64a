/**
 * The bench table: one row per mode, fixed columns (SPEC section 7), then notes on any row
 * whose verdict is not clean or that could not run.
 * @module
 */
import type { LoadReport } from '../loadgen/index.ts';
import { summarize } from '../loadgen/stats.ts';

/** One measured mode, or the reason it could not be measured. */
export interface Row {
  readonly name: string;
  readonly report?: LoadReport;
  /** Peak RSS (VmHWM) of each server process, bytes. */
  readonly rssBytes?: readonly number[];
  readonly reason?: string;
  /** Warnings the server processes logged during the row (message: count). */
  readonly warnings?: ReadonlyMap<string, number>;
}

const COLUMNS = [
  'mode',
  'msg/s',
  'ack p50',
  'ack p99',
  'reply p50',
  'reply p99',
  'peak RSS',
  'lost',
  'duplicated',
  'out of order',
  'dup prompts',
] as const;

const ms = (v: number): string => `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ms`;
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

function cells(row: Row): string[] {
  const r = row.report;
  if (r === undefined) return [row.name, `n/a (${row.reason ?? 'not run'})`];
  const rss = row.rssBytes ?? [];
  const total = rss.reduce((a, b) => a + b, 0);
  const v = r.verdict;
  return [
    row.name,
    r.messagesPerSec.toFixed(0),
    ms(r.ack.p50),
    ms(r.ack.p99),
    ms(r.reply.p50),
    ms(r.reply.p99),
    rss.length > 1 ? `${mb(total)} (${rss.map((b) => (b / 1024 / 1024).toFixed(0)).join('+')})` : mb(total),
    String(v.lost),
    String(v.duplicated),
    String(v.outOfOrder),
    String(v.duplicatePrompts),
  ];
}

/**
 * Formats rows as an aligned text table followed by notes.
 *
 * @example
 * ```ts
 * for (const line of formatTable(rows)) console.log(line);
 * ```
 */
export function formatTable(rows: readonly Row[]): string[] {
  const body = rows.map(cells);
  const widths = COLUMNS.map((h, i) =>
    Math.max(h.length, ...body.filter((c) => c.length === COLUMNS.length).map((c) => c[i]!.length)),
  );
  const line = (c: readonly string[]): string =>
    c.length === COLUMNS.length
      ? c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ')
      : `${c[0]!.padEnd(widths[0]!)}  ${c[1] ?? ''}`;
  const out = [line(COLUMNS), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];

  const notes: string[] = [];
  for (const row of rows) {
    const r = row.report;
    if (r === undefined) continue;
    const v = r.verdict;
    const extra = [
      `${v.usersCompleted}/${v.users} users completed`,
      `${v.messages.acked} messages acked`,
      v.reprocessed + v.resent > 0 ? `${v.reprocessed} processed twice, ${v.resent} replies sent twice` : '',
      v.lostReplies > 0 ? `${v.lostReplies} due replies never came` : '',
      v.versionErrors > 0 ? `${v.versionErrors} version errors` : '',
      v.messages.rejected > 0 ? `${v.messages.rejected} webhooks rejected` : '',
      v.late > 0 ? `${v.late} late` : '',
      v.staleNotices > 0 ? `${v.staleNotices} stale notices` : '',
    ].filter(Boolean);
    notes.push(`${row.name}: verdict ${v.clean ? 'clean' : 'NOT clean'}; ${extra.join(', ')}`);
    const bySteps = Object.entries(r.samples?.replyMsByStep ?? {}).map(([step, samples]) => {
      const s = summarize(samples);
      return `${step} ${s.p50.toFixed(0)}/${s.p99.toFixed(0)}`;
    });
    if (bySteps.length > 0) notes.push(`    reply p50/p99 ms by step: ${bySteps.join(', ')}`);
    for (const [msg, n] of row.warnings ?? []) notes.push(`    logged ${n}x: ${msg}`);
    for (const p of v.problems.slice(0, v.clean ? 0 : 3)) notes.push(`    e.g. ${p}`);
  }
  if (notes.length > 0) out.push('', ...notes);
  return out;
}
