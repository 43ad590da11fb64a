/**
 * What an agent may set in a session's data when handing it back to the bot: one schema for
 * the admin API's body (`DELETE /admin/api/sessions/:waId/agent`) and the flow core's
 * `handback` (so `testFlow` refuses what the API refuses; outside test QA41-F1).
 * @module
 */
import { z } from 'zod';
import { wellFormed } from '../providers/screen.ts';

/** Names every object has already: a zod record drops `__proto__` silently. */
const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const KEY = 'is not an identifier of at most 64 characters (a letter or _, then letters, digits or _)';

const FLAT = 'must be a string, a number, a boolean or null (lists and objects are not set by hand)';

/**
 * Data the agent settled with the user (a price agreed by chat): flat values only, at most 32
 * keys, each an identifier; strings storable and at most 4,096 characters. The flow's own data
 * schema checks it further once merged.
 */
export const HandbackData = z
  .unknown()
  // Refused by name before the record reads them.
  .refine(
    (d) => d === null || typeof d !== 'object' || !Object.keys(d).some((k) => RESERVED_KEYS.has(k)),
    'keys may not be __proto__, constructor or prototype (names JavaScript reserves)',
  )
  .pipe(
    z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, KEY),
        z.union(
          [
            z
              .string()
              .max(4096, 'must be at most 4,096 characters')
              .refine((s) => wellFormed(s) === s, 'must hold no NUL or broken (lone surrogate) character'),
            z.number().finite(),
            z.boolean(),
            z.null(),
          ],
          // Not zod's "Invalid input": what the agent may give (outside test QA7-F3).
          { error: (issue) => (issue.code === 'invalid_union' ? FLAT : undefined) },
        ),
        // Not zod's "Invalid key in record": what a key may be.
        { error: (issue) => (issue.code === 'invalid_key' ? KEY : undefined) },
      )
      .refine((d) => Object.keys(d).length <= 32, 'at most 32 keys'),
  );

/** The first thing `HandbackData` refuses in `data`, as one line (`data.price must be …`), or undefined. */
export function handbackDataError(data: unknown): string | undefined {
  const r = HandbackData.safeParse(data);
  if (r.success) return undefined;
  const first = r.error.issues[0];
  const path = ['data', ...(first?.path ?? []).map(String)].join('.');
  return `${path} ${first?.message ?? 'is invalid'}`;
}
