/**
 * The closing verdict of a load run: from what each user sent, what the sink received and what
 * Baton's admin API says (session and transition log), count the failures SPEC section 1 rules
 * out. Pure: no I/O.
 *
 * - **lost**: a message answered `200` that is in no transition record and no dead letter
 *   (guarantee 1), or a reply that was due and never came (the user was left waiting);
 * - **duplicated**: a message processed more than once (in two transition records; guarantee 2),
 *   or the very same reply (`biz_opaque_callback_data`) sent twice (guarantee 6);
 * - **out of order**: a user who got every reply but whose order does not say what they sent, in
 *   the order they sent it (guarantees 3 and 5);
 * - **duplicate prompts**: a step asked again under another version although the user gave no
 *   invalid input (guarantee 6: the seed's "duplicate questions");
 * - **version errors**: a log whose versions skip or fork (guarantee 4).
 * @module
 */
import type { UserTrace } from './scenario.ts';
import type { CallbackData } from './sink.ts';
/** The fields of the session object (SPEC section 4) the verdict reads. */
export interface SessionEvidence {
    readonly current_step: string | null;
    readonly data: Readonly<Record<string, unknown>>;
    readonly metadata: {
        readonly version: number;
    };
}
/** The fields of a transition record the verdict reads. */
export interface TransitionEvidence {
    readonly version: number;
    readonly kind: string;
    readonly message_ids: readonly string[];
}
/** One reply the user received. */
export interface ReplyEvidence {
    readonly callbackData: string | undefined;
    readonly callback: CallbackData | null;
}
/** Everything known about one user at the end of a run. */
export interface UserEvidence {
    readonly trace: UserTrace;
    readonly replies: readonly ReplyEvidence[];
    /** `null` when Baton has no session for the user. */
    readonly session: SessionEvidence | null;
    readonly transitions: readonly TransitionEvidence[];
}
/** The verdict. `clean` is true when every failure count is zero. */
export interface Verdict {
    readonly clean: boolean;
    readonly users: number;
    /** Users who got every reply that was due. */
    readonly usersCompleted: number;
    readonly messages: {
        readonly planned: number;
        /** Distinct messages sent (duplicate deliveries not counted). */
        readonly sent: number;
        readonly acked: number;
        /** Deliveries whose final answer (after re-deliveries) was not 200. */
        readonly rejected: number;
    };
    readonly lost: number;
    readonly lostMessages: number;
    readonly lostReplies: number;
    readonly duplicated: number;
    /** Messages found in more than one transition record (the extra records). */
    readonly reprocessed: number;
    /** Identical replies sent again (the extra sends). */
    readonly resent: number;
    readonly outOfOrder: number;
    readonly duplicatePrompts: number;
    readonly versionErrors: number;
    /** Informational: messages recorded `late`, stale-input notices received, dead letters. */
    readonly late: number;
    readonly staleNotices: number;
    readonly deadLettered: number;
    /** The first problems found, one line each. */
    readonly problems: readonly string[];
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
export declare function judge(users: readonly UserEvidence[], deadLetterRefs: ReadonlySet<string>): Verdict;
