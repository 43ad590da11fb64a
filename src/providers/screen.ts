/**
 * The last step of every gateway's parser: what it read must be storable as it is, in SQLite,
 * in Redis's Lua (cjson refuses a lone UTF-16 surrogate) and in PostgreSQL (text refuses
 * U+0000), and a session's key must be one the admin API can name. So every string is made
 * well formed (a lone surrogate or a NUL becomes U+FFFD), and an item whose channel or sender is
 * not an id (see {@link ID_PATTERN}), or whose message id is absurdly long or held what was made
 * U+FFFD, is skipped and
 * reported like any other item that cannot be stored, never left to fail a whole webhook.
 * @module
 */
import type { InboundMessage, StatusUpdate, WebhookBatch } from '../model/message.ts';
import type { SkippedItem } from './cloud-api/parse.ts';

/**
 * A wa_id, a BSUID, a phone_number_id or a gateway's channel: what a session key is made of.
 * Up to 128 characters, none of them a space, a control character or U+FFFD (what a lone
 * surrogate became), and not `.` or `..` (a browser resolves those path segments, even encoded,
 * so the dashboard's links and forms could not name the session). Meta's own examples carry placeholders such as `<WHATSAPP_USER_PHONE_NUMBER>`,
 * so the characters are not narrowed further: keys escape what Redis would read (keys.ts), SQL
 * takes them as parameters, pages escape them.
 */
export const ID_PATTERN = /^(?!\.\.?$)[^\s\p{Cc}\p{Cf}\p{Cs}\uFFFD]{1,128}$/u;
/**
 * Whether a text shows nothing: only white space and invisible format characters (a zero-width
 * space, a joiner, a byte-order mark). Such a text counts as empty wherever a person's words are
 * expected: a user's answer, an agent's message, name or hand-back data (outside test QA102-F1,
 * F3: `"\u200b"` passed where `"  "` was refused).
 */
export function blank(text: string): boolean {
  return text.replace(/[\p{Cf}\s]/gu, '') === '';
}

/** Longer message ids are no WhatsApp id (a wamid is about 60 characters). */
export const MAX_MESSAGE_ID = 256;

// A high surrogate not followed by a low one, a low one not preceded by a high one, or NUL.
// eslint-disable-next-line no-control-regex -- NUL is what PostgreSQL refuses
const ILL_FORMED = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g;

/** `s` with each lone surrogate and NUL replaced by U+FFFD. */
export function wellFormed(s: string): string {
  ILL_FORMED.lastIndex = 0;
  return ILL_FORMED.test(s) ? s.replace(ILL_FORMED, '\uFFFD') : s;
}

/** Deepest nesting {@link wellFormedDeep} walks; what lies deeper is replaced by {@link TOO_DEEP}. */
export const MAX_DEPTH = 64;
/** What stands for a part nested deeper than {@link MAX_DEPTH}. */
export const TOO_DEEP = `[nested deeper than ${MAX_DEPTH} levels: not kept]`;

/**
 * A copy of plain JSON-like data with every string, object keys included, well formed (the same
 * object if none changes). An object or array nested deeper than {@link MAX_DEPTH} becomes
 * {@link TOO_DEEP}: a signed body thousands of levels deep overflowed the stack here, and every
 * redelivery of the webhook was answered 503 (outside test QA42-F1).
 */
export function wellFormedDeep<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return wellFormed(value) as T;
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_DEPTH) return TOO_DEEP as T;
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    value.forEach((v: unknown, i) => {
      const w = wellFormedDeep(v, depth + 1);
      if (w !== v) (out ??= [...(value as unknown[])])[i] = w;
    });
    return (out ?? value) as T;
  }
  let out: Record<string, unknown> | null = null;
  const entries = Object.entries(value) as Array<[string, unknown]>;
  if (entries.some(([k]) => wellFormed(k) !== k)) {
    // A key to mend: rebuilt whole, in order (a mended key may meet an existing one: last wins).
    return Object.fromEntries(entries.map(([k, v]) => [wellFormed(k), wellFormedDeep(v, depth + 1)])) as T;
  }
  for (const [k, v] of entries) {
    const w = wellFormedDeep(v, depth + 1);
    if (w !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = w;
  }
  return (out ?? value) as T;
}

