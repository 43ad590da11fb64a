/**
 * Messages of a valid webhook that name no session Baton can store them under (no channel, a
 * sender or id beyond what Baton accepts, an item that is not an object): they are answered
 * `200` with the rest of the webhook, so they are kept as `unreadable` dead letters, as they came
 * (SPEC 1.1: none disappears). Visible in the admin API and the dashboard, counted in
 * `dead_letters`, never replayable: there is no session to replay them into.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Backend } from '../backends/types.ts';
import type { DeadLetter } from '../model/session.ts';
import type { SkippedItem } from '../providers/index.ts';
import { wellFormed, wellFormedDeep } from '../providers/screen.ts';

/** Longest item kept whole, as JSON; a longer one keeps its start. */
const MAX_PAYLOAD_CHARS = 8192;

/** The dead letters of a webhook's skipped messages (statuses are not messages: not kept). */
export function unreadableLetters(
  provider: string,
  skipped: readonly SkippedItem[],
  now: number,
): DeadLetter[] {
  return (
    skipped
      // Every one of them (Meta sends up to 1,000 updates in a POST): only the first 20 were kept,
      // the rest answered 200 and gone (outside test QA42-F2). Each payload is bounded, and so is
      // the body they came in (4 MiB).
      .filter((s) => s.kind === 'message')
      .map((s) => {
        // Kept as it came, but storable: a NUL or a lone surrogate (PostgreSQL's jsonb refuses both,
        // which answered the whole webhook 503 for good) becomes U+FFFD, and what is nested deeper
        // than any Meta payload is cut (thousands of levels overflowed the stack: QA42-F1).
        const raw = wellFormedDeep(s.raw ?? null);
        const json = JSON.stringify(raw) ?? 'null';
        // The same item delivered again (Meta retries) is the same letter; two items that differ
        // only in what became U+FFFD above are two (the id is made of the item as it came, where
        // JSON escapes a NUL and a lone surrogate each its own way: QA78-F5).
        const asCame = asCameJson(s.raw, json);
        const id = `unreadable_${createHash('sha256').update(`${provider}\n${asCame}`).digest('hex').slice(0, 32)}`;
        return {
          id,
          kind: 'unreadable',
          channel: '',
          user: '',
          ref: wellFormed(s.id?.slice(0, 256) ?? ''),
          reason: wellFormed(`${provider}: ${s.reason}`),
          payload:
            json.length <= MAX_PAYLOAD_CHARS
              ? raw
              : { truncated: true, start: wellFormed(json.slice(0, MAX_PAYLOAD_CHARS)) },
          createdAt: now,
        };
      })
  );
}

/**
 * The item as it came, as JSON, for its letter's id; `kept` (the stored form) when it cannot be
 * written (nested so deep the stack overflows: QA42-F1's item answered 503 again so).
 */
function asCameJson(raw: unknown, kept: string): string {
  try {
    return JSON.stringify(raw ?? null) ?? 'null';
  } catch {
    return kept;
  }
}

/** Stores them (before the webhook is answered: a failure answers `503`, and Meta retries). */
export async function keepUnreadable(backend: Backend, letters: readonly DeadLetter[]): Promise<void> {
  // A few at a time: up to 1,000 letters one after another kept the webhook waiting for seconds.
  for (let i = 0; i < letters.length; i += KEEP_AT_ONCE) {
    await Promise.all(letters.slice(i, i + KEEP_AT_ONCE).map((letter) => backend.deadLetter(letter)));
  }
}

/** Letters stored at once by {@link keepUnreadable}. */
const KEEP_AT_ONCE = 16;
