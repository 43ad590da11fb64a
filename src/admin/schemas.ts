/**
 * Route schemas of the admin API and the webhook handshake (zod). Every query parameter,
 * path id and body is checked before a handler runs; anything else answers `400` with
 * `BATON_ERR_BAD_REQUEST` and the reason. Unknown query parameters are refused too, and a
 * parameter given twice (which arrives as an array) is not a string, so it is refused.
 * @module
 */
import type { FastifySchemaCompiler } from 'fastify';
import { z } from 'zod';
import type { DeadLetterCursor } from '../backends/types.ts';
import { HandbackData } from '../flow/handback-data.ts';
import { blank, ID_PATTERN, wellFormed, wellFormedDeep } from '../providers/screen.ts';

/** A string every store takes: no NUL (PostgreSQL refuses it) and no lone surrogate. */
const storable = (s: string): boolean => wellFormed(s) === s;
const STORABLE = 'must hold no NUL or broken (lone surrogate) character';

/** A page size: a whole number in [1, max], written in decimal digits. */
export function limitParam(max: number): z.ZodType<number, string> {
  return (
    z
      .string()
      // A sign or more digits than any page holds are out of range, not "not a whole number".
      .regex(/^-?\d+$/, 'must be a whole number')
      .regex(/^\d{1,6}$/, `must be a whole number from 1 to ${max}`)
      .transform(Number)
      .pipe(z.number().int().min(1, 'must be at least 1').max(max, `must be at most ${max}`))
  );
}

/** The largest time a Date holds, ms from the epoch either way. */
export const MAX_TIME_MS = 8.64e15;

/** Encodes a keyset cursor: a JSON array of strings and numbers, base64url. */
export function encodeCursor(parts: ReadonlyArray<string | number>): string {
  return Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');
}

/** Decodes a cursor made by {@link encodeCursor} with `shape` (`s` string, `n` number); null if it is not one. */
export function decodeCursor(raw: string, shape: string): Array<string | number> | null {
  if (!/^[A-Za-z0-9_-]{1,2000}$/.test(raw)) return null;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== shape.length) return null;
  // Every number a cursor holds is a whole one, a time (ms) within a Date's range at most: one
  // beyond it reached PostgreSQL as "0NaN-NaN…" and answered 500 (outside test QA42-F3).
  const ok = v.every((p, i) =>
    shape[i] === 's'
      ? typeof p === 'string' && storable(p)
      : typeof p === 'number' && Number.isInteger(p) && Math.abs(p) <= MAX_TIME_MS,
  );
  return ok ? (v as Array<string | number>) : null;
}

/** The session-list cursor both backends hand out: `[channel, user]`. */
const sessionCursor = z
  .string()
  .refine((c) => decodeCursor(c, 'ss') !== null, 'is not a cursor from a previous page');

/** The conversation cursor's shape: `[at ms, direction rank, WhatsApp timestamp, seq]`. */
export const MESSAGE_CURSOR = 'nnnn';

const messageCursor = z
  .string()
  .refine((c) => decodeCursor(c, MESSAGE_CURSOR) !== null, 'is not a cursor from a previous page');

/** A wa_id, a BSUID, a phone_number_id or a gateway session id. */
const ident = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .regex(ID_PATTERN, 'must hold no space, control or format character, and be neither . nor ..');

const stepId = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .refine(storable, STORABLE);

const channelQuery = { channel: ident.optional() };

export const SessionsQuery = z.strictObject({
  ...channelQuery,
  step: stepId.optional(),
  needs_agent: z.enum(['true', 'false', '1', '0']).optional(),
  limit: limitParam(500).optional(),
  cursor: sessionCursor.optional(),
});

export const ChannelQuery = z.strictObject(channelQuery);

export const MessagesQuery = z.strictObject({
  ...channelQuery,
  limit: limitParam(500).optional(),
  cursor: messageCursor.optional(),
});

/** A transition-log cursor: `[version, records of that version already returned]`. */
const transitionCursor = z
  .string()
  .refine((c) => decodeCursor(c, 'nn') !== null, 'is not a cursor from a previous page');

export const TransitionsQuery = z.strictObject({
  ...channelQuery,
  limit: limitParam(1000).optional(),
  cursor: transitionCursor.optional(),
});

/** An agent's name: one line (it names them in the transition log). */
const agentName = z
  // Missing, said as for an empty one (outside test QA80-F7: zod's "Invalid input: expected
  // string, received undefined").
  .string({ error: (issue) => (issue.input === undefined ? 'must name the agent' : 'must be a string') })
  // Characters that show nothing and join nothing (a zero-width space, a word joiner, a byte-order
  // mark, a soft hyphen) are dropped: pasted from a chat, "Ana\u200b" was another agent than
  // "Ana", and "\u200b" alone was taken as a name that reads as none (outside test QA102-F1).
  .overwrite((s) => s.replace(/[\u200B\u2060\uFEFF\u00AD]/g, '').trim())
  .refine((s) => !blank(s), 'must name the agent')
  .max(100, 'must be at most 100 characters')
  .refine((s) => !/[\r\n]/.test(s), 'must be one line')
  // A name is shown and logged as written: control characters and bidi overrides could make one
  // agent's name read as another's (outside test QA63-F6: "Ana\u202Eevil").
  .refine(
    (s) => !/[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069]/u.test(s),
    'must not hold control or text-direction characters',
  )
  .refine(storable, STORABLE);

