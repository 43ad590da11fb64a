/**
 * The texts of a reply an agent's reset cancelled, as the TypeScript and the Redis script each
 * spell them: the script recognises the prefix by its length and words, so a change to one and
 * not the other would leave a reply that landed read as failed in distributed mode only.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  RESET_CANCELLED,
  RESET_CANCELLED_MAYBE_SENT,
  RESET_CANCELLED_PREFIX,
  SENT_DESPITE_RESET,
} from '../../src/model/message.ts';

const script = readFileSync(
  resolve(import.meta.dirname, '../../src/backends/distributed/scripts/outbound-update-7.lua'),
  'utf8',
);

describe("a reset's reasons, in TypeScript and in the Redis script", () => {
  it('match', () => {
    expect(RESET_CANCELLED.startsWith(RESET_CANCELLED_PREFIX)).toBe(true);
    expect(RESET_CANCELLED_MAYBE_SENT.startsWith(RESET_CANCELLED_PREFIX)).toBe(true);
    expect(script).toContain(
      `string.sub(st.lastError, 1, ${RESET_CANCELLED_PREFIX.length}) == '${RESET_CANCELLED_PREFIX}'`,
    );
    expect(script).toContain(`st.lastError = '${SENT_DESPITE_RESET}'`);
  });
});
