/**
 * Sessions, transition records and outbound messages: what Baton persists.
 * @module
 */
import { BatonError } from '../errors.ts';
import { RESET_CANCELLED_MAYBE_SENT, type ProviderName, type SessionKey } from './message.ts';

/** Version of the persisted snapshot layout. Bump it and add a migration on any change. */
export const SNAPSHOT_FORMAT = 1;

/**
 * Refuses a stored snapshot this Baton cannot read (written by a newer one, or not a snapshot):
 * it is never misread. The engine dead-letters the batch (replayable once a Baton that reads
 * that format runs).
 * @throws BatonError `BATON_ERR_SNAPSHOT_FORMAT`
 */
export function checkSnapshotFormat(s: SessionSnapshot): void {
  const format: unknown = (s as { format?: unknown }).format;
  if (format === SNAPSHOT_FORMAT) return;
  throw new BatonError(
    'BATON_ERR_SNAPSHOT_FORMAT',
    `session ${s.channel}:${s.user} is stored in format ${String(format)}; this Baton reads format ${SNAPSHOT_FORMAT}`,
  );
}

/** The session object exactly as SPEC section 4 pins it. */
export interface SessionView {
  wa_id: string;
  channel: string;
  flow: string;
  current_step: string | null;
  data: Record<string, unknown>;
  metadata: {
    version: number;
    last_interaction: string | null;
    last_message_id: string | null;
    retry_count: number;
    needs_agent: boolean;
    created_at: string;
    /**
     * The version of the flow that last wrote the session (`defineFlow`'s `version`): during a
     * rolling deploy or before a rollback, which sessions a newer version wrote (outside test
     * QA113-F2: only transition records' worker ids told).
     */
    flow_version: number;
    /** Who took the session from the inbox, while it waits for an agent (absent otherwise). */
    agent?: string;
    /**
     * Why the flow handed the session to an agent (`c.handoff(reason)`, a step the flow no longer
     * has, an effect result the flow failed on), while it waits for one; absent after too many
     * invalid answers in a row.
     */
    handoff_reason?: string;
  };
}

/** What a backend stores per session: the pinned view plus the runtime's own bookkeeping. */
export interface SessionSnapshot extends SessionKey {
  readonly format: typeof SNAPSHOT_FORMAT;
  readonly flow: string;
  /** The flow author's version when this snapshot was written. */
  readonly flowVersion: number;
  readonly step: string | null;
  readonly data: Readonly<Record<string, unknown>>;
  readonly version: number;
  /** Version at which `step` was entered: prompts older than this belong to an earlier visit. */
  readonly visitVersion: number;
  /** Newest WhatsApp timestamp processed (late ones aside), Unix seconds; null before any. */
  readonly lastInteraction: number | null;
  /**
   * The newest activity other than the user's messages, Unix seconds: an event applied (the
   * flow's `events`), or an agent's take, message or handback. It keeps the session alive as a
   * user's message does (`BATON_SESSION_TTL` counts from the later of the two): a session an agent
   * is working on does not expire under them.
   */
  readonly activeAt?: number;
  readonly lastMessageId: string | null;
  readonly retryCount: number;
  readonly needsAgent: boolean;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  /** Sequence number of the last outbound record produced for this session (send order). */
  readonly outboundSeq: number;
  /** The gateway the user writes through. */
  readonly provider?: ProviderName;
  readonly waId?: string;
  readonly userId?: string;
  /**
   * The agent who took the session from the inbox. It counts only while the session still
   * needs an agent at the version it was taken at (see `agentOf` in `flow/agent.ts`).
   */
  readonly agent?: AgentClaim;
  /** The effect whose result the current visit waits for; later messages wait until it is applied. */
  readonly awaiting?: AwaitedEffect;
  /** Why the flow handed the session to an agent (`handoff(reason)`), while `needsAgent`. */
  readonly handoffReason?: string;
  /**
   * While `needsAgent`: when the session was last escalated (epoch milliseconds, its `escalated`
   * record's time), so the inbox orders sessions without reading their logs. Absent on sessions
   * escalated by a Baton that did not keep it (their log says).
   */
  readonly waitingSince?: number;
}