export const InboxQuery = z.strictObject({
  ...channelQuery,
  limit: limitParam(500).optional(),
  /** Only the sessions this agent has taken. */
  agent: agentName.optional(),
  /** Only the sessions nobody has taken yet. */
  unassigned: z.enum(['true', 'false', '1', '0']).optional(),
  /** The `next_cursor` of the page before. */
  cursor: z
    .string()
    .refine((c) => /^o\d{1,9}$/.test(c) || decodeCursor(c, 'nss') !== null, 'is not a cursor this API gave')
    .optional(),
});

/** The dead-letter list's cursor: `[created at ms, id]` of the last letter of the page before. */
const deadLetterCursorParam = z
  .string()
  .refine((c) => decodeCursor(c, 'ns') !== null, 'is not a cursor from a previous page');

export const DeadLettersQuery = z.strictObject({
  limit: limitParam(500).optional(),
  /** The `next_cursor` of the page before. */
  cursor: deadLetterCursorParam.optional(),
});

/** The cursor of a page of dead letters that ends with `last`. */
export function deadLetterCursor(last: { readonly createdAt: number; readonly id: string }): string {
  return encodeCursor([last.createdAt, last.id]);
}

/** The letter a dead-letter cursor names (the last of the page before); undefined if none. */
export function deadLetterAfter(cursor: string | undefined): DeadLetterCursor | undefined {
  const parts = cursor === undefined ? null : decodeCursor(cursor, 'ns');
  return parts === null ? undefined : { createdAt: parts[0] as number, id: parts[1] as string };
}

export const EmptyQuery = z.strictObject({});

export const LimitQuery = z.strictObject({ limit: limitParam(500).optional() });

/** `?confirm=true`: do what the answer without it warned of (a replay that asks an old question). */
export const ConfirmQuery = z.strictObject({ confirm: z.enum(['true', 'false']).optional() });

/**
 * A wa_id as a person writes a phone number (`+1 555-010-0001`, as the dashboard's Find box takes
 * it): its digits (outside test D11). Anything else is taken as it is.
 */
const phoneTyped = (v: unknown): unknown =>
  typeof v === 'string' && /^\+[\d\s().-]{4,40}$/.test(v) ? v.replace(/\D/g, '') : v;

export const WaIdParams = z.strictObject({ waId: z.preprocess(phoneTyped, ident) });

export const DeadLetterParams = z.strictObject({
  id: z.string().min(1).max(600, 'must be at most 600 characters').refine(storable, STORABLE),
});

export const FlowParams = z.strictObject({ id: stepId });

/** An empty body, `{}` or nothing at all. */
export const NoBody = z.union([z.undefined(), z.null(), z.strictObject({})], {
  error: 'must be empty or {}: this call takes no body',
});

/** A yes or no: JSON's, or a form's "true" / "false". */
const formBoolean = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

/**
 * An agent who names themself (`agent`) while another agent has the session is refused (409
 * BATON_ERR_TAKEN_BY_OTHER) unless `confirm` is true: two agents never answer one user unknowingly.
 */
const confirm = formBoolean.optional();

export const TakeBody = z.strictObject({
  agent: agentName,
  /** Take it from another agent who has it (a form sends "true"). */
  take_over: formBoolean.optional(),
  /**
   * The session's version the agent saw: refused (409) if it changed since (a stale page must not
   * take back a session a colleague just handed to the bot). A form sends it as a string.
   */
  version: z
    // A number, or its digits as a form sends them; not null, "" or [] read as 0 (QA42-F9).
    .union([
      z.number(),
      z
        .string()
        .regex(/^\d{1,15}$/, 'must be a whole number')
        .transform(Number),
    ])
    .pipe(z.number().int().min(0))
    .optional(),
  /**
   * Whom the agent saw holding the session ('' for nobody): refused (409) if someone else has it
   * now, so two agents taking it over at once are not both told they have it.
   */
  from: z.string().max(100).optional(),
});

/**
 * An agent's reset: nothing, or who resets (named in its `admin_reset` record); one who is not the
 * agent who has the session confirms (as for messages).
 */
export const ResetBody = z.preprocess(
  (body) => body ?? {},
  z.strictObject({ agent: agentName.optional(), confirm }),
);

export const AgentMessageBody = z.strictObject({
  /** Who writes; defaults to the agent who took the session. */
  agent: agentName.optional(),
  confirm,
  text: z
    .string()
    .max(4096, 'must be at most 4,096 characters (WhatsApp text limit)')
    // Invisible format characters (zero-width spaces, joiners) alone are no message either.
    .refine((t) => !blank(t), 'must not be empty (nor only invisible characters)')
    .refine(storable, STORABLE),
});

