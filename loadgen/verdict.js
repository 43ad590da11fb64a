/** Kinds that keep the version unchanged (SPEC section 4). */
const VERSIONLESS = new Set(['stale_input', 'late', 'held', 'ignored']);
const MAX_PROBLEMS = 25;
function sameOrder(expected, session) {
    if (session.current_step !== expected.step)
        return false;
    const want = expected.data;
    const keys = Object.keys(session.data);
    if (keys.length !== Object.keys(want).length)
        return false;
    return keys.every((k) => session.data[k] === want[k]);
}
/**
 * Judges a run.
 *
 * @example
 * ```ts
 * const verdict = judge(evidence, new Set(deadLetterRefs));
 * if (!verdict.clean) console.error(verdict.problems.join('\n'));
 * ```
 */
export function judge(users, deadLetterRefs) {
    const problems = [];
    const problem = (line) => {
        if (problems.length < MAX_PROBLEMS)
            problems.push(line);
    };
    let planned = 0;
    let sent = 0;
    let acked = 0;
    let rejected = 0;
    let lostMessages = 0;
    let lostReplies = 0;
    let reprocessed = 0;
    let resent = 0;
    let outOfOrder = 0;
    let duplicatePrompts = 0;
    let versionErrors = 0;
    let late = 0;
    let staleNotices = 0;
    let deadLettered = 0;
    let usersCompleted = 0;
    for (const u of users) {
        const { trace } = u;
        const who = trace.waId;
        planned += trace.plannedMessages;
        sent += trace.sentIds.length;
        acked += trace.ackedIds.size;
        rejected += trace.rejected.length;
        for (const r of trace.rejected.slice(0, 2)) {
            problem(`${who}: ${r.id} answered ${r.status || 'nothing'} ${r.detail}`.trim());
        }
        if (trace.completed)
            usersCompleted += 1;
        // Lost: acknowledged, then nowhere to be found.
        const seen = new Map();
        for (const t of u.transitions) {
            if (t.kind === 'late')
                late += t.message_ids.length;
            if (t.kind === 'expired')
                continue; // an expiry record names the message that restarts the session
            for (const id of t.message_ids)
                seen.set(id, (seen.get(id) ?? 0) + 1);
        }
        for (const id of trace.ackedIds) {
            if (deadLetterRefs.has(id)) {
                deadLettered += 1;
            }
            else if (!seen.has(id)) {
                lostMessages += 1;
                problem(`${who}: ${id} was acknowledged but is in no transition record or dead letter`);
            }
        }
        for (const step of trace.missingReplies) {
            lostReplies += 1;
            problem(`${who}: the reply for step "${step}" never came`);
        }
        // Duplicated: processed twice, or the same reply sent twice.
        for (const [id, n] of seen) {
            if (n > 1) {
                reprocessed += n - 1;
                problem(`${who}: ${id} is in ${n} transition records`);
            }
        }
        const byCallback = new Map();
        const versionsByStep = new Map();
        for (const r of u.replies) {
            if (r.callbackData !== undefined)
                byCallback.set(r.callbackData, (byCallback.get(r.callbackData) ?? 0) + 1);
            if (r.callback === null)
                continue;
            if (r.callback.inReplyTo !== undefined) {
                staleNotices += 1;
                continue;
            }
            let versions = versionsByStep.get(r.callback.step);
            if (versions === undefined)
                versionsByStep.set(r.callback.step, (versions = new Set()));
            versions.add(r.callback.version);
        }
        for (const [cb, n] of byCallback) {
            if (n > 1) {
                resent += n - 1;
                problem(`${who}: reply ${cb} was sent ${n} times`);
            }
        }
        // Duplicate prompts: the scenario visits each step once and never gives invalid input.
        for (const [step, versions] of versionsByStep) {
            if (versions.size > 1) {
                duplicatePrompts += versions.size - 1;
                problem(`${who}: step "${step}" was prompted ${versions.size} times (versions ${[...versions].join(', ')})`);
            }
        }
        // Out of order: every reply came, yet the order is not what the user sent.
        if (trace.completed) {
            if (u.session === null) {
                outOfOrder += 1;
                problem(`${who}: every reply came but Baton has no session`);
            }
            else if (!sameOrder(trace.expected, u.session)) {
                outOfOrder += 1;
                problem(`${who}: ended at ${u.session.current_step ?? 'null'} with ${JSON.stringify(u.session.data)}, ` +
                    `expected ${trace.expected.step} with ${JSON.stringify(trace.expected.data)}`);
            }
        }
        // Versions: +1 per state change, unchanged by versionless records, no gaps or forks.
        let v = 0;
        let broken = false;
        for (const t of u.transitions) {
            const want = VERSIONLESS.has(t.kind) ? v : v + 1;
            if (t.version !== want)
                broken = true;
            v = Math.max(v, t.version);
        }
        if (u.session !== null && u.transitions.length > 0 && u.session.metadata.version !== v)
            broken = true;
        if (broken) {
            versionErrors += 1;
            problem(`${who}: versions in the log are ${u.transitions.map((t) => `${t.version}:${t.kind}`).join(' ')}` +
                (u.session === null ? '' : ` (session at ${u.session.metadata.version})`));
        }
    }
    const lost = lostMessages + lostReplies;
    const duplicated = reprocessed + resent;
    return {
        clean: lost + duplicated + outOfOrder + duplicatePrompts + versionErrors + rejected === 0,
        users: users.length,
        usersCompleted,
        messages: { planned, sent, acked, rejected },
        lost,
        lostMessages,
        lostReplies,
        duplicated,
        reprocessed,
        resent,
        outOfOrder,
        duplicatePrompts,
        versionErrors,
        late,
        staleNotices,
        deadLettered,
        problems,
    };
}