/** An agent's claim on a session waiting for one. */
export interface AgentClaim {
  readonly name: string;
  /** Epoch milliseconds. */
  readonly at: number;
  /** The session's version when it was taken. */
  readonly version: number;
}

/** An effect started by a step, whose result the session waits for. */
export interface AwaitedEffect {
  /** Stable across retries and crashes, never reused: the idempotency key. */
  readonly id: string;
  readonly name: string;
  readonly step: string;
  /** The state version whose transition started it. */
  readonly version: number;
}

/** What an outbound record carries when it is an effect to run rather than a reply to send. */
export interface EffectIntent {
  readonly id: string;
  readonly name: string;
  /** The input computed when the effect started (JSON); every attempt gets the same. */
  readonly input: unknown;
  /** The session's data when it started. */
  readonly data: Readonly<Record<string, unknown>>;
}

export type TransitionKind =
  | 'advance'
  | 'retry'
  | 'reset'
  | 'admin_reset'
  | 'expired'
  | 'stale_input'
  | 'late'
  | 'escalated'
  | 'held'
  | 'ignored'
  | 'agent_message'
  | 'handback';

/** Kinds that leave `version` unchanged. */
export const VERSIONLESS_KINDS: ReadonlySet<TransitionKind> = new Set([
  'stale_input',
  'late',
  'held',
  'ignored',
  'agent_message',
]);

/** One line of a session's transition log, as SPEC section 4 pins it. */
export interface TransitionRecord {
  version: number;
  from_step: string | null;
  to_step: string | null;
  kind: TransitionKind;
  message_ids: string[];
  /** ISO 8601. */
  at: string;
  worker: string;
  fencing_token: number;
}

/**
 * A piece of media to send: a public HTTPS `link` WhatsApp fetches itself, or the `id` of media
 * uploaded to the gateway beforehand.
 */
export type MediaRef =
  { readonly link: string; readonly id?: never } | { readonly id: string; readonly link?: never };

/** The header above an interactive message's body: text, or an image, video or document. */
export type InteractiveHeader =
  | { readonly type: 'text'; readonly text: string }
  | ({ readonly type: 'image' } & MediaRef)
  | ({ readonly type: 'video' } & MediaRef)
  | ({ readonly type: 'document'; readonly filename?: string } & MediaRef);

/** One row of a list message. */
export interface ListRow {
  readonly id: string;
  readonly title: string;
  readonly description?: string;
}

/** One section of a list message; the title may be left out only when there is one section. */
export interface ListSection {
  readonly title?: string;
  readonly rows: ReadonlyArray<ListRow>;
}

/** A value filled into a template's placeholder. */
export type TemplateParameter =
  /** `name` fills a named placeholder (`{{order_id}}`); without it parameters fill `{{1}}`, `{{2}}`... in order. */
  | { readonly type: 'text'; readonly text: string; readonly name?: string }
  | ({ readonly type: 'image' } & MediaRef)
  | ({ readonly type: 'video' } & MediaRef)
  | ({ readonly type: 'document'; readonly filename?: string } & MediaRef)
  /** What a quick-reply button sends back when tapped. */
  | { readonly type: 'payload'; readonly payload: string };

/** The values for one component of an approved template. */
export type TemplateComponent =
  | { readonly type: 'header' | 'body'; readonly parameters: ReadonlyArray<TemplateParameter> }
  | {
      readonly type: 'button';
      /** `quick_reply` buttons take a `payload`; `url` buttons a `text` suffix for their URL. */
      readonly subType: 'quick_reply' | 'url';
      /** Position of the button in the template, from 0. */
      readonly index: number;
      readonly parameters: ReadonlyArray<TemplateParameter>;
    };

/**
 * The body of a reply, independent of the gateway. Build them with the helpers of
 * `src/flow/replies.ts` and check them with `replyProblems`.
 */