function messageProblem(m: InboundMessage): string | null {
  if (!ID_PATTERN.test(m.channel)) return 'channel is not an id (1-128 characters, no space or control)';
  if (!ID_PATTERN.test(m.user)) return 'sender is not an id (1-128 characters, no space or control)';
  // A session's string form is `<channel>:<user>` and its reply ids `<channel>:<user>:<seq>`, and
  // channels may hold colons (`wasender:<sessionId>`): a sender with one could make two sessions
  // one (sender `sessA:1555…` on channel `wasender` against `1555…` on `wasender:sessA`), whose
  // reply ids then collide and whose shared lease one of them holds for good.
  if (m.user.includes(':')) return 'sender is not an id (it holds a colon)';
  if (m.id.length > MAX_MESSAGE_ID) return `message id longer than ${MAX_MESSAGE_ID} characters`;
  if (m.id.includes('\uFFFD')) return UNREADABLE_ID;
  return null;
}

/**
 * A message id holding U+FFFD: it held a NUL or a lone surrogate (made U+FFFD above), or U+FFFD
 * itself, which no WhatsApp id does. Stored, `wamid.C\u0000X` and `wamid.C\uD800X` would be one id,
 * and the second message a duplicate of the first, never in the transition log nor in the dead
 * letters (outside test QA76-F2).
 */
const UNREADABLE_ID = 'message id holds a NUL, a lone surrogate or U+FFFD (no WhatsApp id does)';

function statusProblem(s: StatusUpdate): string | null {
  if (!ID_PATTERN.test(s.channel)) return 'channel is not an id';
  if (s.recipient !== '' && !ID_PATTERN.test(s.recipient)) return 'recipient is not an id';
  if (s.messageId.length > MAX_MESSAGE_ID) return `message id longer than ${MAX_MESSAGE_ID} characters`;
  if (s.messageId.includes('\uFFFD')) return UNREADABLE_ID;
  return null;
}

/**
 * A business-scoped user id that is not an id, beside a phone number that keys the message: left
 * out (the message is the number's), never stored in the session or bound to it. Alone, it is
 * the sender, and the checks above refuse the message.
 */
function withUsableUserId(m: InboundMessage): InboundMessage {
  if (m.userId === undefined || m.userId === m.user) return m;
  if (ID_PATTERN.test(m.userId) && !m.userId.includes(':')) return m;
  const { userId: _unusable, ...rest } = m;
  return rest;
}

/** Ids kept in a skipped item's report: short, and well formed (logs are JSON too). */
function reportedId(id: string): string {
  return id.length > 80 ? `${id.slice(0, 80)}...` : id;
}

/** Screens a parser's batch (see the module comment); `skipped` gains what is left out. */
export function screenBatch(
  batch: WebhookBatch,
  skipped: SkippedItem[],
): { batch: WebhookBatch; skipped: SkippedItem[] } {
  const messages: InboundMessage[] = [];
  const statuses: StatusUpdate[] = [];
  for (const raw of batch.messages) {
    const m = withUsableUserId(wellFormedDeep(raw));
    const problem = messageProblem(m);
    if (problem === null) messages.push(m);
    // Kept as it came, before U+FFFD stood in: two ids that differ only in what became U+FFFD are
    // two letters, not one (QA78-F5).
    else skipped.push({ kind: 'message', id: reportedId(m.id), reason: problem, raw });
  }
  for (const raw of batch.statuses) {
    const s = wellFormedDeep(raw);
    const problem = statusProblem(s);
    if (problem === null) statuses.push(s);
    else skipped.push({ kind: 'status', id: reportedId(s.messageId), reason: problem });
  }
  return { batch: { ...batch, messages, statuses }, skipped };
}
