/**
 * What the CLI prints that came from a user or a server, made inert for a terminal: a text a
 * user sent, or the answer of the admin API named in `baton.admin.json`, could otherwise clear
 * the screen, retitle the window or print a fake "Session reset OK" with escape sequences
 * (ESC, and the C1 controls some terminals take for ESC + a letter), or turn a line around with
 * a directional override (outside test QA64-F4). Such characters are written as escapes instead:
 * the same value for a reader, nothing for the terminal to act on. The dashboard does the same
 * for its JSON views (`bidiSafeJson`).
 * @module
 */

/**
 * Characters a terminal acts on or that change how the line around them reads, besides C0:
 * DEL and the C1 controls; directional marks, embeddings, overrides and isolates (U+061C,
 * U+200E/F, U+202A-E, U+2066-9); invisible characters that can hide text or split a line
 * (U+00AD, U+180E, U+200B, U+2028/9, U+2060-4, U+206A-F, U+FEFF, U+FFF9-B). The zero-width
 * joiner and non-joiner stay: emoji sequences and Persian words need them, and they move nothing.
 */
const UNSAFE =
  '\\u007F-\\u009F\\u00AD\\u061C\\u180E\\u200B\\u200E\\u200F\\u2028-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB';
const UNSAFE_IN_JSON = new RegExp(`[${UNSAFE}]`, 'g');
const UNSAFE_IN_LINE = new RegExp(`[\\u0000-\\u001F${UNSAFE}]`, 'g');
const UNSAFE_IN_TEXT = new RegExp(`[\\u0000-\\u0008\\u000B-\\u001F${UNSAFE}]`, 'g');

/**
 * JSON text with those characters written as `\uXXXX` escapes: it parses to the same value.
 * `JSON.stringify` already escapes C0 inside strings; the C0 left (an indent's line breaks) is
 * the text's own layout.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * One line of plain text with every control character (C0 too: a line break could start a
 * line of its own, a carriage return write over it) and those above written as `\u{..}`
 * escapes: for text from elsewhere that goes into a line of the CLI's.
 */
export function terminalSafeLine(text: string): string {
  return text.replace(UNSAFE_IN_LINE, escape);
}

/** The same, but the text's own line breaks and tabs kept: for a message of Baton's. */
export function terminalSafeText(text: string): string {
  return text.replace(UNSAFE_IN_TEXT, escape);
}

function escape(c: string): string {
  return `\\u{${c.charCodeAt(0).toString(16)}}`;
}
