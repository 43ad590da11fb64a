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
import { DEFAULT_SINK_PORT } from "../src/cli/load.js";
import { DEFAULT_CHANNEL, LoadError, runLoad } from "./index.js";
class LoadUsageError extends Error {
}
function integer(name, raw, min, max) {
    const n = Number(raw);
    if (raw === undefined || !/^\d+$/.test(raw.trim()) || n < min || n > max) {
        throw new LoadUsageError(`${name} must be a whole number ${min}..${max}, got "${raw ?? ''}"`);
    }
    return n;
}
function rate(name, raw) {
    const n = Number(raw);
    if (!/^\s*\d*\.?\d+\s*$/.test(raw) || n < 0 || n > 1) {
        throw new LoadUsageError(`${name} must be a rate 0..1, got "${raw}"`);
    }
    return n;
}
/** Validates the flags; throws a usage error naming the first bad one. */
function parse(f, env) {
    let url;
    try {
        url = new URL(f.url ?? 'http://127.0.0.1:3000');
    }
    catch {
        throw new LoadUsageError(`--url must be a URL, got "${f.url ?? ''}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new LoadUsageError(`--url must be http(s), got "${f.url ?? ''}"`);
    }
    const chaos = f.chaos === true;
    let duplicates = rate('--duplicates', f.duplicates ?? '0');
    if (chaos && duplicates === 0)
        duplicates = 0.3;
    let retaps = rate('--retaps', f.retaps ?? '0');
    if (chaos && retaps === 0)
        retaps = 0.3;
    const adminToken = f.adminToken ?? env.ADMIN_TOKEN;
    if (adminToken === undefined || adminToken === '') {
        throw new LoadUsageError("--admin-token (or ADMIN_TOKEN) is required: the verdict reads Baton's transition logs");
    }
    const secret = f.secret ?? env.WHATSAPP_APP_SECRET;
    return {
        url: url.toString().replace(/\/+$/, ''),
        users: integer('--users', f.users ?? '50', 1, 100_000),
        duplicates,
        retaps,
        shuffle: chaos || f.shuffle === true,
        split: chaos || f.split === true,
        concurrent: chaos || f.concurrent === true,
        secret: secret === '' ? undefined : secret,
        adminToken,
        sinkPort: integer('--sink-port', f.sinkPort ?? String(DEFAULT_SINK_PORT), 0, 65_535),
        sinkHost: f.sinkHost ?? '127.0.0.1',
        channel: f.channel ?? DEFAULT_CHANNEL.phoneNumberId,
        ramp: integer('--ramp', f.ramp ?? '0', 0, 3_600_000),
        timeout: integer('--timeout', f.timeout ?? '15000', 100, 3_600_000),
        maxInflight: integer('--max-inflight', f.maxInflight ?? '64', 1, 10_000),
        seed: f.seed === undefined ? undefined : integer('--seed', f.seed, 0, 2 ** 31 - 1),
    };
}
/** One progress line: a bar over messages sent, then replies and users. */
export function progressLine(p, width = 24) {
    const done = p.planned === 0 ? 1 : (p.sent + p.replies) / (p.planned + p.repliesPlanned);
    const filled = Math.round(Math.min(1, done) * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    const phase = p.phase === 'running' ? '' : ` ${p.phase}...`;
    return (`[${bar}] ${String(Math.floor(done * 100)).padStart(3)}%  ` +
        `msgs ${p.sent}/${p.planned}  replies ${p.replies}/${p.repliesPlanned}  ` +
        `users ${p.usersDone}/${p.users}  ${(p.elapsedMs / 1000).toFixed(1)}s${phase}`);
}
const ms = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
/** The closing report, as lines. */
export function formatReport(r, chaosLabel) {
    const v = r.verdict;
    const row = (label, n, detail = '') => `  ${label.padEnd(18)} ${String(n).padStart(6)}${detail ? `   ${detail}` : ''}`;
    const lines = [
        `baton load: ${v.users} users, ${v.messages.sent}/${v.messages.planned} messages sent, ` +
            `${v.messages.acked} acknowledged; chaos: ${chaosLabel}; seed ${r.seed}`,
        `  throughput         ${r.messagesPerSec.toFixed(1)} msg/s end to end over ${(r.durationMs / 1000).toFixed(2)} s`,
        `  webhook ack        p50 ${ms(r.ack.p50)} ms   p99 ${ms(r.ack.p99)} ms   (${r.ack.count} deliveries)`,
        `  reply latency      p50 ${ms(r.reply.p50)} ms   p99 ${ms(r.reply.p99)} ms   (${r.reply.count} replies)`,
        `verdict: ${v.clean ? 'CLEAN' : 'NOT CLEAN'} (${v.usersCompleted}/${v.users} users completed their order)`,
        row('lost', v.lost, `${v.lostMessages} messages, ${v.lostReplies} replies never came`),
        row('duplicated', v.duplicated, `${v.reprocessed} processed twice, ${v.resent} replies sent twice`),
        row('out of order', v.outOfOrder),
        row('duplicate prompts', v.duplicatePrompts),
        row('version errors', v.versionErrors),
        row('rejected webhooks', v.messages.rejected),
        `  (info) late ${v.late}, stale notices ${v.staleNotices}, dead letters ${v.deadLettered}`,
    ];
    if (v.problems.length > 0)
        lines.push('problems (first ones):', ...v.problems.map((p) => `  - ${p}`));
    if (r.hints.length > 0)
        lines.push('hints:', ...r.hints.map((h) => `  - ${h}`));
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
export async function runLoadCommand(flags, given = {}) {
    const io = {
        out: (line) => console.log(line),
        err: (text) => process.stderr.write(text),
        tty: process.stderr.isTTY,
        env: process.env,
        ...given,
    };
    let o;
    try {
        o = parse(flags, io.env);
    }
    catch (err) {
        if (err instanceof LoadUsageError) {
            io.err(`baton: ${err.message}\n`);
            return 2;
        }
        throw err;
    }
    const chaosLabel = [
        o.duplicates > 0 ? `duplicates ${Math.round(o.duplicates * 100)}%` : '',
        o.retaps > 0 ? `retaps ${Math.round(o.retaps * 100)}%` : '',
        o.shuffle ? 'shuffle' : '',
        o.split ? 'split' : '',
        o.concurrent ? 'concurrent' : '',
    ]
        .filter(Boolean)
        .join(', ') || 'none';
    let lastPrinted = 0;
    let lastPhase = 'running';
    const showProgress = flags.progress !== false;
    const onProgress = (p) => {
        if (!showProgress)
            return;
        if (io.tty)
            io.err(`\r${progressLine(p)}\x1b[K`);
        else if (p.elapsedMs - lastPrinted >= 2000 || p.phase !== lastPhase) {
            lastPrinted = p.elapsedMs;
            lastPhase = p.phase;
            io.err(`${progressLine(p)}\n`);
        }
    };
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once('SIGINT', onSignal);
    let report;
    try {
        io.err(`baton load: ${o.users} users against ${o.url}; replies expected at http://${o.sinkHost}:${o.sinkPort}\n`);
        report = await runLoad({
            url: o.url,
            adminToken: o.adminToken,
            secret: o.secret,
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
            replyTimeoutMs: o.timeout,
            maxInflight: o.maxInflight,
            sinkPort: o.sinkPort,
            sinkHost: o.sinkHost,
            onProgress,
            signal: abort.signal,
            ...(o.seed !== undefined ? { seed: o.seed } : {}),
        });
    }
    catch (err) {
        if (showProgress && io.tty)
            io.err('\n');
        const e = err;
        if (err instanceof LoadError)
            io.err(`baton: ${err.message}\n`);
        else if (e.code === 'EADDRINUSE')
            io.err(`baton: sink port ${o.sinkPort} is in use (choose --sink-port)\n`);
        else
            io.err(`baton: ${e.message}\n`);
        return 1;
    }
    finally {
        process.off('SIGINT', onSignal);
    }
    if (showProgress && io.tty)
        io.err('\n');
    if (flags.json)
        io.out(JSON.stringify({ ...report, chaos: chaosLabel }, null, 2));
    else
        for (const line of formatReport(report, chaosLabel))
            io.out(line);
    if (abort.signal.aborted) {
        io.err('baton: interrupted; the verdict covers what was sent\n');
        return 1;
    }
    return report.verdict.clean ? 0 : 1;
}