export type OutboundBody =
  | {
      type: 'text';
      text: string;
      /** Ask WhatsApp to show a preview of the first URL in the text. */
      previewUrl?: boolean;
    }
  | {
      type: 'buttons';
      text: string;
      buttons: ReadonlyArray<{ id: string; title: string }>;
      header?: InteractiveHeader;
      footer?: string;
    }
  | {
      type: 'list';
      text: string;
      /** Label of the button that opens the list. */
      button: string;
      sections: ReadonlyArray<ListSection>;
      /** WhatsApp allows only a text header on lists. */
      header?: InteractiveHeader;
      footer?: string;
    }
  | ({ type: 'image'; caption?: string } & MediaRef)
  | ({ type: 'video'; caption?: string } & MediaRef)
  | ({ type: 'document'; caption?: string; filename?: string } & MediaRef)
  | ({ type: 'audio' } & MediaRef)
  | ({ type: 'sticker' } & MediaRef)
  | { type: 'location'; latitude: number; longitude: number; name?: string; address?: string }
  | {
      /** An approved message template: the only kind WhatsApp delivers outside the 24-hour window. */
      type: 'template';
      name: string;
      /** Language code the template was approved in, e.g. `en_US`. */
      language: string;
      components?: ReadonlyArray<TemplateComponent>;
      /** The template as the user would read it, for gateways that cannot send templates. */
      text?: string;
    };

/** The kinds of {@link OutboundBody}. */
export type OutboundBodyType = OutboundBody['type'];

export type OutboundStatus = 'pending' | 'sending' | 'sent' | 'delivered' | 'read' | 'played' | 'failed';

/**
 * How a reply's `lastError` ends when it was dead-lettered because two attempts at it may have
 * reached the user (SPEC 1.6: a third is never made). Such a reply is `failed` for the store, but
 * the user may well have it: the console says so, and asks an agent to check before a replay.
 */
export const MAY_HAVE_REACHED =
  'two attempts may have reached the user, so not sent again: replay it only if the user does not have it';

/**
 * Whether a failed reply may have reached the user after all (see MAY_HAVE_REACHED, and
 * RESET_CANCELLED_MAYBE_SENT: the console said "they did not get it" of one, outside test
 * QA136-F1).
 */
export function mayHaveReached(status: OutboundStatus | undefined, lastError: string | undefined): boolean {
  return (
    status === 'failed' &&
    (lastError?.endsWith(MAY_HAVE_REACHED) === true || lastError === RESET_CANCELLED_MAYBE_SENT)
  );
}

/** A reply produced by a committed state change, sent by the outbox after commit. */
export interface OutboundRecord extends SessionKey {
  /** Baton's id: `<channel>:<user>:<seq>`; unique. */
  readonly id: string;
  /** Send order within the session. */
  readonly seq: number;
  readonly flow: string;
  readonly step: string;
  /** State version that produced it. */
  readonly version: number;
  /** The inbound message this answers without a state change (stale notices), if any. */
  readonly inReplyTo?: string;
  /** The gateway to send through (default `cloud-api`). */
  readonly provider?: ProviderName;
  /** Where to send: the user's wa_id, or their BSUID. */
  readonly to: string;
  readonly body: OutboundBody;
  /** `baton:<flow>:<step>:<version>[:<wamid>]`. */
  readonly callbackData: string;
  /** Whether this is the step's prompt (a button tap naming it is judged against the visit). */
  readonly isPrompt: boolean;
  /**
   * Set when this record is an effect to run (committed with the transition that started it),
   * not a reply: the outbox runs it instead of sending it, and marks it `sent` once its result
   * is stored in the session's mailbox.
   */
  readonly effect?: EffectIntent;
  status: OutboundStatus;
  attempts: number;
  /**
   * Send attempts that may have reached the user, each claimed in the store before it was made
   * (SPEC 1.6: a reply reaches the user at most twice). A commit writes 1 on its first reply: the
   * committing holder's claim for its own attempt, so the hot path writes nothing more; its later
   * replies get 0, and their claims go with the record of the reply before (the first's goes back
   * too when older replies are still unsent: its attempt waits behind theirs). Any other holder claims
   * (`Backend.claimOutbound`) before its first attempt, and a holder claims again before it
   * retries a send that got no answer; a claim that would make it 3 dead-letters the reply instead.
   * Absent when written: 1.
   */
  claims?: number;
  /**
   * The holder (`LeaseGrant.holder`) that made the latest claim: the commit's holder for its first
   * reply, or the one that called `Backend.claimOutbound`. A holder taking the session after an
   * agent's clear waits for an earlier holder's send only while this one is alive (it alone may
   * be sending). Absent when not known (a record read back from PostgreSQL): the holder the
   * clear took the lease from stands in.
   */
  claimedBy?: string;
  providerMessageId?: string;
  lastError?: string;
  /**
   * Epoch ms before which the gateway is not asked to send it again: recorded with a refused
   * attempt (a throttle's `Retry-After`, or the backoff), so that a holder taking the session over
   * (its worker killed while it waited) waits it out too. A new holder sent 5.3 s after a 429 with
   * `Retry-After: 10` (outside test QA19-F1). Redis and SQLite keep it; PostgreSQL does not (a
   * Redis that lost the session forgets it).
   */
  notBefore?: number;
  /** Epoch milliseconds. */
  readonly createdAt: number;
}

