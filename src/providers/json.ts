/**
 * Small readers for untrusted JSON. Webhook bodies are `unknown`; these narrow them one field
 * at a time without casts, so a parser can degrade a bad field instead of throwing.
 * @module
 */

/** A JSON object (not an array, not null). */
export type JsonObject = Readonly<Record<string, unknown>>;

/** Whether `value` is a plain JSON object. */
export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `obj[key]` when it is a non-empty string. */
export function str(obj: JsonObject | undefined, key: string): string | undefined {
  const v = obj?.[key];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** `obj[key]` when it is a string, empty allowed. */
export function anyStr(obj: JsonObject | undefined, key: string): string | undefined {
  const v = obj?.[key];
  return typeof v === 'string' ? v : undefined;
}

/** `obj[key]` when it is a finite number. */
export function num(obj: JsonObject | undefined, key: string): number | undefined {
  const v = obj?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** `obj[key]` when it is a JSON object. */
export function obj(parent: JsonObject | undefined, key: string): JsonObject | undefined {
  const v = parent?.[key];
  return isObject(v) ? v : undefined;
}

/** `obj[key]` when it is an array. */
export function arr(parent: JsonObject | undefined, key: string): readonly unknown[] | undefined {
  const v = parent?.[key];
  return Array.isArray(v) ? (v as readonly unknown[]) : undefined;
}

/** The last second a JavaScript `Date` (and so an ISO string) can hold: +275760-09-13. */
export const MAX_UNIX_SECONDS = 8.64e12;

/**
 * A Unix-seconds timestamp given as a number or a numeric string (WhatsApp sends strings).
 * Values that look like milliseconds (after the year 33658 as seconds) are divided by 1000.
 * Absurdly large values are capped at {@link MAX_UNIX_SECONDS}, so every timestamp is a valid
 * date; the engine then replaces any stamp far ahead of its storage time (SPEC 1.5).
 */
export function unixSeconds(value: unknown): number | undefined {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) n = Number(value);
  else return undefined;
  if (!Number.isFinite(n) || n < 0) return undefined;
  return Math.min(n >= 1e12 ? Math.floor(n / 1000) : Math.floor(n), MAX_UNIX_SECONDS);
}