/** The most JSON an event's payload may hold (it is stored with the session's messages). */
export const EVENT_PAYLOAD_MAX_BYTES = 16 * 1024;

/**
 * An event for a session (`POST /sessions/:waId/events`): its name in the flow's `events`, an id
 * that makes a repeated post a duplicate (default: a new one), and any JSON payload (strings
 * mended like a message's: a NUL or a broken character becomes U+FFFD).
 */
export const EventBody = z.strictObject({
  name: z
    .string()
    .max(64, 'must be at most 64 characters')
    .regex(/^[a-z][a-z0-9_]*$/, 'must be lower_snake_case, as the flow declares it'),
  id: z
    .string()
    .regex(ID_PATTERN, 'must be 1-128 characters: no spaces, control or format characters')
    .optional(),
  payload: z
    .unknown()
    .optional()
    .transform((p, ctx) => {
      if (!nestedWithin(p, EVENT_PAYLOAD_MAX_DEPTH)) {
        ctx.addIssue({ code: 'custom', message: `must be nested at most ${EVENT_PAYLOAD_MAX_DEPTH} deep` });
        return z.NEVER;
      }
      const mended = wellFormedDeep(p ?? null);
      if (Buffer.byteLength(JSON.stringify(mended)) > EVENT_PAYLOAD_MAX_BYTES) {
        ctx.addIssue({
          code: 'custom',
          message: `must be at most ${EVENT_PAYLOAD_MAX_BYTES / 1024} KiB of JSON`,
        });
        return z.NEVER;
      }
      return mended;
    }),
});

const EVENT_PAYLOAD_MAX_DEPTH = 32;

/** Whether `v` nests objects and arrays at most `depth` deep (never recursing further). */
function nestedWithin(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== 'object') return true;
  if (depth === 0) return false;
  return Object.values(v).every((x) => nestedWithin(x, depth - 1));
}

export const HandbackBody = z.strictObject({
  step: stepId,
  /** Who hands it back; defaults to the agent who took the session. */
  agent: agentName.optional(),
  confirm,
  /**
   * Data the agent settled with the user (a price agreed by chat), merged into the session's
   * before the step is entered: flat values only, checked by the flow's data schema.
   */
  data: HandbackData.optional(),
});

/** The Meta verification handshake: each parameter at most once, all optional (a mismatch is 403). */
export const HandshakeQuery = z.object({
  // Anything but one matching value (an array when given twice, a wrong token, a challenge
  // given twice or over 512 characters) is a refusal, 403 as SPEC section 3 says ("otherwise").
  'hub.mode': z.unknown().optional(),
  'hub.verify_token': z.unknown().optional(),
  'hub.challenge': z.unknown().optional(),
});

/** The dashboard's sign-in form. */
export const SignInBody = z.strictObject({
  token: z.string().min(1).max(512),
  /** The sign-in form's nonce (see `AdminAuth.signInRefusal`); scripts posting the token send none. */
  nonce: z.string().max(64).optional(),
  /** The dashboard page to go back to once signed in (see `dashboardPath`). */
  next: z.string().max(2048).optional(),
});

/**
 * `path` if it is a page of the dashboard (`/admin...`, no other origin): where a sign-in goes
 * back to, so an agent signed out mid-work lands where they were (outside test QA87-F6: the
 * session page and its draft were lost for the overview).
 */
export function dashboardPath(path: unknown): string | undefined {
  return typeof path === 'string' && /^\/admin(?:[/?#][^\s\\]*)?$/.test(path) && !path.startsWith('//')
    ? path
    : undefined;
}

/** How zod's type names read in an answer. */
const TYPE_WORDS: Readonly<Record<string, string>> = {
  object: 'a JSON object',
  array: 'a JSON array',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

/**
 * Zod's type errors in plain words (outside test QA81-F4: a POST with no body, `null` or `[]` was
 * answered "Invalid input: expected object, received null"). Every other issue keeps its message.
 */
const plainWords: z.core.$ZodErrorMap = (issue) => {
  if (issue.code !== 'invalid_type') return undefined;
  const wanted = TYPE_WORDS[issue.expected] ?? issue.expected;
  if ((issue.path ?? []).length === 0) return `must be ${wanted}`;
  return issue.input === undefined ? `is required (${wanted})` : `must be ${wanted}`;
};

/**
 * A Fastify validator compiler for zod schemas: the parsed (and transformed) value replaces
 * the raw one, so handlers read numbers where the query had digits.
 */
export const zodCompiler: FastifySchemaCompiler<unknown> = ({ schema }) => {
  if (!(schema instanceof z.ZodType)) throw new TypeError('admin route schemas are zod schemas');
  return (data: unknown) => {
    const r = schema.safeParse(data, { error: plainWords });
    if (r.success) return { value: r.data };
    const first = r.error.issues[0];
    const where = first && first.path.length > 0 ? `${first.path.map(String).join('.')} ` : '';
    return { error: new Error(`${where}${first?.message ?? 'is invalid'}`) };
  };
};