/** Where a prompt that Baton sent stands: used to judge a tapped button's `context.id`. */
export interface PromptRef {
  readonly step: string;
  readonly version: number;
}

export interface DeadLetter {
  readonly id: string;
  /**
   * `inbound`: a stored message that could not be applied; `outbound`: a reply that could not be
   * sent; `unreadable`: a message of a valid webhook that names no session Baton can store it
   * under (no channel, no sender, ids beyond limits): kept as it came, never replayable.
   */
  readonly kind: 'inbound' | 'outbound' | 'unreadable';
  readonly channel: string;
  readonly user: string;
  /** The message id (inbound wamid or outbound record id). */
  readonly ref: string;
  readonly reason: string;
  readonly payload: unknown;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  replayedAt?: number;
}

/**
 * Of the sessions an id finds on one number (a user_id may be shared by several wa_ids), the
 * one keyed by that very id, when exactly one is; else, for a user id, the one the user wrote to
 * last; else undefined (the caller asks which one).
 * Sessions on several numbers are always the caller's to choose among (SPEC section 4: `409`
 * listing them), even when the id keys one of them.
 */
export function sessionNamedBy(found: readonly SessionSnapshot[], id: string): SessionSnapshot | undefined {
  if (new Set(found.map((s) => s.channel)).size > 1) return undefined;
  const exact = found.filter((s) => s.user === id);
  if (exact.length === 1) return exact[0];
  // A user id that came with several numbers (the user changed numbers): the session its
  // messages go to now, the one the user wrote to last (model/message.ts, userIdOnly). A session
  // keyed on the id itself stays reachable by it (the console links it so).
  const byUserId = found.filter((s) => s.userId === id);
  if (exact.length > 0 || byUserId.length === 0) return undefined;
  return byUserId.reduce((a, b) => (wroteLater(b, a) ? b : a));
}

/** Whether the user wrote to `a` later than to `b` (then: `a` was created later). */
function wroteLater(a: SessionSnapshot, b: SessionSnapshot): boolean {
  const [x, y] = [a.lastInteraction ?? 0, b.lastInteraction ?? 0];
  return x !== y ? x > y : a.createdAt > b.createdAt;
}

/**
 * ISO 8601 of a Unix-seconds timestamp, without milliseconds (WhatsApp's resolution). Total:
 * a value outside what a date can hold (stored before timestamps were capped) is clamped into
 * that range rather than throwing.
 */

export function isoSeconds(unixSeconds: number): string {
  const ms = Number.isFinite(unixSeconds) ? Math.max(-8.64e15, Math.min(8.64e15, unixSeconds * 1000)) : 0;
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The pinned session object for a snapshot. */
export function toSessionView(s: SessionSnapshot): SessionView {
  return {
    wa_id: s.waId ?? s.user,
    channel: s.channel,
    flow: s.flow,
    current_step: s.step,
    data: { ...s.data },
    metadata: {
      version: s.version,
      last_interaction: s.lastInteraction === null ? null : isoSeconds(s.lastInteraction),
      last_message_id: s.lastMessageId,
      retry_count: s.retryCount,
      needs_agent: s.needsAgent,
      created_at: new Date(s.createdAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      flow_version: s.flowVersion,
      ...(s.agent !== undefined && s.needsAgent && s.agent.version === s.version
        ? { agent: s.agent.name }
        : {}),
      ...(s.needsAgent && s.handoffReason !== undefined ? { handoff_reason: s.handoffReason } : {}),
    },
  };
}
